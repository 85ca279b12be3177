package argocd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

const (
	timeout = "30s"
	poll    = "20ms"
	// node is the control-plane node whose agent the tests play.
	node = "cp-1"
)

// One top-level ordered container: the health states build on each other, and the no-drift
// specs, which make revisions of their own, run after them.
var _ = Describe("kaudit under Argo CD", Ordered, func() {
	healthSpecs()
	driftSpecs()
	syncWaveSpecs()
})

// captured holds, per kind, the objects the health specs fed to the scripts, for -update.
var captured = map[string][]capture{}

type capture struct {
	state  string
	obj    map[string]any
	health Health
}

func live(kind, name string) *unstructured.Unstructured {
	GinkgoHelper()
	return liveAt(kind, types.NamespacedName{Name: name})
}

// liveAt is live for an object of any scope.
func liveAt(kind string, key types.NamespacedName) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(kind))
	Expect(k8s.Get(ctx, key, u)).To(Succeed())
	return u
}

func asModule(u *unstructured.Unstructured) *v1alpha1.AuditPolicyModule {
	m := &v1alpha1.AuditPolicyModule{}
	Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, m)).To(Succeed())
	return m
}

// asModuleStatus is the status of a module of either kind.
func asModuleStatus(u *unstructured.Unstructured) v1alpha1.AuditPolicyModuleStatus {
	var st v1alpha1.AuditPolicyModuleStatus
	if raw, ok := u.Object["status"].(map[string]any); ok {
		Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &st)).To(Succeed())
	}
	return st
}

func asPolicy(u *unstructured.Unstructured) *v1alpha1.AuditPolicy {
	p := &v1alpha1.AuditPolicy{}
	Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, p)).To(Succeed())
	return p
}

// health runs the shipped script of the object's kind on it, as Argo CD would, and records the
// object and the result for -update.
func health(state string, u *unstructured.Unstructured) Health {
	GinkgoHelper()
	kind := u.GetKind()
	h, err := Run(readScript(GinkgoT(), kind), u.Object)
	Expect(err).NotTo(HaveOccurred(), "Lua error on %s %s", kind, state)
	captured[kind] = append(captured[kind], capture{state: state, obj: u.DeepCopy().Object, health: h})
	AddReportEntry(fmt.Sprintf("%s %s", kind, state), fmt.Sprintf("%s: %s", h.Status, h.Message))
	return h
}

// eventually polls an object until check passes and returns it.
func eventually(kind, name string, check func(g Gomega, u *unstructured.Unstructured)) *unstructured.Unstructured {
	GinkgoHelper()
	return eventuallyAt(kind, types.NamespacedName{Name: name}, check)
}

// eventuallyAt is eventually for an object of any scope.
func eventuallyAt(kind string, key types.NamespacedName, check func(g Gomega, u *unstructured.Unstructured)) *unstructured.Unstructured {
	GinkgoHelper()
	var out *unstructured.Unstructured
	Eventually(func(g Gomega) {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(kind))
		g.Expect(k8s.Get(ctx, key, u)).To(Succeed())
		check(g, u)
		out = u
	}, timeout, poll).Should(Succeed())
	return out
}

func moduleObject(name string, disabled bool) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "AuditPolicyModule",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"order":       int64(500),
			"description": "Pod reads and writes at Metadata.",
			"disabled":    disabled,
			"rules": []any{map[string]any{
				"level":     "Metadata",
				"resources": []any{map[string]any{"group": "", "resources": []any{"pods"}}},
			}},
		},
	}}
}

// team is the namespace of the namespaced modules whose health the specs check.
const team = "team-a"

func namespacedModuleObject(name string, disabled bool, level string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "NamespacedAuditPolicyModule",
		"metadata":   map[string]any{"name": name, "namespace": team},
		"spec": map[string]any{
			"order":       int64(10),
			"description": "Pod writes in team-a with their bodies.",
			"disabled":    disabled,
			"rules": []any{map[string]any{
				"level":     level,
				"verbs":     []any{"create", "update", "patch"},
				"resources": []any{map[string]any{"group": "", "resources": []any{"pods"}}},
			}},
		},
	}}
}

