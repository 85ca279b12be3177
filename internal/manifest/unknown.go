package manifest

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/kaudit/kaudit/internal/spelling"
)

// UnknownField is a field that an object's type does not have, most often a misspelt one
// (verb: for verbs:). kube-apiserver drops it, from a policy file with only a warning in its
// log, and the rule then matches more than its author meant.
type UnknownField struct {
	// Source is the file and document, e.g. "policy.yaml: document 1".
	Source string
	// Object names the object, e.g. `AuditPolicyModule "team"` or "audit.k8s.io/v1 Policy".
	Object string
	// Module is the module's name; empty for a plain policy and the AuditPolicy.
	Module string
	// Rule is the index of the rule in spec.rules (rules of a plain policy); -1 outside the rules.
	Rule int
	// Path is the field's path in the object, e.g. "spec.rules[1].verb".
	Path string
	// Problem says what is wrong and what kube-apiserver makes of it, e.g. `unknown field "verb"
	// (did you mean "verbs"?): kube-apiserver ignores it ..., so the rule matches every verb`.
	Problem string
}

// Error names the file, the object, the rule (or the part of the object) and the problem.
func (u UnknownField) Error() string {
	where, _, _ := strings.Cut(u.Path, ".")
	if m := rulePath.FindStringSubmatch(u.Path); m != nil {
		where = m[1]
	} else if where == u.Path {
		return fmt.Sprintf("%s: %s: %s", u.Source, u.Object, u.Problem)
	}
	return fmt.Sprintf("%s: %s: %s: %s", u.Source, u.Object, where, u.Problem)
}

// rulePath splits the path of a field inside a rule: the rule ("spec.rules[1]"), its index and
// the field's path inside the rule ("resources[0].resource").
var rulePath = regexp.MustCompile(`^((?:spec\.)?rules\[(\d+)\])\.(.+)$`)

// addUnknownFields records the unknown fields of an object read from where.
func (s *Set) addUnknownFields(where, object, module string, paths []string) {
	for _, p := range paths {
		u := UnknownField{Source: where, Object: object, Module: module, Rule: -1, Path: p}
		// field is the path named in the message: inside the rule, or inside spec; name is its
		// last part, which the hint and the effect are about.
		field, context := p, objectFields
		if m := rulePath.FindStringSubmatch(p); m != nil {
			u.Rule, _ = strconv.Atoi(m[2])
			field, context = m[3], ruleFields
		} else if _, rest, ok := strings.Cut(p, "."); ok {
			field = rest
		}
		name := field
		if i := strings.LastIndex(field, "]."); i >= 0 && strings.HasPrefix(field, "resources[") {
			name, context = field[i+2:], groupResourceFields
		}
		dropped := "kube-apiserver drops it (kubectl apply refuses it unless told not to validate fields)"
		if strings.HasPrefix(object, "audit.k8s.io/") {
			dropped = "kube-apiserver ignores it, with only a warning in its log"
		}
		u.Problem = fmt.Sprintf("unknown field %q%s: %s, so %s", field, context.hint(name), dropped, context.effect(name))
		s.UnknownFields = append(s.UnknownFields, u)
	}
}

// fieldEffects are the fields of one type, and what is lost when one of them is dropped.
type fieldEffects map[string]string

var (
	ruleFields = fieldEffects{
		"level":             "the rule has no level",
		"users":             "the rule matches every user",
		"userGroups":        "the rule matches users of every group",
		"verbs":             "the rule matches every verb",
		"resources":         "the rule matches every resource",
		"namespaces":        "the rule matches every namespace",
		"nonResourceURLs":   "the rule matches every URL and every resource",
		"omitStages":        "the rule omits no stage of its own",
		"omitManagedFields": "the rule keeps the policy's omitManagedFields",
	}
	groupResourceFields = fieldEffects{
		"group":         `the resources are those of the core group ("")`,
		"resources":     "the rule matches every resource of the group",
		"resourceNames": "the rule matches every object of those resources, whatever its name",
	}
	// objectFields are the fields of a policy, a module's spec and the AuditPolicy's spec that
	// say more than their name.
	objectFields = fieldEffects{
		"omitStages":        "no stage is omitted",
		"omitManagedFields": "managedFields are kept in bodies",
		"defaultLevel":      "the default level is Metadata",
		"rules":             "there are no rules",
	}
)

// hint returns ` (did you mean "verbs"?)` for a misspelt field of the type.
func (f fieldEffects) hint(field string) string {
	if meant, ok := f.meant(field); ok && meant != field {
		return fmt.Sprintf(" (did you mean %q?)", meant)
	}
	return ""
}

// effect says what the object becomes without the field.
func (f fieldEffects) effect(field string) string {
	if meant, ok := f.meant(field); ok {
		return f[meant]
	}
	return "it is read without it"
}

func (f fieldEffects) meant(field string) (string, bool) {
	names := make([]string, 0, len(f))
	for name := range f {
		names = append(names, name)
	}
	slices.Sort(names)
	return spelling.Closest(field, names)
}
