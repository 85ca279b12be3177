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
// ("# module <name>, rule <i>", "# namespaced module <namespace>/<name>, rule <i>",
// "# default: ..."). It returns nil unless every one of the
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
		case strings.HasPrefix(line, "# module "), strings.HasPrefix(line, "# namespaced module "):
			src, ok := parseSource(line)
			if !ok {
				return nil
			}
			next = &src
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

// parseSource reads one module comment of a rendered policy.
func parseSource(line string) (policy.RuleSource, bool) {
	id, namespaced := strings.CutPrefix(line, "# namespaced module ")
	if !namespaced {
		id = strings.TrimPrefix(line, "# module ")
	}
	id, idx, ok := strings.Cut(id, ", rule ")
	i, err := strconv.Atoi(idx)
	if !ok || err != nil || id == "" {
		return policy.RuleSource{}, false
	}
	src := policy.RuleSource{Module: id, Rule: i}
	if namespaced {
		ns, name, ok := strings.Cut(id, "/")
		if !ok || ns == "" || name == "" {
			return policy.RuleSource{}, false
		}
		src.Namespace, src.Module = ns, name
	}
	return src, true
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
			modules, rules = append(modules, sources[i].ModuleID()), append(rules, strconv.Itoa(sources[i].Rule))
		}
	}
	return modules, rules
}
