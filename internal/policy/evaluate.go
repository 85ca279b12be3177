package policy

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strings"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/apiserver/pkg/audit"
	auditpolicy "k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// Request is what an audit policy sees of a request: the authenticated user and the request's
// authorization attributes, exactly the inputs of kube-apiserver's policy evaluator.
type Request struct {
	User   string   `json:"user"`
	Groups []string `json:"groups,omitempty"`
	Verb   string   `json:"verb"`
	// ResourceRequest is true for requests to API resources, false for non-resource URLs.
	ResourceRequest bool   `json:"resourceRequest"`
	APIGroup        string `json:"apiGroup,omitempty"`
	APIVersion      string `json:"apiVersion,omitempty"`
	Resource        string `json:"resource,omitempty"`
	Subresource     string `json:"subresource,omitempty"`
	Namespace       string `json:"namespace,omitempty"`
	Name            string `json:"name,omitempty"`
	// Path is the URL path (non-resource requests are matched on it).
	Path string `json:"path,omitempty"`
}

// Attributes returns the request as authorization attributes for the upstream evaluator.
func (r Request) Attributes() authorizer.Attributes {
	return &authorizer.AttributesRecord{
		User:            &user.DefaultInfo{Name: r.User, Groups: r.Groups},
		Verb:            r.Verb,
		Namespace:       r.Namespace,
		APIGroup:        r.APIGroup,
		APIVersion:      r.APIVersion,
		Resource:        r.Resource,
		Subresource:     r.Subresource,
		Name:            r.Name,
		ResourceRequest: r.ResourceRequest,
		Path:            r.Path,
	}
}

// ObjectRef is the part of an audit event's objectRef that the policy sees.
type ObjectRef struct {
	APIGroup, APIVersion, Resource, Subresource, Namespace, Name string
}

// RequestFromEvent recovers the request that the apiserver evaluated its policy on from a
// recorded audit event. See RequestFromFields.
func RequestFromEvent(ev *auditv1.Event) Request {
	var ref *ObjectRef
	if ev.ObjectRef != nil {
		ref = &ObjectRef{
			APIGroup: ev.ObjectRef.APIGroup, APIVersion: ev.ObjectRef.APIVersion,
			Resource: ev.ObjectRef.Resource, Subresource: ev.ObjectRef.Subresource,
			Namespace: ev.ObjectRef.Namespace, Name: ev.ObjectRef.Name,
		}
	}
	return RequestFromFields(ev.User.Username, ev.User.Groups, ev.Verb, ev.RequestURI, ref)
}

// RequestFromFields recovers the request that the apiserver evaluated its policy on from the
// fields of a recorded audit event. The apiserver fills the event from the same attributes
// (k8s.io/apiserver/pkg/audit.LogRequestMetadata), with two differences undone here: requestURI
// carries the escaped path and the query, and, for a create of a new object, objectRef.name is
// filled in from the object after the policy was evaluated on an empty name.
func RequestFromFields(username string, groups []string, verb, requestURI string, ref *ObjectRef) Request {
	r := Request{User: username, Groups: groups, Verb: verb, Path: PathFromRequestURI(requestURI)}
	if ref == nil {
		return r
	}
	r.ResourceRequest = true
	r.APIGroup, r.APIVersion = ref.APIGroup, ref.APIVersion
	r.Resource, r.Subresource = ref.Resource, ref.Subresource
	r.Namespace, r.Name = ref.Namespace, ref.Name
	if verb == "create" && ref.Subresource == "" {
		r.Name = ""
	}
	return r
}

// PathFromRequestURI returns the unescaped path of a request URI, as the apiserver's
// request info holds it.
func PathFromRequestURI(uri string) string {
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	if strings.IndexByte(uri, '%') >= 0 {
		if p, err := url.PathUnescape(uri); err == nil {
			return p
		}
	}
	return uri
}

// Decision is what a policy decides for a request.
type Decision struct {
	// Rule is the index of the first matching rule; -1 when no rule matches (level None).
	Rule int
	// Level is the audit level.
	Level auditv1.Level
	// OmitStages are the stages not written, the rule's and the policy's, in stage order.
	OmitStages []auditv1.Stage
	// OmitManagedFields tells whether managedFields are dropped from bodies.
	OmitManagedFields bool
}

// Evaluator decides requests with kube-apiserver's own policy evaluator and also tells which rule
// decided. It is safe for concurrent use.
type Evaluator struct {
	full   audit.PolicyRuleEvaluator
	single []audit.PolicyRuleEvaluator
	levels []auditv1.Level
}

// NewEvaluator loads a policy with the apiserver's loader and prepares its evaluator.
func NewEvaluator(p auditv1.Policy) (*Evaluator, error) {
	loaded, err := Load(encode(p))
	if err != nil {
		return nil, err
	}
	e := &Evaluator{}
	// The rule index comes from one single-rule policy per rule, each rule at a level that is
	// never None, so that "matched" and "not matched" differ; the decision itself always comes
	// from the evaluator of the whole policy.
	for _, r := range loaded.Rules {
		probe := *r.DeepCopy()
		probe.Level = auditinternal.LevelMetadata
		probe.OmitStages = nil
		e.single = append(e.single, auditpolicy.NewPolicyRuleEvaluator(&auditinternal.Policy{Rules: []auditinternal.PolicyRule{probe}}))
		e.levels = append(e.levels, auditv1.Level(r.Level))
	}
	e.full = auditpolicy.NewPolicyRuleEvaluator(loaded)
	return e, nil
}

// Decide evaluates a request as kube-apiserver would and names the deciding rule.
func (e *Evaluator) Decide(r Request) Decision {
	attrs := r.Attributes()
	cfg := e.full.EvaluatePolicyRule(attrs)
	d := Decision{Rule: -1, Level: auditv1.Level(cfg.Level), OmitManagedFields: cfg.OmitManagedFields}
	for i, s := range e.single {
		if s.EvaluatePolicyRule(attrs).Level != auditinternal.LevelNone {
			d.Rule = i
			break
		}
	}
	want := auditv1.Level(auditpolicy.DefaultAuditLevel)
	if d.Rule >= 0 {
		want = e.levels[d.Rule]
	}
	if want != d.Level {
		panic(fmt.Sprintf("policy evaluator disagreement for %+v: rule %d has level %s, the policy decides %s", r, d.Rule, want, d.Level))
	}
	for _, s := range cfg.OmitStages {
		d.OmitStages = append(d.OmitStages, auditv1.Stage(s))
	}
	slices.SortFunc(d.OmitStages, func(a, b auditv1.Stage) int { return cmp.Compare(stageRank(a), stageRank(b)) })
	return d
}

// Matching returns the indexes of every rule that matches the request, in order: the first one
// decides, the others are shadowed for this request.
func (e *Evaluator) Matching(r Request) []int {
	attrs := r.Attributes()
	var out []int
	for i, s := range e.single {
		if s.EvaluatePolicyRule(attrs).Level != auditinternal.LevelNone {
			out = append(out, i)
		}
	}
	return out
}

func stageRank(s auditv1.Stage) int {
	for i, known := range stageOrder {
		if string(known) == string(s) {
			return i
		}
	}
	return len(stageOrder)
}

// LevelRank orders levels: None < Metadata < Request < RequestResponse.
func LevelRank(l auditv1.Level) int {
	switch l {
	case auditv1.LevelMetadata:
		return 1
	case auditv1.LevelRequest:
		return 2
	case auditv1.LevelRequestResponse:
		return 3
	}
	return 0
}