func condition(conds []metav1.Condition, t string) metav1.Condition {
	if c := meta.FindStatusCondition(conds, t); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// applyNodeEntry writes this node's entry of the singleton's status as its agent does: server-side
// apply of status.nodes[name=node] under the field manager kaudit-agent-<node>.
func applyNodeEntry(entry map[string]any) {
	GinkgoHelper()
	entry["name"] = node
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "AuditPolicy",
		"metadata":   map[string]any{"name": v1alpha1.SingletonName},
		"status":     map[string]any{"nodes": []any{entry}},
	}}
	Expect(k8s.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner("kaudit-agent-"+node), client.ForceOwnership)).To(Succeed())
}

func healthSpecs() {
	Describe("health checks on objects the manager wrote", Ordered, func() {
		const module, disabled = "gitops-pods", "gitops-disabled"
		var desired int64
		var desiredHash string

		It("singleton with no accepted module is Healthy: nothing to roll out", func() {
			u := eventually("AuditPolicy", v1alpha1.SingletonName, func(g Gomega, u *unstructured.Unstructured) {
				g.Expect(condition(asPolicy(u).Status.Conditions, v1alpha1.ConditionProgressing).Reason).To(Equal(v1alpha1.ReasonNoModules))
			})
			h := health("no-modules", u)
			Expect(h.Status).To(Equal(Healthy))
			Expect(h.Message).To(ContainSubstring("NoModules"))
		})

		It("module just created, not yet validated, is Progressing", func() {
			u := moduleObject(module, false)
			Expect(k8s.Create(ctx, u)).To(Succeed())
			Expect(u.Object).NotTo(HaveKey("status"), "the create response carries no status yet")
			h := health("not-observed", u)
			Expect(h.Status).To(Equal(Progressing))
			Expect(h.Message).To(ContainSubstring("Waiting for the kaudit manager to validate generation 1"))
		})

		It("accepted module waiting for the debounce is Healthy, and the singleton is Progressing", func() {
			u := eventually("AuditPolicyModule", module, func(g Gomega, u *unstructured.Unstructured) {
				m := asModule(u)
				g.Expect(condition(m.Status.Conditions, v1alpha1.ConditionAccepted).Status).To(Equal(metav1.ConditionTrue))
				g.Expect(m.Status.IncludedInRevision).To(BeNil())
			})
			h := health("accepted-pending", u)
			Expect(h.Status).To(Equal(Healthy))
			Expect(h.Message).To(ContainSubstring("Not in a revision yet"))

			u = eventually("AuditPolicy", v1alpha1.SingletonName, func(g Gomega, u *unstructured.Unstructured) {
				g.Expect(condition(asPolicy(u).Status.Conditions, v1alpha1.ConditionProgressing).Reason).To(Equal(v1alpha1.ReasonDebouncing))
			})
			h = health("debouncing", u)
			Expect(h.Status).To(Equal(Progressing))
			Expect(h.Message).To(HavePrefix("Debouncing: "))
		})

		It("accepted module in a revision is Healthy and names the revision", func() {
			u := eventually("AuditPolicyModule", module, func(g Gomega, u *unstructured.Unstructured) {
				g.Expect(asModule(u).Status.IncludedInRevision).NotTo(BeNil())
			})
			h := health("accepted", u)
			Expect(h.Status).To(Equal(Healthy))
			Expect(h.Message).To(MatchRegexp(`Included in revision \d+\.$`))
		})

		It("namespaced module: Progressing until validated, Healthy once accepted and in a revision", func() {
			Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: team}})).To(Succeed())
			u := namespacedModuleObject("pod-bodies", false, "RequestResponse")
			Expect(k8s.Create(ctx, u)).To(Succeed())
			h := health("not-observed", u)
			Expect(h.Status).To(Equal(Progressing))
			Expect(h.Message).To(ContainSubstring("Waiting for the kaudit manager to validate generation 1"))

			key := types.NamespacedName{Namespace: team, Name: "pod-bodies"}
			u = eventuallyAt("NamespacedAuditPolicyModule", key, func(g Gomega, u *unstructured.Unstructured) {
				m := asModuleStatus(u)
				g.Expect(condition(m.Conditions, v1alpha1.ConditionAccepted).Status).To(Equal(metav1.ConditionTrue))
				g.Expect(m.IncludedInRevision).To(BeNil())
			})
			h = health("accepted-pending", u)
			Expect(h.Status).To(Equal(Healthy))
			Expect(h.Message).To(ContainSubstring("Not in a revision yet"))

			u = eventuallyAt("NamespacedAuditPolicyModule", key, func(g Gomega, u *unstructured.Unstructured) {
				g.Expect(asModuleStatus(u).IncludedInRevision).NotTo(BeNil())
			})
			h = health("accepted", u)
			Expect(h.Status).To(Equal(Healthy))
			Expect(h.Message).To(MatchRegexp(`Included in revision \d+\.$`))
		})

		It("namespaced module that would log less than the cluster's modules is Degraded, with the reason", func() {
			key := types.NamespacedName{Namespace: team, Name: "pod-bodies"}
			var updated *unstructured.Unstructured
			Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
				updated = liveAt("NamespacedAuditPolicyModule", key)
				rules, _, _ := unstructured.NestedSlice(updated.Object, "spec", "rules")
				// gitops-pods logs pods at Metadata for the whole cluster.
				rules[0].(map[string]any)["level"] = "None"
				Expect(unstructured.SetNestedSlice(updated.Object, rules, "spec", "rules")).To(Succeed())
				return k8s.Update(ctx, updated)
			})).To(Succeed())
			h := health("generation-behind", updated)
			Expect(h.Status).To(Equal(Progressing))
			Expect(h.Message).To(ContainSubstring("generation 2 (it last validated generation 1)"))

			u := eventuallyAt("NamespacedAuditPolicyModule", key, func(g Gomega, u *unstructured.Unstructured) {
				m := asModuleStatus(u)
				g.Expect(m.ObservedGeneration).To(BeEquivalentTo(2))
				g.Expect(condition(m.Conditions, v1alpha1.ConditionAccepted).Status).To(Equal(metav1.ConditionFalse))
			})
			h = health("rejected", u)
			Expect(h.Status).To(Equal(Degraded))
			Expect(h.Message).To(HavePrefix(v1alpha1.ReasonLowersLogging + ": "))
			Expect(h.Message).To(ContainSubstring(`in namespace "team-a"`))
			Expect(h.Message).To(ContainSubstring("The last accepted version stays in force."))
		})

		It("disabled namespaced module is Healthy and says it is disabled", func() {
			Expect(k8s.Create(ctx, namespacedModuleObject("pod-bodies-off", true, "RequestResponse"))).To(Succeed())
			u := eventuallyAt("NamespacedAuditPolicyModule", types.NamespacedName{Namespace: team, Name: "pod-bodies-off"}, func(g Gomega, u *unstructured.Unstructured) {
				g.Expect(condition(asModuleStatus(u).Conditions, v1alpha1.ConditionAccepted).Reason).To(Equal(v1alpha1.ReasonDisabled))
			})
			h := health("disabled", u)
			Expect(h.Status).To(Equal(Healthy))
			Expect(h.Message).To(HavePrefix("Disabled: "))
		})

		It("singleton without control-plane nodes is Degraded: no apiserver runs the policy", func() {
			u := eventually("AuditPolicy", v1alpha1.SingletonName, func(g Gomega, u *unstructured.Unstructured) {
				p := asPolicy(u)
				g.Expect(p.Status.DesiredRevision).NotTo(BeNil())
				g.Expect(condition(p.Status.Conditions, v1alpha1.ConditionAvailable).Reason).To(Equal(v1alpha1.ReasonNoControlPlaneNodes))
			})
			p := asPolicy(u)
			desired, desiredHash = *p.Status.DesiredRevision, p.Status.DesiredPolicyHash
			h := health("no-control-plane-nodes", u)
			Expect(h.Status).To(Equal(Degraded))
			Expect(h.Message).To(ContainSubstring(v1alpha1.ControlPlaneLabel))
		})

		It("module whose new generation is not yet validated is Progressing, then Degraded when rejected", func() {
			var updated *unstructured.Unstructured
			Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
				updated = live("AuditPolicyModule", module)
				rules, _, _ := unstructured.NestedSlice(updated.Object, "spec", "rules")
				resources := rules[0].(map[string]any)["resources"].([]any)
				// The schema cannot see this; kube-apiserver's loader can: group names are DNS subdomains.
				resources[0].(map[string]any)["group"] = "Apps/v1"
				Expect(unstructured.SetNestedSlice(updated.Object, rules, "spec", "rules")).To(Succeed())
				return k8s.Update(ctx, updated)
			})).To(Succeed())
			Expect(updated.GetGeneration()).To(BeEquivalentTo(2))
			Expect(asModule(updated).Status.ObservedGeneration).To(BeEquivalentTo(1), "the update response holds the status of generation 1")
			h := health("generation-behind", updated)
			Expect(h.Status).To(Equal(Progressing))
			Expect(h.Message).To(ContainSubstring("generation 2 (it last validated generation 1)"))

			u := eventually("AuditPolicyModule", module, func(g Gomega, u *unstructured.Unstructured) {
				m := asModule(u)
				g.Expect(m.Status.ObservedGeneration).To(BeEquivalentTo(2))
				g.Expect(condition(m.Status.Conditions, v1alpha1.ConditionAccepted).Status).To(Equal(metav1.ConditionFalse))
			})
			h = health("rejected", u)
			Expect(h.Status).To(Equal(Degraded))
			Expect(h.Message).To(HavePrefix("Invalid: "))
			Expect(h.Message).To(ContainSubstring("rule 0: resources.group"))
			Expect(h.Message).To(ContainSubstring(`"Apps/v1"`))
		})

		It("disabled module is Healthy and says it is disabled", func() {
			Expect(k8s.Create(ctx, moduleObject(disabled, true))).To(Succeed())
			u := eventually("AuditPolicyModule", disabled, func(g Gomega, u *unstructured.Unstructured) {
				g.Expect(condition(asModule(u).Status.Conditions, v1alpha1.ConditionAccepted).Reason).To(Equal(v1alpha1.ReasonDisabled))
			})
			h := health("disabled", u)
			Expect(h.Status).To(Equal(Healthy))
			Expect(h.Message).To(HavePrefix("Disabled: "))
		})

		It("singleton is Progressing while a node rolls out", func() {
			Expect(k8s.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
				Name: node, Labels: map[string]string{v1alpha1.ControlPlaneLabel: ""},
			}})).To(Succeed())
			applyNodeEntry(map[string]any{"phase": "RollingOut", "message": fmt.Sprintf("restarting kube-apiserver with revision %d", desired)})
			u := eventually("AuditPolicy", v1alpha1.SingletonName, func(g Gomega, u *unstructured.Unstructured) {
				p := asPolicy(u)
				g.Expect(p.Status.Nodes).To(HaveLen(1))
				g.Expect(p.Status.UpdatedNodes).To(Equal("0/1"))
				g.Expect(condition(p.Status.Conditions, v1alpha1.ConditionProgressing).Reason).To(Equal(v1alpha1.ReasonRollingOut))
			})
			h := health("rolling-out", u)
			Expect(h.Status).To(Equal(Progressing))
			Expect(h.Message).To(ContainSubstring(node))
			Expect(h.Message).To(ContainSubstring("Updated nodes: 0/1"))
		})

		It("singleton is Degraded when a node failed, naming the node and the reason", func() {
			reason := "kube-apiserver was not ready within 2m0s; restored the previous policy"
			applyNodeEntry(map[string]any{"phase": "Failed", "message": reason})
			u := eventually("AuditPolicy", v1alpha1.SingletonName, func(g Gomega, u *unstructured.Unstructured) {
				g.Expect(condition(asPolicy(u).Status.Conditions, v1alpha1.ConditionDegraded).Status).To(Equal(metav1.ConditionTrue))
			})
			h := health("node-failed", u)
			Expect(h.Status).To(Equal(Degraded))
			Expect(h.Message).To(ContainSubstring("node " + node + " Failed: " + reason))
		})

		It("singleton is Degraded when a node rolled back, naming the node and the reason", func() {
			reason := "mirror pod did not show the new policy hash; rolled back"
			applyNodeEntry(map[string]any{"phase": "RolledBack", "message": reason})
			u := eventually("AuditPolicy", v1alpha1.SingletonName, func(g Gomega, u *unstructured.Unstructured) {
				g.Expect(condition(asPolicy(u).Status.Conditions, v1alpha1.ConditionDegraded).Message).To(ContainSubstring("RolledBack"))
			})
			h := health("node-rolled-back", u)
			Expect(h.Status).To(Equal(Degraded))
			Expect(h.Message).To(ContainSubstring("node " + node + " RolledBack: " + reason))
		})

		It("singleton is Degraded while a node's files drifted, naming the node, the file and what differs", func() {
			drift := fmt.Sprintf("revision %d: the node's files differ from it: /etc/kubernetes/audit/policy.yaml: rules differ from revision %d's; restoring the policy file, no restart needed", desired, desired)
			applyNodeEntry(map[string]any{"phase": "Drifted", "message": drift, "appliedRevision": desired, "policyHash": desiredHash})
			u := eventually("AuditPolicy", v1alpha1.SingletonName, func(g Gomega, u *unstructured.Unstructured) {
				g.Expect(condition(asPolicy(u).Status.Conditions, v1alpha1.ConditionDegraded).Reason).To(Equal(v1alpha1.ReasonNodeDrifted))
			})
			h := health("node-drifted", u)
			Expect(h.Status).To(Equal(Degraded))
			Expect(h.Message).To(HavePrefix("NodeDrifted: "))
			Expect(h.Message).To(ContainSubstring("node " + node + " Drifted: " + drift))
		})

		It("singleton is Healthy when every control-plane node runs the desired revision", func() {
			applyNodeEntry(map[string]any{
				"phase": "Applied", "appliedRevision": desired, "policyHash": desiredHash,
				"lastRestartTime": "2026-01-01T00:00:00Z", "lastRolloutSeconds": int64(41),
			})
			u := eventually("AuditPolicy", v1alpha1.SingletonName, func(g Gomega, u *unstructured.Unstructured) {
				g.Expect(condition(asPolicy(u).Status.Conditions, v1alpha1.ConditionAvailable).Status).To(Equal(metav1.ConditionTrue))
			})
			h := health("healthy", u)
			Expect(h.Status).To(Equal(Healthy))
			Expect(h.Message).To(ContainSubstring(fmt.Sprintf("runs revision %d", desired)))
		})

		It("records the captured objects as Argo CD test cases (with -update)", func() {
			if !*update {
				Skip("run with -update to rewrite config/argocd/resource_customizations/*/*/testdata")
			}
			for kind, caps := range captured {
				writeTestCases(kind, caps)
			}
		})
	})
}

