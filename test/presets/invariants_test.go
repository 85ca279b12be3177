package presets

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/relevance"
)

// The properties docs/modules.md promises, checked over every combination of identity, verb and
// resource below rather than over hand-picked samples.

// Components as the noise modules name them.
var components = []who{
	apiserver, kcm, ctrl("replicaset-controller"), ctrl("clusterrole-aggregation-controller"),
	ctrl("generic-garbage-collector"), ctrl("namespace-controller"), scheduler, kubelet, kubeProxy,
}

// Non-components: people, operators, anything else, including names that only look like components.
var nonComponents = []who{
	alice, kubeadmAdmin, anonymous, bootstrapper,
	sa("argocd", "argocd-application-controller"), sa("kube-system", "my-tool"),
	sa("prod", "replicaset-controller"), {"system:node:worker-1", []string{"system:authenticated"}},
}

var everyone = slices.Concat(components, nonComponents, []who{admin})

type groupResource struct{ group, resource string }

// Resources a request may name: built-in, subresources and custom, namespaced and not.
var resources = []groupResource{
	{"", "pods"}, {"", "pods/status"}, {"", "pods/log"}, {"", "pods/eviction"}, {"", "services"},
	{"", "serviceaccounts"}, {"", "nodes"}, {"", "nodes/status"}, {"", "nodes/proxy"}, {"", "namespaces/finalize"},
	{"", "persistentvolumes"}, {"", "events"}, {"", "endpoints"}, {"", "limitranges"}, {"", "resourcequotas"},
	{"apps", "deployments"}, {"apps", "deployments/status"}, {"apps", "daemonsets"}, {"batch", "jobs"},
	{"coordination.k8s.io", "leases"}, {"discovery.k8s.io", "endpointslices"}, {"events.k8s.io", "events"},
	{"networking.k8s.io", "networkpolicies"}, {"policy", "poddisruptionbudgets"},
	{"storage.k8s.io", "storageclasses"}, {"scheduling.k8s.io", "priorityclasses"},
	{"flowcontrol.apiserver.k8s.io", "flowschemas"}, {"node.k8s.io", "runtimeclasses"},
	{"cert-manager.io", "certificates"}, {"example.com", "widgets/status"},
}

// The resources of R1-R3 and the workloads of R5, as the product defines them
// (internal/relevance): the tables below check that the baseline keeps what that definition
// requires.
var (
	sensitive         = tableOf(relevance.Sensitive())
	privilege         = tableOf(relevance.Privilege())
	interactive       = tableOf(relevance.Interactive())
	workloadResources = tableOf(relevance.Workloads())
)

func tableOf(grs []relevance.GroupResource) []groupResource {
	out := make([]groupResource, len(grs))
	for i, gr := range grs {
		out[i] = groupResource{gr.Group, gr.Resource}
	}
	return out
}

var paths = []string{"/healthz", "/readyz?verbose", "/livez/ping", "/metrics", "/version", "/openapi/v2", "/api", "/apis/apps/v1", "/debug/pprof/", "/logs/"}

// each calls f for every combination of identity, verb and resource, in namespace "prod", in
// "kube-system" (where component rules are scoped) and with no namespace (cluster scope).
func each(whos []who, verbs []string, grs []groupResource, f func(request)) {
	for _, w := range whos {
		for _, v := range verbs {
			for _, gr := range grs {
				for _, ns := range []string{"prod", "kube-system", ""} {
					f(res(w, v, gr.group, gr.resource, ns))
				}
			}
		}
	}
}

func TestNoSecretBodyIsEverLoggedAndEverySecretAccessIsKept(t *testing.T) {
	e := baseline(t)
	each(everyone, append(slices.Clone(allVerbs), "escalate"), sensitive, func(r request) {
		if got := e.decide(r); got.level != Metadata {
			t.Errorf("%s: %s by %s, want Metadata", r, got.level, got.source)
		}
	})
}

// kube-apiserver's own RBAC writes (its bootstrap reconciliation, user system:apiserver) are
// the exception: R1 wants them at Metadata, and they are kept at Metadata.
func TestPrivilegeChangesAreKeptWithBodiesWhoeverMakesThem(t *testing.T) {
	e := baseline(t)
	each(everyone, writeVerbs, privilege, func(r request) {
		want := RequestResponse
		if r.who.name == apiserver.name && r.group == "rbac.authorization.k8s.io" {
			want = Metadata
		}
		if got := e.decide(r); got.level != want {
			t.Errorf("%s: %s by %s, want %s", r, got.level, got.source, want)
		}
	})
}

func TestWritesByNonComponentsAreKept(t *testing.T) {
	e := baseline(t)
	each(nonComponents, writeVerbs, slices.Concat(resources, workloadResources, sensitive, privilege), func(r request) {
		if got := e.decide(r); got.level.Less(Metadata) {
			t.Errorf("%s: dropped by %s", r, got.source)
		}
	})
}

