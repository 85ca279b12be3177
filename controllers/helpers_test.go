package controllers_test

import (
	"fmt"
	"slices"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/revision"
)

// Helpers of the envtest suite: they act on the suite's control plane as a user or an agent
// would, and read what the manager wrote.

const timeout = 30 * time.Second

func rule(level v1alpha1.Level, resources ...string) v1alpha1.PolicyRule {
	r := v1alpha1.PolicyRule{Level: level}
	if len(resources) > 0 {
		r.Resources = []v1alpha1.GroupResources{{Group: "", Resources: resources}}
	}
	return r
}

func newModule(name string, order int32, rules ...v1alpha1.PolicyRule) *v1alpha1.AuditPolicyModule {
	return &v1alpha1.AuditPolicyModule{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.AuditPolicyModuleSpec{Order: order, Rules: rules},
	}
}

func listRevisions() []revision.Revision {
	var cms corev1.ConfigMapList
	Expect(k8s.List(ctx, &cms, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: revision.Selector()})).To(Succeed())
	out := make([]revision.Revision, 0, len(cms.Items))
	for i := range cms.Items {
		r, err := revision.FromConfigMap(&cms.Items[i])
		Expect(err).NotTo(HaveOccurred())
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b revision.Revision) int { return int(a.Number - b.Number) })
	return out
}

// latestNumber is the newest revision number, 0 when there is none.
func latestNumber() int64 {
	revs := listRevisions()
	if len(revs) == 0 {
		return 0
	}
	return revs[len(revs)-1].Number
}

func latestRevision() revision.Revision {
	revs := listRevisions()
	Expect(revs).NotTo(BeEmpty())
	return revs[len(revs)-1]
}

// updateModule changes a module as a user would, retrying when the controller's status
// writes make the update conflict.
func updateModule(name string, change func(*v1alpha1.AuditPolicyModule)) {
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		m := getModule(name)
		change(m)
		return k8s.Update(ctx, m)
	})).To(Succeed())
}

func getModule(name string) *v1alpha1.AuditPolicyModule {
	m := &v1alpha1.AuditPolicyModule{}
	Expect(k8s.Get(ctx, types.NamespacedName{Name: name}, m)).To(Succeed())
	return m
}

func accepted(name string) *metav1.Condition {
	return meta.FindStatusCondition(getModule(name).Status.Conditions, v1alpha1.ConditionAccepted)
}

func singleton() *v1alpha1.AuditPolicy {
	ap := &v1alpha1.AuditPolicy{}
	Expect(k8s.Get(ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, ap)).To(Succeed())
	return ap
}

// setRollout patches the user-owned spec as a user would.
func setRollout(debounce, maxWait string) {
	patch := fmt.Sprintf(`{"spec":{"rollout":{"debounce":%q,"maxWait":%q}}}`, debounce, maxWait)
	Expect(k8s.Patch(ctx, &v1alpha1.AuditPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SingletonName}},
		client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
}

// setGuardrails replaces spec.guardrails as a user would.
func setGuardrails(guardrails string) {
	patch := fmt.Sprintf(`{"spec":{"guardrails":%s}}`, guardrails)
	Expect(k8s.Patch(ctx, &v1alpha1.AuditPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SingletonName}},
		client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
}

// allBuiltInsOff switches every built-in guardrail off, for specs about something else.
const allBuiltInsOff = `{"disabledBuiltIns":["no-credential-bodies","system-masters-logged","rbac-writes-logged","admission-writes-logged","pod-interactive-access-logged"]}`

func deleteAllModules() {
	Expect(k8s.DeleteAllOf(ctx, &v1alpha1.AuditPolicyModule{})).To(Succeed())
	Eventually(func() []v1alpha1.AuditPolicyModule {
		var l v1alpha1.AuditPolicyModuleList
		Expect(k8s.List(ctx, &l)).To(Succeed())
		return l.Items
	}, timeout).Should(BeEmpty())
}

// reportNode writes one node's rollout entry as that node's agent does: server-side apply of
// the status subresource under the agent's own field manager.
func reportNode(node string, applied int64, phase v1alpha1.NodePhase, message string) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AuditPolicy",
		"metadata": map[string]any{"name": v1alpha1.SingletonName},
		"status": map[string]any{"nodes": []any{map[string]any{
			"name": node, "appliedRevision": applied, "phase": string(phase), "message": message,
		}}},
	}}
	Expect(k8s.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("kaudit-agent-"+node), client.ForceOwnership)).To(Succeed())
}

func condition(t string) metav1.Condition {
	c := meta.FindStatusCondition(singleton().Status.Conditions, t)
	if c == nil {
		return metav1.Condition{}
	}
	return *c
}

func controlPlaneNode(name string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1alpha1.ControlPlaneLabel: ""}}}
}
