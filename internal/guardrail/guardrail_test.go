package guardrail

import (
	"reflect"
	"strings"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
)

// Shorthands for writing policies in tables.
const (
	none            = auditv1.LevelNone
	metadata        = auditv1.LevelMetadata
	request         = auditv1.LevelRequest
	requestResponse = auditv1.LevelRequestResponse
)

type ruleOption func(*auditv1.PolicyRule)

func rule(level auditv1.Level, opts ...ruleOption) auditv1.PolicyRule {
	r := auditv1.PolicyRule{Level: level}
	for _, o := range opts {
		o(&r)
	}
	return r
}

func users(vs ...string) ruleOption  { return func(r *auditv1.PolicyRule) { r.Users = vs } }
func groups(vs ...string) ruleOption { return func(r *auditv1.PolicyRule) { r.UserGroups = vs } }
func verbs(vs ...string) ruleOption  { return func(r *auditv1.PolicyRule) { r.Verbs = vs } }
func ns(vs ...string) ruleOption     { return func(r *auditv1.PolicyRule) { r.Namespaces = vs } }
func urls(vs ...string) ruleOption   { return func(r *auditv1.PolicyRule) { r.NonResourceURLs = vs } }

func res(group string, resources ...string) ruleOption {
	return func(r *auditv1.PolicyRule) {
		r.Resources = append(r.Resources, auditv1.GroupResources{Group: group, Resources: resources})
	}
}

// names sets the resourceNames of the last resources entry.
func names(vs ...string) ruleOption {
	return func(r *auditv1.PolicyRule) { r.Resources[len(r.Resources)-1].ResourceNames = vs }
}

func omit(stages ...auditv1.Stage) ruleOption {
	return func(r *auditv1.PolicyRule) { r.OmitStages = stages }
}

func omitManagedFields(v bool) ruleOption {
	return func(r *auditv1.PolicyRule) { r.OmitManagedFields = &v }
}

func rules(rs ...auditv1.PolicyRule) auditv1.Policy { return auditv1.Policy{Rules: rs} }

// scope is the matching fields of a rule built with the same options.
func scope(opts ...ruleOption) Scope {
	r := rule(metadata, opts...)
	return Scope{Users: r.Users, UserGroups: r.UserGroups, Verbs: r.Verbs, Resources: r.Resources, Namespaces: r.Namespaces, NonResourceURLs: r.NonResourceURLs}
}

func builtin(t *testing.T, name string) Guardrail {
	t.Helper()
	for _, g := range Builtins() {
		if g.Name == name {
			return g
		}
	}
	t.Fatalf("no built-in guardrail %q", name)
	return Guardrail{}
}

// resource and url are witness requests.
func resource(user string, groups []string, verb, apiGroup, resource, subresource, namespace, name string) *policy.Request {
	return &policy.Request{User: user, Groups: groups, Verb: verb, ResourceRequest: true, APIGroup: apiGroup,
		Resource: resource, Subresource: subresource, Namespace: namespace, Name: name}
}

func url(user string, groups []string, verb, path string) *policy.Request {
	return &policy.Request{User: user, Groups: groups, Verb: verb, Path: path}
}

const (
	anyUser = "kaudit-any-user"
	anyNS   = "kaudit-any-namespace"
	anyName = "kaudit-any-name"
)

var masters = []string{"system:masters"}

type checkCase struct {
	name      string
	policy    auditv1.Policy
	guardrail Guardrail
	// want is the witness; nil when the policy keeps the guardrail.
	want *policy.Request
	// rule is the rule that decides want, -1 for none.
	rule int
}

func runCheckCases(t *testing.T, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Check(tc.policy, []Guardrail{tc.guardrail})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.want == nil && len(got) == 0:
			case tc.want == nil:
				t.Fatalf("policy keeps %s, but Check reports %+v decided by rule %d", tc.guardrail.Name, got[0].Request, got[0].Decision.Rule)
			case len(got) == 0:
				t.Fatalf("Check reports nothing; want %+v decided by rule %d", *tc.want, tc.rule)
			default:
				v := got[0]
				t.Logf("%s: %+v is decided by rule %d at %s (omitting %v)", v.Guardrail, v.Request, v.Decision.Rule, v.Decision.Level, v.Decision.OmitStages)
				if v.Guardrail != tc.guardrail.Name || !reflect.DeepEqual(v.Request, *tc.want) || v.Decision.Rule != tc.rule {
					t.Fatalf("Check reports %+v decided by rule %d; want %+v decided by rule %d", v.Request, v.Decision.Rule, *tc.want, tc.rule)
				}
			}
		})
	}
}

