package managermetrics

import (
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/testenv"
)

const timeout = 30 * time.Second

// sample is the metric name{labels} as the manager's registry holds it now; nil when absent.
// labels are name and value pairs.
func sample(name string, labels ...string) *dto.Metric {
	GinkgoHelper()
	families, err := metrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for i := 0; i < len(labels); i += 2 {
				if got[labels[i]] != labels[i+1] {
					continue metric
				}
			}
			return m
		}
	}
	return nil
}

// value is the value of a gauge or counter, -1 when absent.
func value(name string, labels ...string) float64 {
	GinkgoHelper()
	m := sample(name, labels...)
	switch {
	case m == nil:
		return -1
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	default:
		return m.GetCounter().GetValue()
	}
}

// observed is the count and sum of a histogram.
func observed(name string, labels ...string) (uint64, float64) {
	GinkgoHelper()
	m := sample(name, labels...)
	Expect(m).NotTo(BeNil(), name)
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

func rolloutsObserved(result string) uint64 {
	GinkgoHelper()
	count, _ := observed("kaudit_node_rollout_duration_seconds", "result", result)
	return count
}

func accepted(name string) *metav1.Condition {
	GinkgoHelper()
	m := &v1alpha1.AuditPolicyModule{}
	Expect(k8s.Get(ctx, types.NamespacedName{Name: name}, m)).To(Succeed())
	return meta.FindStatusCondition(m.Status.Conditions, v1alpha1.ConditionAccepted)
}

// reportNode writes one node's rollout entry as that node's agent does.
func reportNode(entry map[string]any) {
	GinkgoHelper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AuditPolicy",
		"metadata": map[string]any{"name": v1alpha1.SingletonName},
		"status":   map[string]any{"nodes": []any{entry}},
	}}
	Expect(k8s.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("kaudit-agent-"+entry["name"].(string)), client.ForceOwnership)).To(Succeed())
}

// token is a fresh token of a ServiceAccount of the kaudit namespace.
func token(serviceAccount string) string {
	GinkgoHelper()
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}
	Expect(k8s.SubResource("token").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: serviceAccount}}, req)).To(Succeed())
	Expect(req.Status.Token).NotTo(BeEmpty())
	return req.Status.Token
}

// scrape gets url with the bearer token, if any, and returns the status code and the body.
func scrape(url, bearer string) (int, string) {
	GinkgoHelper()
	code, body, err := testenv.GetMetrics(ctx, url, bearer)
	Expect(err).NotTo(HaveOccurred())
	return code, body
}