func TestInteractiveAccessToPodsIsKeptForEveryone(t *testing.T) {
	e := baseline(t)
	each(everyone, allVerbs, interactive, func(r request) {
		if got := e.decide(r); got.level.Less(Metadata) {
			t.Errorf("%s: dropped by %s", r, got.source)
		}
	})
}

// Lists and watches are kept at Metadata (R4): what a collection held is rebuilt from the
// writes that made it.
func TestEverythingSystemMastersDoesIsKept(t *testing.T) {
	e := baseline(t)
	check := func(r request) {
		got := e.decide(r)
		want := RequestResponse
		if got.source == "secrets-metadata-only" || got.source == "pod-interactive-access" || r.verb == "list" || r.verb == "watch" {
			want = Metadata
		}
		if got.level != want {
			t.Errorf("%s: %s by %s, want %s", r, got.level, got.source, want)
		}
	}
	each([]who{admin}, slices.Concat(allVerbs, []string{"head"}), slices.Concat(resources, sensitive, privilege, interactive, workloadResources), check)
	for _, p := range paths {
		for _, v := range []string{"get", "head", "post", "put"} {
			check(url(admin, v, p))
		}
	}
}

// Components' bodies are derived from the user write that caused them (logged) or are pure
// bookkeeping: the only component bodies the baseline keeps are privilege changes and the
// scheduler's tiny pod binding.
func TestComponentsNeverLogBodiesExceptPrivilegeChangesAndPodBinding(t *testing.T) {
	e := baseline(t)
	each(components, allVerbs, slices.Concat(resources, workloadResources, interactive, sensitive), func(r request) {
		got := e.decide(r)
		if Metadata.Less(got.level) && !(r.who.name == scheduler.name && r.resource == "pods/binding") {
			t.Errorf("%s: %s by %s; components' bodies are not logged", r, got.level, got.source)
		}
	})
	if got := e.decide(res(scheduler, "create", "", "pods/binding", "prod")); got.level != Request {
		t.Errorf("scheduler binding: %s, want Request", got.level)
	}
}

// The noise modules only take away: whichever of them is disabled, no request in the tables is
// recorded at a lower level than with all of them.
func TestDisablingANoiseModuleNeverLowersALevel(t *testing.T) {
	base := baseline(t)
	_, set, err := loadSet(baselineDir)
	if err != nil {
		t.Fatal(err)
	}
	var requests []request
	for _, c := range baselineCases {
		requests = append(requests, c.req)
	}
	// Namespace "prod" behaves like any namespace but kube-system and kube-node-lease, which the
	// tables cover: leave it out here to keep the race-detector run short.
	each(slices.Concat(components, nonComponents), []string{"get", "watch", "create", "update", "delete"}, resources, func(r request) {
		if r.namespace != "prod" {
			requests = append(requests, r)
		}
	})
	for _, off := range base.merged.Modules {
		if !strings.HasPrefix(off, "noise-") {
			continue
		}
		t.Run(off, func(t *testing.T) {
			modules := make([]policy.Module, 0, len(set.Modules))
			for _, m := range set.Modules {
				spec := *m.Spec.DeepCopy()
				spec.Disabled = m.Name == off
				modules = append(modules, policy.Module{Name: m.Name, Spec: spec})
			}
			without, err := policy.Merge(modules, policy.SettingsFrom(set.Policy.Spec))
			if err != nil {
				t.Fatal(err)
			}
			e, err := evaluate(without)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range requests {
				if with, wo := base.level(r), e.level(r); wo.Less(with) {
					t.Errorf("%s: %s with %s (%s), %s without it (%s)", r, with, off, base.decide(r).source, wo, e.decide(r).source)
				}
			}
		})
	}
}

// A sanity check on the harness itself: it reports the rule that decides, not just the level.
func TestHarnessNamesTheDecidingRule(t *testing.T) {
	e := baseline(t)
	got := e.decide(res(scheduler, "create", "", "pods/binding", "prod"))
	src := e.merged.Sources
	idx := slices.IndexFunc(src, func(s policy.RuleSource) bool { return s.Module == got.source && s.Rule == got.rule })
	if idx < 0 || string(e.merged.Policy.Rules[idx].Level) != string(got.level) {
		t.Fatalf("decision %+v does not point at a rule of that level", got)
	}
	if fmt.Sprint(e.merged.Policy.Rules[idx].Resources[0].Resources) != "[pods/binding]" {
		t.Errorf("decided by %+v, want the pods/binding rule", e.merged.Policy.Rules[idx])
	}
}

// The identities the tables call components are exactly those the product's definition does.
func TestComponentsAreThoseOfTheDefinition(t *testing.T) {
	for _, w := range components {
		if !relevance.IsComponent(w.name, w.groups) {
			t.Errorf("%s is a component here, not in internal/relevance", w)
		}
	}
	for _, w := range append(slices.Clone(nonComponents), admin) {
		if relevance.IsComponent(w.name, w.groups) {
			t.Errorf("%s is a component in internal/relevance, not here", w)
		}
	}
}