func TestEachBuiltinIsReportedWhenBrokenAndNotWhenKept(t *testing.T) {
	credentialsAtMetadata := rule(metadata,
		res("", "secrets", "configmaps", "serviceaccounts/token"),
		res("authentication.k8s.io", "tokenreviews"),
		res("certificates.k8s.io", "certificatesigningrequests/*", "podcertificaterequests/*"))
	runCheckCases(t, []checkCase{{
		name:      "secret bodies logged",
		policy:    rules(rule(requestResponse, res("", "secrets")), rule(metadata)),
		guardrail: builtin(t, NoCredentialBodies),
		want:      resource(anyUser, nil, "get", "", "secrets", "", anyNS, ""), rule: 0,
	}, {
		name:      "service account tokens logged with bodies by a catch-all",
		policy:    rules(rule(metadata, res("", "secrets", "configmaps")), rule(request)),
		guardrail: builtin(t, NoCredentialBodies),
		want:      resource(anyUser, nil, "get", "", "serviceaccounts", "token", anyNS, anyName), rule: 1,
	}, {
		name:      "credentials kept at Metadata before a body-logging catch-all",
		policy:    rules(credentialsAtMetadata, rule(requestResponse)),
		guardrail: builtin(t, NoCredentialBodies),
	}, {
		name:      "a masters user's reads dropped",
		policy:    rules(rule(none, users("alice"), verbs("get", "list")), rule(metadata)),
		guardrail: builtin(t, SystemMastersLogged),
		want:      resource("alice", masters, "get", "", "kaudit-any-resource", "", anyNS, ""), rule: 0,
	}, {
		name:      "a component's noise also drops what it does as a member of system:masters",
		policy:    rules(rule(none, groups("system:nodes"), verbs("get")), rule(requestResponse, groups("system:masters")), rule(metadata)),
		guardrail: builtin(t, SystemMastersLogged),
		want:      resource(anyUser, []string{"system:masters", "system:nodes"}, "get", "", "kaudit-any-resource", "", anyNS, ""), rule: 0,
	}, {
		name:      "masters kept before the noise",
		policy:    rules(rule(requestResponse, groups("system:masters")), rule(none, groups("system:nodes"), verbs("get")), rule(metadata)),
		guardrail: builtin(t, SystemMastersLogged),
	}, {
		name:      "only the apiserver's loopback user dropped: the exception",
		policy:    rules(rule(none, users("system:apiserver")), rule(metadata)),
		guardrail: builtin(t, SystemMastersLogged),
	}, {
		name:      "RBAC deletes dropped",
		policy:    rules(rule(none, verbs("delete", "deletecollection"), res("rbac.authorization.k8s.io", "*")), rule(metadata)),
		guardrail: builtin(t, RBACWritesLogged),
		want:      resource(anyUser, nil, "delete", "rbac.authorization.k8s.io", "roles", "", anyNS, ""), rule: 0,
	}, {
		name:      "RBAC reads dropped, writes kept",
		policy:    rules(rule(none, verbs("get", "list", "watch"), res("rbac.authorization.k8s.io")), rule(metadata)),
		guardrail: builtin(t, RBACWritesLogged),
	}, {
		name:      "CRD writes by a controller dropped",
		policy:    rules(rule(none, users("operator"), res("apiextensions.k8s.io", "customresourcedefinitions")), rule(metadata)),
		guardrail: builtin(t, AdmissionWritesLogged),
		want:      resource("operator", nil, "create", "apiextensions.k8s.io", "customresourcedefinitions", "", anyNS, ""), rule: 0,
	}, {
		name:      "CRD status writes dropped, CRD writes kept",
		policy:    rules(rule(none, res("apiextensions.k8s.io", "customresourcedefinitions/status")), rule(metadata)),
		guardrail: builtin(t, AdmissionWritesLogged),
	}, {
		name:      "exec over WebSocket (a get) dropped by a read rule",
		policy:    rules(rule(none, users("system:kube-controller-manager"), verbs("get", "list", "watch")), rule(metadata)),
		guardrail: builtin(t, PodInteractiveAccessLogged),
		want:      resource("system:kube-controller-manager", nil, "get", "", "pods", "exec", anyNS, anyName), rule: 0,
	}, {
		name:      "interactive access kept before the noise",
		policy:    rules(rule(metadata, res("", "pods/exec", "pods/attach", "pods/portforward", "pods/ephemeralcontainers")), rule(none, verbs("get")), rule(metadata)),
		guardrail: builtin(t, PodInteractiveAccessLogged),
	}})
}