var _ = Describe("the manager's metrics", Ordered, func() {
	It("count the revision made and the modules by state, and time the change to the revision from its debounce's start", func() {
		Expect(k8s.Create(ctx, &v1alpha1.AuditPolicyModule{
			ObjectMeta: metav1.ObjectMeta{Name: "pods"},
			Spec:       v1alpha1.AuditPolicyModuleSpec{Order: 100, Rules: []v1alpha1.PolicyRule{{Level: v1alpha1.LevelMetadata, Resources: []v1alpha1.GroupResources{{Resources: []string{"pods"}}}}}},
		})).To(Succeed())
		// The schema cannot see this one; kube-apiserver's loader can: group names are DNS subdomains.
		Expect(k8s.Create(ctx, &v1alpha1.AuditPolicyModule{
			ObjectMeta: metav1.ObjectMeta{Name: "bad-group"},
			Spec:       v1alpha1.AuditPolicyModuleSpec{Order: 200, Rules: []v1alpha1.PolicyRule{{Level: v1alpha1.LevelMetadata, Resources: []v1alpha1.GroupResources{{Group: "Apps/v1"}}}}},
		})).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(accepted("pods")).To(HaveField("Status", metav1.ConditionTrue))
			g.Expect(accepted("bad-group")).To(HaveField("Reason", v1alpha1.ReasonInvalid))
			g.Expect(value("kaudit_revision_latest")).To(Equal(1.0))
		}, timeout).Should(Succeed())

		Expect(value("kaudit_revisions_total")).To(Equal(1.0))
		count, sum := observed("kaudit_change_to_revision_seconds")
		Expect(count).To(Equal(uint64(1)))
		Expect(sum).To(BeNumerically(">=", v1alpha1.DefaultDebounce.Seconds()), "the time to the revision includes the debounce")
		// The gauges read the cache, which sees the modules' status a moment after the apiserver.
		Eventually(func(g Gomega) {
			g.Expect(value("kaudit_modules", "kind", "AuditPolicyModule", "state", "accepted")).To(Equal(1.0))
			g.Expect(value("kaudit_modules", "kind", "AuditPolicyModule", "state", "rejected")).To(Equal(1.0))
		}, timeout).Should(Succeed())
		Expect(value("kaudit_modules", "kind", "AuditPolicyModule", "state", "disabled")).To(BeZero())
		for _, state := range []string{"accepted", "rejected", "disabled"} {
			Expect(value("kaudit_modules", "kind", "NamespacedAuditPolicyModule", "state", state)).To(BeZero(), state)
		}
	})

	It("count the nodes by phase and those behind, and time each node's rollout once per revision", func() {
		for _, name := range []string{"cp-1", "cp-2"} {
			Expect(k8s.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1alpha1.ControlPlaneLabel: ""}}})).To(Succeed())
		}
		Expect(k8s.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker"}})).To(Succeed())
		// cp-2 first: the manager's reconcile that sees cp-1 applied sees cp-2 rolling out too.
		reportNode(map[string]any{"name": "cp-2", "phase": "RollingOut", "message": "Restarting kube-apiserver for revision 1."})
		reportNode(map[string]any{"name": "cp-1", "appliedRevision": int64(1), "phase": "Applied", "lastRolloutSeconds": int64(42)})
		Eventually(func(g Gomega) {
			count, sum := observed("kaudit_node_rollout_duration_seconds", "result", "applied")
			g.Expect(count).To(Equal(uint64(1)))
			g.Expect(sum).To(Equal(42.0), "the agent's lastRolloutSeconds")
		}, timeout).Should(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(value("kaudit_nodes", "phase", "Applied")).To(Equal(1.0))
			g.Expect(value("kaudit_nodes", "phase", "RollingOut")).To(Equal(1.0))
			g.Expect(value("kaudit_nodes_behind")).To(Equal(1.0), "cp-2; not the worker")
		}, timeout).Should(Succeed())

		// cp-1's entry changes but not its result; then cp-2 is rolled back.
		reportNode(map[string]any{"name": "cp-1", "appliedRevision": int64(1), "phase": "Applied", "lastRolloutSeconds": int64(42), "message": "Runs revision 1."})
		reportNode(map[string]any{"name": "cp-2", "phase": "RolledBack", "message": "kube-apiserver was not ready within 2m0s."})
		Eventually(func(g Gomega) {
			count, sum := observed("kaudit_node_rollout_duration_seconds", "result", "rolled_back")
			g.Expect(count).To(Equal(uint64(1)))
			g.Expect(sum).To(BeNumerically(">", 0), "from when the manager saw cp-2 rolling out")
		}, timeout).Should(Succeed())
		Expect(rolloutsObserved("applied")).To(Equal(uint64(1)), "cp-1's revision 1 once")
		Expect(rolloutsObserved("failed")).To(BeZero())
		Eventually(func(g Gomega) {
			g.Expect(value("kaudit_nodes", "phase", "RolledBack")).To(Equal(1.0))
			g.Expect(value("kaudit_nodes", "phase", "RollingOut")).To(BeZero())
		}, timeout).Should(Succeed())
		Expect(value("kaudit_nodes_behind")).To(Equal(1.0))
	})

	It("serve /metrics over HTTPS only to callers allowed to get it", func() {
		for _, name := range []string{"prometheus", "stranger"} {
			Expect(k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}})).To(Succeed())
		}
		Expect(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "prometheus-kaudit-metrics"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "kaudit-metrics-reader"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: namespace, Name: "prometheus"}},
		})).To(Succeed())
		url := "https://" + metricsAddress + "/metrics"

		code, body := scrape(url, "")
		Expect(code).To(Equal(http.StatusUnauthorized), body)
		code, body = scrape(url, "not-a-token")
		Expect(code).To(Equal(http.StatusUnauthorized), body)
		Expect(body).NotTo(ContainSubstring("kaudit_"))
		code, body = scrape(url, token("stranger"))
		Expect(code).To(Equal(http.StatusForbidden), body)
		code, body = scrape(url, token("prometheus"))
		Expect(code).To(Equal(http.StatusOK), body)
		Expect(strings.Split(body, "\n")).To(ContainElements("kaudit_revisions_total 1", "kaudit_revision_latest 1",
			`kaudit_modules{kind="AuditPolicyModule",state="accepted"} 1`, `kaudit_nodes{phase="Applied"} 1`))

		// Plain HTTP to the HTTPS port: the connection is reset, or answered 400.
		if code, body, err := testenv.GetMetrics(ctx, "http://"+metricsAddress+"/metrics", token("prometheus")); err == nil {
			Expect(code).To(Equal(http.StatusBadRequest), body)
			Expect(body).NotTo(ContainSubstring("kaudit_"))
		}
	})
})