// writeTestCases stores captured objects and the scripts' verdicts in Argo CD's layout. Volatile
// metadata (uid, resourceVersion, managedFields) is dropped and timestamps are fixed, so that a
// rerun changes the files only when an object or a verdict really changed.
func writeTestCases(kind string, caps []capture) {
	GinkgoHelper()
	dir := filepath.Join(customizationDir, kind)
	Expect(os.RemoveAll(filepath.Join(dir, "testdata"))).To(Succeed())
	Expect(os.MkdirAll(filepath.Join(dir, "testdata"), 0o755)).To(Succeed())
	var tests healthTests
	for _, c := range caps {
		obj := stable(c.obj)
		data, err := yaml.Marshal(obj)
		Expect(err).NotTo(HaveOccurred())
		path := filepath.Join("testdata", c.state+".yaml")
		header := fmt.Sprintf("# %s %s, captured from the envtest suite of test/argocd (go test -update).\n", kind, strings.ReplaceAll(c.state, "-", " "))
		Expect(os.WriteFile(filepath.Join(dir, path), append([]byte(header), data...), 0o644)).To(Succeed())
		// The verdict on the stored object, which is what the plain test will see.
		h, err := Run(readScript(GinkgoT(), kind), obj)
		Expect(err).NotTo(HaveOccurred())
		Expect(h).To(Equal(c.health), "fixing timestamps must not change the verdict")
		tests.Tests = append(tests.Tests, healthTest{HealthStatus: h, InputPath: path})
	}
	data, err := yaml.Marshal(tests)
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(filepath.Join(dir, "health_test.yaml"), data, 0o644)).To(Succeed())
}

const fixedTime = "2026-01-01T00:00:00Z"

func stable(obj map[string]any) map[string]any {
	u := &unstructured.Unstructured{Object: runtime.DeepCopyJSON(obj)}
	u.SetManagedFields(nil)
	u.SetUID("")
	u.SetResourceVersion("")
	if created := u.GetCreationTimestamp(); created.IsZero() {
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	} else {
		Expect(unstructured.SetNestedField(u.Object, fixedTime, "metadata", "creationTimestamp")).To(Succeed())
	}
	for _, list := range [][]string{{"status", "conditions"}, {"status", "nodes"}} {
		items, ok, _ := unstructured.NestedSlice(u.Object, list...)
		if !ok {
			continue
		}
		for _, item := range items {
			m := item.(map[string]any)
			for _, field := range []string{"lastTransitionTime", "lastRestartTime"} {
				if _, ok := m[field]; ok {
					m[field] = fixedTime
				}
			}
		}
		Expect(unstructured.SetNestedSlice(u.Object, items, list...)).To(Succeed())
	}
	return u.Object
}