func TestShadowedRulesAreNotReported(t *testing.T) {
	secretsAtMost := Guardrail{Name: "secrets-at-most-metadata", Scope: scope(res("", "secrets")), MaxLevel: metadata}
	runCheckCases(t, []checkCase{{
		name:      "an earlier compliant rule decides every request the later one could",
		policy:    rules(rule(metadata, res("", "secrets")), rule(requestResponse, groups("system:masters")), rule(metadata)),
		guardrail: secretsAtMost,
	}, {
		name: "two earlier rules together shadow it, one per user",
		policy: rules(rule(metadata, users("alice"), res("", "secrets")), rule(none, users("bob"), verbs("get")), rule(metadata, users("bob")),
			rule(requestResponse, users("alice", "bob")), rule(metadata)),
		guardrail: secretsAtMost,
	}, {
		name: "shadowed in the guardrail's scope but not outside it",
		policy: rules(rule(metadata, res("", "secrets")), rule(requestResponse, res("", "secrets", "pods")),
			rule(metadata)),
		guardrail: secretsAtMost,
	}, {
		name:      "shadowed for the listed users only",
		policy:    rules(rule(metadata, users("alice")), rule(requestResponse, users("alice", "bob"))),
		guardrail: secretsAtMost,
		want:      resource("bob", nil, "get", "", "secrets", "", anyNS, ""), rule: 1,
	}})
}

func TestExceptionsAndGroups(t *testing.T) {
	anyoneButBob := Guardrail{Name: "anyone-but-bob", Scope: Scope{}, Except: []Scope{scope(users("bob"))}, MinLevel: metadata}
	runCheckCases(t, []checkCase{{
		name:      "the excepted user dropped",
		policy:    rules(rule(none, users("bob")), rule(metadata)),
		guardrail: anyoneButBob,
	}, {
		name:      "another user dropped with the excepted one",
		policy:    rules(rule(none, users("bob", "carol")), rule(metadata)),
		guardrail: anyoneButBob,
		want:      resource("carol", nil, "get", "", "kaudit-any-resource", "", anyNS, ""), rule: 0,
	}, {
		name:      "an exception by group: a member of both groups is excepted",
		policy:    rules(rule(none, groups("g1")), rule(metadata)),
		guardrail: Guardrail{Name: "g1-but-not-g2", Scope: scope(groups("g1")), Except: []Scope{scope(groups("g2"))}, MinLevel: metadata},
		want:      resource(anyUser, []string{"g1"}, "get", "", "kaudit-any-resource", "", anyNS, ""), rule: 0,
	}, {
		name:      "any of the scope's groups: the one the earlier rule misses",
		policy:    rules(rule(metadata, groups("g1")), rule(none)),
		guardrail: Guardrail{Name: "g1-or-g2", Scope: scope(groups("g1", "g2")), MinLevel: metadata},
		want:      resource(anyUser, []string{"g2"}, "get", "", "kaudit-any-resource", "", anyNS, ""), rule: 1,
	}, {
		name:      "users in no group are requests too (failed authentication has no user at all)",
		policy:    rules(rule(metadata, groups("system:authenticated", "system:unauthenticated")), rule(none)),
		guardrail: Guardrail{Name: "everyone", MinLevel: metadata},
		want:      resource(anyUser, nil, "get", "", "kaudit-any-resource", "", anyNS, ""), rule: 1,
	}})
}

