package lint

import (
	"strings"
	"testing"

	"github.com/kaudit/kaudit/internal/inforce"
	"github.com/kaudit/kaudit/internal/policy"
)

func TestReportCountsFindingsBySeverity(t *testing.T) {
	r := NewReport([]Finding{{Severity: Error}, {Severity: Warning}, {Severity: Warning}, {Severity: Info}})
	if r.Errors != 1 || r.Warnings != 2 || r.Infos != 1 {
		t.Errorf("counts %d errors, %d warnings, %d infos", r.Errors, r.Warnings, r.Infos)
	}
	if r := NewReport(nil); r.Findings == nil {
		t.Error("no findings make a nil list: JSON would show null")
	}
}

func TestReportText(t *testing.T) {
	var b strings.Builder
	r := NewReport([]Finding{{Severity: Warning, Check: "unknown-verb", Module: "m", Rule: 2, PolicyRule: 4, Message: "verb \"gett\"", Fix: "use get"}})
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := "WARNING module m rule 2: verb \"gett\" [unknown-verb]\n        fix: use get\n0 errors, 1 warning, 0 infos\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestFailOn(t *testing.T) {
	errs := []Finding{{Severity: Error}}
	warnings := []Finding{{Severity: Warning}, {Severity: Info}}
	infos := []Finding{{Severity: Info}}
	for _, tc := range []struct {
		failOn string
		fails  []bool // on errs, warnings, infos, none
	}{
		{"error", []bool{true, false, false, false}},
		{"warning", []bool{true, true, false, false}},
		{"info", []bool{true, true, true, false}},
		{"never", []bool{false, false, false, false}},
	} {
		t.Run(tc.failOn, func(t *testing.T) {
			f, err := ParseFailOn(tc.failOn)
			if err != nil {
				t.Fatal(err)
			}
			for i, fs := range [][]Finding{errs, warnings, infos, nil} {
				if got := f.Fails(fs); got != tc.fails[i] {
					t.Errorf("--fail-on %s on %+v: fails %v, want %v", tc.failOn, fs, got, tc.fails[i])
				}
			}
		})
	}
	if _, err := ParseFailOn("warn"); err == nil || err.Error() != `"warn": must be error, warning, info or never` {
		t.Errorf("ParseFailOn(warn): %v", err)
	}
}

// One invalid module does not hide the findings of the others.
func TestModulesLintsTheValidOnesPastAnInvalidOne(t *testing.T) {
	mods := modules(t, `[{level: Everything}]`, `[{level: Request, verbs: [gett]}]`)
	fs, err := Modules(mods, inforce.Settings{Policy: quiet}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !has(fs, "invalid", "m0", 0, Error) || !has(fs, "unknown-verb", "m1", 0, Warning) {
		t.Errorf("findings %+v", fs)
	}
	fs, err = Modules(modules(t, `[{level: Metadata, verbs: [create]}]`), inforce.Settings{Policy: policy.Settings{DefaultLevel: "Everything"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !has(fs, "invalid", "", -1, Error) || !has(fs, "request-received-not-omitted", "", -1, Warning) {
		t.Errorf("invalid settings are reported, and the modules linted with the default settings: %+v", fs)
	}
}
