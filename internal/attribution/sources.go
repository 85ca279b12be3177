package attribution

import (
	"strconv"

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
