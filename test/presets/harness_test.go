package presets

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit"
	auditpolicy "k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/kaudit/kaudit/internal/manifest"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/relevance"
)

// Paths of the module sets under test, relative to this package.
var (
	baselineDir     = filepath.Join("..", "..", "config", "modules", "baseline")
	managedCloudDir = filepath.Join("..", "..", "config", "modules", "managed-cloud-example")
	optionalDir     = filepath.Join("..", "..", "config", "modules", "optional")
	modulesDir      = filepath.Join("..", "..", "config", "modules")
)

// defaultSource names the catch-all rule made from the singleton's defaultLevel in expectations.
const defaultSource = "default"

// who is an authenticated identity as the apiserver's authenticator hands it to audit.
type who struct {
	name   string
	groups []string
}

func (w who) user() user.Info {
	return &user.DefaultInfo{Name: w.name, Groups: w.groups}
}

func (w who) String() string { return w.name }

// The identities the tests use. Group memberships are those the real authenticators assign.
var (
	// kubernetes-admin with system:masters: break-glass or kubeadm before 1.29 (super-admin.conf after).
	admin = who{"kubernetes-admin", []string{"system:masters", "system:authenticated"}}
	// kubernetes-admin as kubeadm 1.29+ writes admin.conf: bound to cluster-admin, not system:masters.
	kubeadmAdmin = who{"kubernetes-admin", []string{"kubeadm:cluster-admins", "system:authenticated"}}
	alice        = who{"alice@example.com", []string{"developers", "system:authenticated"}}
	anonymous    = who{"system:anonymous", []string{"system:unauthenticated"}}
	// The apiserver's loopback client: a random in-memory token, user system:apiserver in system:masters.
	apiserver = who{"system:apiserver", []string{"system:authenticated", "system:masters"}}
	kcm       = who{"system:kube-controller-manager", []string{"system:authenticated"}}
	scheduler = who{"system:kube-scheduler", []string{"system:authenticated"}}
	kubelet   = who{"system:node:worker-1", []string{"system:nodes", "system:authenticated"}}
	kubeProxy = who{"system:serviceaccount:kube-system:kube-proxy", []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}}
	// A TLS-bootstrapping kubelet before it has a node identity.
	bootstrapper = who{"system:bootstrap:abcdef", []string{"system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token", "system:authenticated"}}
)