func TestRequiredStages(t *testing.T) {
	execStarted := Guardrail{Name: "exec-started", Scope: scope(res("", "pods/exec")), RequiredStages: []auditv1.Stage{auditv1.StageResponseStarted}}
	exec := resource(anyUser, nil, "get", "", "pods", "exec", anyNS, anyName)
	runCheckCases(t, []checkCase{{
		name:      "kept",
		policy:    rules(rule(metadata, omit(auditv1.StageRequestReceived))),
		guardrail: execStarted,
	}, {
		name:      "omitted by the deciding rule",
		policy:    rules(rule(metadata, res("", "pods/exec", "pods/attach"), omit(auditv1.StageResponseStarted)), rule(metadata)),
		guardrail: execStarted,
		want:      exec, rule: 0,
	}, {
		name:      "omitted by the policy",
		policy:    auditv1.Policy{OmitStages: []auditv1.Stage{auditv1.StageResponseStarted}, Rules: []auditv1.PolicyRule{rule(requestResponse)}},
		guardrail: execStarted,
		want:      exec, rule: 0,
	}, {
		name:      "None writes no stage",
		policy:    rules(rule(none, verbs("create")), rule(metadata)),
		guardrail: execStarted,
		want:      resource(anyUser, nil, "create", "", "pods", "exec", anyNS, anyName), rule: 0,
	}})
}

func TestWildcardsNamesNamespacesAndURLs(t *testing.T) {
	podsAtMost := Guardrail{Name: "pods-at-most-metadata", Scope: scope(res("", "pods")), MaxLevel: metadata}
	clusterScoped := Guardrail{Name: "cluster-scoped-logged", Scope: scope(ns("")), MinLevel: metadata}
	health := Guardrail{Name: "health-logged", Scope: scope(urls("/healthz*")), MinLevel: metadata}
	runCheckCases(t, []checkCase{{
		name:      `"*" in any group`,
		policy:    rules(rule(requestResponse, res("*", "*"))),
		guardrail: builtin(t, NoCredentialBodies),
		want:      resource(anyUser, nil, "get", "", "secrets", "", anyNS, ""), rule: 0,
	}, {
		name:      `"*/exec" is exec of any resource`,
		policy:    rules(rule(none, res("", "*/exec")), rule(metadata)),
		guardrail: builtin(t, PodInteractiveAccessLogged),
		want:      resource(anyUser, nil, "get", "", "pods", "exec", anyNS, anyName), rule: 0,
	}, {
		name:      `"pods/*" matches pods itself too`,
		policy:    rules(rule(requestResponse, res("", "pods/*")), rule(metadata)),
		guardrail: podsAtMost,
		want:      resource(anyUser, nil, "get", "", "pods", "", anyNS, ""), rule: 0,
	}, {
		name:      `"pods/*" of another group does not`,
		policy:    rules(rule(requestResponse, res("apps", "pods/*")), rule(metadata)),
		guardrail: podsAtMost,
	}, {
		name:      "resourceNames: the named object is dropped",
		policy:    rules(rule(none, res("", "pods/exec"), names("debug")), rule(metadata)),
		guardrail: builtin(t, PodInteractiveAccessLogged),
		want:      resource(anyUser, nil, "get", "", "pods", "exec", anyNS, "debug"), rule: 0,
	}, {
		name:      "resourceNames in the scope: other names do not count",
		policy:    rules(rule(requestResponse, res("", "pods"), names("other")), rule(metadata)),
		guardrail: Guardrail{Name: "pod-web", Scope: scope(res("", "pods"), names("web")), MaxLevel: metadata},
	}, {
		name:      `namespace "" is the cluster scope`,
		policy:    rules(rule(none, ns("")), rule(metadata)),
		guardrail: clusterScoped,
		want:      resource(anyUser, nil, "get", "", "kaudit-any-resource", "", "", ""), rule: 0,
	}, {
		name:      "a named namespace is not the cluster scope",
		policy:    rules(rule(none, ns("kube-system")), rule(metadata)),
		guardrail: clusterScoped,
	}, {
		name:      "a path under the prefix but not the exact path",
		policy:    rules(rule(metadata, urls("/healthz")), rule(none, urls("/healthz*")), rule(metadata)),
		guardrail: health,
		want:      url(anyUser, nil, "get", "/healthz/kaudit-any-path"), rule: 1,
	}, {
		name:      "the exact path, which the prefix matches too",
		policy:    rules(rule(none, urls("/healthz")), rule(metadata)),
		guardrail: health,
		want:      url(anyUser, nil, "get", "/healthz"), rule: 0,
	}, {
		name:      "a longer prefix does not cover a shorter one",
		policy:    rules(rule(metadata, urls("/healthz/*")), rule(none)),
		guardrail: health,
		want:      url(anyUser, nil, "get", "/healthz"), rule: 1,
	}, {
		name:      "the prefix covers everything below it",
		policy:    rules(rule(metadata, urls("/healthz*", "/livez")), rule(none)),
		guardrail: health,
	}, {
		name:      "non-resource rules never decide resource requests",
		policy:    rules(rule(none, urls("*")), rule(metadata)),
		guardrail: builtin(t, RBACWritesLogged),
	}})
}

