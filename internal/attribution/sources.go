package attribution

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"

	"github.com/kaudit/kaudit/internal/policy"
)

// Labels of rules that no module names.
const (
	// DefaultModule and DefaultRule label the catch-all rule made from the default level.
	DefaultModule = "default"
	DefaultRule   = "default"
	// UnnamedModule labels every rule of a policy without kaudit's source comments (one not
	// rendered by kaudit); their rule label is the index in the policy.
	UnnamedModule = "policy"
)

// ruleSources reads the source comments that policy.Merged.Render writes above each rule
// ("# module <name>, rule <i>", "# default: ..."). It returns nil unless every one of the
// policy's n rules has one: a policy written by someone else, or edited by hand.
func ruleSources(rendered []byte, n int) []policy.RuleSource {
	var out []policy.RuleSource
	var next *policy.RuleSource
	inRules := false
	sc := bufio.NewScanner(bytes.NewReader(rendered))
	sc.Buffer(nil, len(rendered)+1)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !inRules:
			inRules = line == "rules:"
		case strings.HasPrefix(line, "# default:"):
			next = &policy.RuleSource{}
		case strings.HasPrefix(line, "# module "):
			name, idx, ok := strings.Cut(strings.TrimPrefix(line, "# module "), ", rule ")
			i, err := strconv.Atoi(idx)
			if !ok || err != nil || name == "" {
				return nil
			}
			next = &policy.RuleSource{Module: name, Rule: i}
		case strings.HasPrefix(line, "- "):
			if next == nil {
				return nil
			}
			out = append(out, *next)
			next = nil
		}
	}
	if sc.Err() != nil || len(out) != n {
		return nil
	}
	return out
}

// ruleLabels are the module and rule labels of a policy's n rules.
func ruleLabels(sources []policy.RuleSource, n int) (modules, rules []string) {
	for i := range n {
		switch {
		case sources == nil:
			modules, rules = append(modules, UnnamedModule), append(rules, strconv.Itoa(i))
		case sources[i].IsDefault():
			modules, rules = append(modules, DefaultModule), append(rules, DefaultRule)
		default:
			modules, rules = append(modules, sources[i].Module), append(rules, strconv.Itoa(sources[i].Rule))
		}
	}
	return modules, rules
}