// sa is a service account identity.
func sa(namespace, name string) who {
	return who{
		name:   "system:serviceaccount:" + namespace + ":" + name,
		groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
}

// ctrl is one of kube-controller-manager's per-controller service accounts.
func ctrl(name string) who { return sa("kube-system", name) }

// request is what the audit policy sees of a request: the authorizer attributes.
type request struct {
	who       who
	verb      string
	group     string
	resource  string // "pods" or "pods/exec"
	namespace string
	name      string
	path      string // non-resource requests only
}

func (r request) attributes() authorizer.AttributesRecord {
	if r.path != "" {
		return authorizer.AttributesRecord{User: r.who.user(), Verb: r.verb, Path: r.path}
	}
	resource, subresource, _ := strings.Cut(r.resource, "/")
	return authorizer.AttributesRecord{
		User:            r.who.user(),
		Verb:            r.verb,
		Namespace:       r.namespace,
		APIGroup:        r.group,
		APIVersion:      "v1",
		Resource:        resource,
		Subresource:     subresource,
		Name:            r.name,
		ResourceRequest: true,
	}
}

func (r request) String() string {
	if r.path != "" {
		return fmt.Sprintf("%s %s %s", r.who, r.verb, r.path)
	}
	gr := r.resource
	if r.group != "" {
		gr = r.group + "/" + r.resource
	}
	where := ""
	if r.namespace != "" {
		where = " in " + r.namespace
	}
	return fmt.Sprintf("%s %s %s%s", r.who, r.verb, gr, where)
}

// res builds a resource request; ns and name may be empty.
func res(w who, verb, group, resource, ns string) request {
	return request{who: w, verb: verb, group: group, resource: resource, namespace: ns}
}

// url builds a non-resource request.
func url(w who, verb, path string) request {
	return request{who: w, verb: verb, path: path}
}

// decision is what the apiserver decides for a request, and which module's rule decided it.
type decision struct {
	level             auditinternal.Level
	omitStages        []auditinternal.Stage
	omitManagedFields bool
	source            string // module name, or defaultSource
	rule              int
}

// evaluated is a merged module set loaded by the apiserver's loader, with one upstream evaluator
// for the whole policy and one per rule (to tell which rule decided, without re-implementing
// rule matching).
type evaluated struct {
	merged  *policy.Merged
	whole   audit.PolicyRuleEvaluator
	perRule []audit.PolicyRuleEvaluator
}

// loadSet reads a directory or kustomization exactly as `kaudit render` does and merges it.
func loadSet(paths ...string) (*policy.Merged, *manifest.Set, error) {
	set, err := manifest.Read(nil, paths...)
	if err != nil {
		return nil, nil, err
	}
	var settings policy.Settings
	if set.Policy != nil {
		settings = policy.SettingsFrom(set.Policy.Spec)
	}
	modules := make([]policy.Module, 0, len(set.Modules))
	for _, m := range set.Modules {
		modules = append(modules, policy.Module{Name: m.Name, Spec: m.Spec})
	}
	merged, err := policy.Merge(modules, settings)
	if err != nil {
		return nil, nil, err
	}
	return merged, set, nil
}

// evaluate loads the rendered policy with the apiserver's loader and builds its evaluators.
func evaluate(merged *policy.Merged) (*evaluated, error) {
	loaded, err := policy.Load(merged.Render())
	if err != nil {
		return nil, fmt.Errorf("apiserver loader rejected the rendered policy: %w", err)
	}
	if len(loaded.Rules) != len(merged.Sources) {
		return nil, fmt.Errorf("loaded policy has %d rules, merged policy %d", len(loaded.Rules), len(merged.Sources))
	}
	e := &evaluated{merged: merged}
	for _, r := range loaded.Rules {
		// A policy of this one rule at Metadata answers Metadata exactly when the rule matches
		// (an unmatched request gets the evaluator's default, None).
		single := r.DeepCopy()
		single.Level = auditinternal.LevelMetadata
		single.OmitStages = nil
		e.perRule = append(e.perRule, auditpolicy.NewPolicyRuleEvaluator(&auditinternal.Policy{Rules: []auditinternal.PolicyRule{*single}}))
	}
	e.whole = auditpolicy.NewPolicyRuleEvaluator(loaded)
	return e, nil
}

// level is the apiserver's decision alone, without looking for the deciding rule.
func (e *evaluated) level(r request) auditinternal.Level {
	return e.whole.EvaluatePolicyRule(r.attributes()).Level
}

func (e *evaluated) decide(r request) decision {
	attrs := r.attributes()
	cfg := e.whole.EvaluatePolicyRule(attrs)
	d := decision{level: cfg.Level, omitManagedFields: cfg.OmitManagedFields, rule: -1}
	d.omitStages = slices.Clone(cfg.OmitStages)
	slices.Sort(d.omitStages)
	for i, ev := range e.perRule {
		if ev.EvaluatePolicyRule(attrs).Level == auditinternal.LevelMetadata {
			src := e.merged.Sources[i]
			d.source, d.rule = src.Module, src.Rule
			if src.IsDefault() {
				d.source = defaultSource
			}
			return d
		}
	}
	d.source = "(no rule)"
	return d
}

// The baseline is read, merged and loaded once: the machine is shared, tests stay fast.
var baselineOnce = sync.OnceValues(func() (*evaluated, error) {
	merged, _, err := loadSet(baselineDir)
	if err != nil {
		return nil, err
	}
	return evaluate(merged)
})

func baseline(t *testing.T) *evaluated {
	t.Helper()
	e, err := baselineOnce()
	if err != nil {
		t.Fatalf("baseline: %v", err)
	}
	return e
}

// Shorthands for expectations.
const (
	None            = auditinternal.LevelNone
	Metadata        = auditinternal.LevelMetadata
	Request         = auditinternal.LevelRequest
	RequestResponse = auditinternal.LevelRequestResponse
)

// Verb sets.
var (
	readVerbs  = []string{"get", "list", "watch"}
	writeVerbs = relevance.WriteVerbs()
	allVerbs   = append(slices.Clone(readVerbs), writeVerbs...)
)