func TestCatchAllsAndTheEmptyPolicy(t *testing.T) {
	for _, g := range Builtins() {
		runCheckCases(t, []checkCase{{
			name: g.Name + "/a catch-all at Metadata", policy: rules(rule(metadata)), guardrail: g,
		}})
	}
	runCheckCases(t, []checkCase{{
		name:      "a catch-all at None: the policy that logs nothing",
		policy:    rules(rule(none)),
		guardrail: builtin(t, SystemMastersLogged),
		want:      resource(anyUser, masters, "get", "", "kaudit-any-resource", "", anyNS, ""), rule: 0,
	}, {
		name:      "no rule matches: None",
		policy:    rules(rule(metadata, users("alice"))),
		guardrail: builtin(t, RBACWritesLogged),
		want:      resource(anyUser, nil, "create", "rbac.authorization.k8s.io", "roles", "", anyNS, ""), rule: -1,
	}, {
		name:      "a catch-all at RequestResponse logs credentials",
		policy:    rules(rule(requestResponse)),
		guardrail: builtin(t, NoCredentialBodies),
		want:      resource(anyUser, nil, "get", "", "secrets", "", anyNS, ""), rule: 0,
	}})

	if _, err := Check(auditv1.Policy{}, Builtins()); err == nil || !strings.Contains(err.Error(), "0 rules") {
		t.Errorf("a policy without rules: got error %v, want the loader's refusal (kube-apiserver does not start with it)", err)
	}
}

func TestInvalidInputsAreErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		policy    auditv1.Policy
		guardrail Guardrail
		want      string
	}{
		{"invalid policy", rules(rule("Everything")), Guardrail{Name: "g"}, "policy:"},
		{"unknown level", rules(rule(metadata)), Guardrail{Name: "g", MinLevel: "Most"}, `guardrail "g": minLevel: unknown level "Most"`},
		{"unknown stage", rules(rule(metadata)), Guardrail{Name: "g", RequiredStages: []auditv1.Stage{"Later"}}, `guardrail "g": requiredStages[0]: unknown stage "Later"`},
		{"scope with resources and URLs", rules(rule(metadata)), Guardrail{Name: "g", Scope: scope(res("", "pods"), urls("/x"))}, `guardrail "g": `},
		{"invalid exception", rules(rule(metadata)), Guardrail{Name: "g", Except: []Scope{scope(urls("x"))}}, `guardrail "g": `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Check(tc.policy, []Guardrail{tc.guardrail})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestChecksGuardrailsInOrderAndReportsOnlyBrokenOnes(t *testing.T) {
	p := rules(rule(requestResponse, res("", "secrets")), rule(none, verbs("get")), rule(metadata))
	got, err := Check(p, Builtins())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range got {
		names = append(names, v.Guardrail)
	}
	want := []string{NoCredentialBodies, SystemMastersLogged, PodInteractiveAccessLogged}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("broken guardrails %v, want %v", names, want)
	}
	again, err := Check(p, Builtins())
	if err != nil || !reflect.DeepEqual(again, got) {
		t.Fatalf("a second Check answered differently: %+v, %v", again, err)
	}
}

func TestBuiltinsHaveStableUniqueNamesAndDescriptions(t *testing.T) {
	seen := map[string]bool{}
	for _, g := range Builtins() {
		if seen[g.Name] || g.Name != strings.ToLower(g.Name) || strings.ContainsAny(g.Name, " _") || g.Description == "" {
			t.Errorf("built-in %q: names must be unique kebab-case, with a description", g.Name)
		}
		seen[g.Name] = true
	}
	first := Builtins()
	first[0].Scope.Resources[0].Resources[0] = "changed"
	if Builtins()[0].Scope.Resources[0].Resources[0] == "changed" {
		t.Error("Builtins shares its data between calls")
	}
}

type weakeningCase struct {
	name           string
	combined, base auditv1.Policy
	region         Scope
	// want is the witness; nil when combined logs nothing less than base in region.
	want *policy.Request
	// combinedRule and baseRule decide want.
	combinedRule, baseRule int
}

func TestFindWeakening(t *testing.T) {
	base := rules(
		rule(requestResponse, omitManagedFields(false), verbs("create", "update"), res("apps", "deployments")),
		rule(metadata))
	// before puts team rules in front of base, as a namespaced module ordered before the
	// cluster's modules.
	before := func(rs ...auditv1.PolicyRule) auditv1.Policy {
		return auditv1.Policy{Rules: append(rs, base.Rules...)}
	}
	teamA := scope(ns("team-a"))
	for _, tc := range []weakeningCase{{
		name: "stricter: bodies for everything in the namespace", combined: before(rule(requestResponse, ns("team-a"))), base: base, region: teamA,
	}, {
		name: "reads dropped", combined: before(rule(none, verbs("get", "list"), ns("team-a"))), base: base, region: teamA,
		want: resource(anyUser, nil, "get", "", "kaudit-any-resource", "", "team-a", ""), combinedRule: 0, baseRule: 1,
	}, {
		name:     "reads dropped, but only after a rule that keeps them",
		combined: before(rule(metadata, verbs("get", "list"), ns("team-a")), rule(none, verbs("get", "list"), ns("team-a"))), base: base, region: teamA,
	}, {
		name:     "everything kept at Metadata, which base logs with bodies",
		combined: before(rule(metadata, ns("team-a"))), base: base, region: teamA,
		want: resource(anyUser, nil, "create", "apps", "deployments", "", "team-a", ""), combinedRule: 0, baseRule: 0,
	}, {
		name:     "dropped outside the region only",
		combined: before(rule(none, ns("team-a", "team-b"), verbs("get")), rule(none, ns("team-b"))), base: base, region: scope(ns("team-b")),
		want: resource(anyUser, nil, "get", "", "kaudit-any-resource", "", "team-b", ""), combinedRule: 0, baseRule: 1,
	}, {
		name:     "dropped outside the region only, seen from inside it",
		combined: before(rule(none, ns("team-b"))), base: base, region: teamA,
	}, {
		name:     "a stage omitted",
		combined: before(rule(metadata, verbs("get"), ns("team-a"), omit(auditv1.StageResponseComplete))), base: base, region: teamA,
		want: resource(anyUser, nil, "get", "", "kaudit-any-resource", "", "team-a", ""), combinedRule: 0, baseRule: 1,
	}, {
		name:     "managedFields dropped where base keeps them in bodies",
		combined: before(rule(requestResponse, omitManagedFields(true), ns("team-a"), res("apps", "deployments"))), base: base, region: teamA,
		want: resource(anyUser, nil, "create", "apps", "deployments", "", "team-a", ""), combinedRule: 0, baseRule: 0,
	}, {
		name:     "managedFields dropped where base writes no body",
		combined: before(rule(requestResponse, omitManagedFields(true), verbs("get"), ns("team-a"))), base: base, region: teamA,
	}, {
		name:     "stages omitted where base writes nothing",
		combined: rules(rule(none, ns("team-a"), omit(auditv1.StageResponseComplete)), rule(none)), base: rules(rule(none)), region: teamA,
	}, {
		name:     "unrelated policies: the earliest combined rule that logs less, then the earliest base rule",
		combined: rules(rule(metadata, users("alice")), rule(none, verbs("get")), rule(requestResponse)),
		base:     rules(rule(request, users("bob")), rule(metadata)), region: Scope{},
		want: resource("bob", nil, "get", "", "kaudit-any-resource", "", anyNS, ""), combinedRule: 1, baseRule: 0,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := FindWeakening(tc.combined, tc.base, tc.region)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.want == nil && w == nil:
			case tc.want == nil:
				t.Fatalf("FindWeakening reports %+v (combined rule %d, base rule %d)", w.Request, w.Combined.Rule, w.Base.Rule)
			case w == nil:
				t.Fatalf("FindWeakening reports nothing; want %+v", *tc.want)
			default:
				t.Logf("%+v: combined rule %d decides %s omitting %v, base rule %d decides %s omitting %v",
					w.Request, w.Combined.Rule, w.Combined.Level, w.Combined.OmitStages, w.Base.Rule, w.Base.Level, w.Base.OmitStages)
				if !reflect.DeepEqual(w.Request, *tc.want) || w.Combined.Rule != tc.combinedRule || w.Base.Rule != tc.baseRule {
					t.Fatalf("FindWeakening reports %+v (rules %d, %d); want %+v (rules %d, %d)", w.Request, w.Combined.Rule, w.Base.Rule, *tc.want, tc.combinedRule, tc.baseRule)
				}
			}
		})
	}
}
