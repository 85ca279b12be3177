package lint

import (
	"encoding/json"
	"slices"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/apiserver/pkg/audit"
	auditpolicy "k8s.io/apiserver/pkg/audit/policy"

	"github.com/kaudit/kaudit/internal/policy"
)

// ruleIndex decides witness requests as kube-apiserver does, the first matching rule deciding,
// without testing every rule on every request: that made lint's cost grow with the square of
// the number of rules. Rules are indexed by the values they list in five fields (user, groups,
// verb, namespace, API group); a request is tested only against the rules that list its value
// in the most selective of those fields or leave that field open, and each of those is tested
// with kube-apiserver's own evaluator on a policy of that one rule.
type ruleIndex struct {
	// matchers[i] evaluates rule i alone at a level that is never None: it matches when it
	// answers anything but None.
	matchers []audit.PolicyRuleEvaluator
	// deciders[i] evaluates rule i alone with the policy's omitStages and omitManagedFields:
	// what the policy decides for the requests that rule i decides.
	deciders []audit.PolicyRuleEvaluator
	fields   [numFields]fieldIndex
	// seen[i] == mark when rule i was already gathered by the current call of candidates.
	seen     []uint32
	mark     uint32
	gathered []int
}

// field is a request field that rules may restrict to listed values.
type field int

const (
	userField field = iota
	groupsField
	verbField
	namespaceField
	apiGroupField
	numFields
)

// fieldIndex holds, for one field, the rules that leave it open (match any value) and, by
// value, the rules that list it. Lists are in rule order.
type fieldIndex struct {
	open    []int
	byValue map[string][]int
}

func newRuleIndex(p auditv1.Policy) (*ruleIndex, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	loaded, err := policy.Load(b)
	if err != nil {
		return nil, err
	}
	x := &ruleIndex{seen: make([]uint32, len(loaded.Rules))}
	for f := range x.fields {
		x.fields[f].byValue = map[string][]int{}
	}
	for i, r := range loaded.Rules {
		probe := *r.DeepCopy()
		probe.Level, probe.OmitStages = auditinternal.LevelMetadata, nil
		x.matchers = append(x.matchers, auditpolicy.NewPolicyRuleEvaluator(&auditinternal.Policy{Rules: []auditinternal.PolicyRule{probe}}))
		x.deciders = append(x.deciders, auditpolicy.NewPolicyRuleEvaluator(&auditinternal.Policy{
			OmitStages: loaded.OmitStages, OmitManagedFields: loaded.OmitManagedFields, Rules: []auditinternal.PolicyRule{*r.DeepCopy()},
		}))
		x.fields[userField].add(i, r.Users)
		x.fields[groupsField].add(i, r.UserGroups)
		x.fields[verbField].add(i, r.Verbs)
		x.fields[namespaceField].add(i, r.Namespaces)
		var groups []string
		for _, gr := range r.Resources {
			if gr.Group == "*" {
				groups = nil
				break
			}
			groups = append(groups, gr.Group)
		}
		x.fields[apiGroupField].add(i, groups)
	}
	return x, nil
}

// add indexes rule i under each value it lists; with none, the field is open.
func (f *fieldIndex) add(i int, values []string) {
	if len(values) == 0 {
		f.open = append(f.open, i)
		return
	}
	for _, v := range slices.Compact(slices.Sorted(slices.Values(values))) {
		f.byValue[v] = append(f.byValue[v], i)
	}
}

// candidates returns, in rule order, the rules that can match r: those that leave the most
// selective field open or list r's value in it. Any rule not returned cannot match r.
func (x *ruleIndex) candidates(r policy.Request) []int {
	values := [numFields][]string{
		userField:   {r.User},
		groupsField: r.Groups,
		verbField:   {r.Verb},
	}
	if r.ResourceRequest {
		values[namespaceField] = []string{r.Namespace}
		values[apiGroupField] = []string{r.APIGroup}
	}
	// A non-resource request matches no rule that lists namespaces or resources: it looks up no
	// value in those fields, only the open rules.
	best, bestCost := field(-1), len(x.matchers)
	for f := range numFields {
		cost := len(x.fields[f].open)
		for _, v := range values[f] {
			cost += len(x.fields[f].byValue[v])
		}
		if cost < bestCost {
			best, bestCost = f, cost
		}
	}
	x.gathered = x.gathered[:0]
	if best < 0 {
		for i := range x.matchers {
			x.gathered = append(x.gathered, i)
		}
		return x.gathered
	}
	x.mark++
	gather := func(list []int) {
		for _, i := range list {
			if x.seen[i] != x.mark {
				x.seen[i] = x.mark
				x.gathered = append(x.gathered, i)
			}
		}
	}
	gather(x.fields[best].open)
	for _, v := range values[best] {
		gather(x.fields[best].byValue[v])
	}
	slices.Sort(x.gathered)
	return x.gathered
}

// matching returns the rules that match r, in order: the first decides, the others are
// shadowed for r.
func (x *ruleIndex) matching(r policy.Request) []int {
	attrs := r.Attributes()
	var out []int
	for _, i := range x.candidates(r) {
		if x.matchers[i].EvaluatePolicyRule(attrs).Level != auditinternal.LevelNone {
			out = append(out, i)
		}
	}
	return out
}

// decide returns what the policy decides for r, and the deciding rule.
func (x *ruleIndex) decide(r policy.Request) policy.Decision {
	return x.decideSkipping(r, -1)
}

// decideSkipping returns what the policy without rule skip decides for r; the rule index is
// that of the whole policy.
func (x *ruleIndex) decideSkipping(r policy.Request, skip int) policy.Decision {
	attrs := r.Attributes()
	for _, i := range x.candidates(r) {
		if i != skip && x.matchers[i].EvaluatePolicyRule(attrs).Level != auditinternal.LevelNone {
			cfg := x.deciders[i].EvaluatePolicyRule(attrs)
			d := policy.Decision{Rule: i, Level: auditv1.Level(cfg.Level), OmitManagedFields: cfg.OmitManagedFields}
			for _, s := range cfg.OmitStages {
				d.OmitStages = append(d.OmitStages, auditv1.Stage(s))
			}
			slices.Sort(d.OmitStages)
			return d
		}
	}
	return policy.Decision{Rule: -1, Level: auditv1.Level(auditpolicy.DefaultAuditLevel)}
}
