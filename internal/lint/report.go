package lint

import (
	"fmt"
	"io"
	"strings"
)

// Report is the outcome of a lint run: the findings and how many there are of each severity.
type Report struct {
	Findings []Finding `json:"findings"`
	Errors   int       `json:"errors"`
	Warnings int       `json:"warnings"`
	Infos    int       `json:"infos"`
}

// NewReport counts the findings by severity.
func NewReport(findings []Finding) Report {
	r := Report{Findings: findings}
	if r.Findings == nil {
		r.Findings = []Finding{} // "findings": [] rather than null for machine readers
	}
	for _, f := range findings {
		switch f.Severity {
		case Error:
			r.Errors++
		case Warning:
			r.Warnings++
		default:
			r.Infos++
		}
	}
	return r
}

// WriteText writes each finding with its fix, then the counts.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "%-7s %s: %s [%s]\n        fix: %s\n", strings.ToUpper(string(f.Severity)), f.Where(), f.Message, f.Check, f.Fix)
	}
	fmt.Fprintf(&b, "%s, %s, %s\n", count(r.Errors, "error"), count(r.Warnings, "warning"), count(r.Infos, "info"))
	_, err := io.WriteString(w, b.String())
	return err
}

// FailOn is the least severity that fails a lint run: a Severity, or Never.
type FailOn string

// Never fails no lint run.
const Never FailOn = "never"

// FailOnValues are the values of FailOn, most severe first.
var FailOnValues = []string{string(Error), string(Warning), string(Info), string(Never)}

// ParseFailOn reads a FailOn value.
func ParseFailOn(s string) (FailOn, error) {
	switch FailOn(s) {
	case FailOn(Error), FailOn(Warning), FailOn(Info), Never:
		return FailOn(s), nil
	}
	return "", fmt.Errorf("%q: must be error, warning, info or never", s)
}

// Fails tells whether a finding is at this severity or a more severe one.
func (t FailOn) Fails(findings []Finding) bool {
	if t == Never {
		return false
	}
	limit := Severity(t).rank()
	for _, f := range findings {
		if f.Severity.rank() <= limit {
			return true
		}
	}
	return false
}

// count writes "1 error", "2 errors".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
