package controllers_test

import (
	"fmt"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/manifest"
)

// The baseline's modules, as `kubectl apply -k config/modules/baseline` creates them.
func applyBaseline() []string {
	GinkgoHelper()
	set, err := manifest.Read(nil, filepath.Join("..", "config", "modules", "baseline"))
	Expect(err).NotTo(HaveOccurred())
	var names []string
	for _, m := range set.Modules {
		Expect(k8s.Create(ctx, &v1alpha1.AuditPolicyModule{ObjectMeta: metav1.ObjectMeta{Name: m.Name}, Spec: m.Spec})).To(Succeed())
		names = append(names, m.Name)
	}
	return names
}

func namespacedRule(level v1alpha1.Level, group string, resources ...string) v1alpha1.NamespacedPolicyRule {
	return v1alpha1.NamespacedPolicyRule{Level: level, Verbs: []string{"create", "update", "patch"},
		Resources: []v1alpha1.GroupResources{{Group: group, Resources: resources}}}
}

func newNamespacedModule(namespace, name string, order int32, rules ...v1alpha1.NamespacedPolicyRule) *v1alpha1.NamespacedAuditPolicyModule {
	return &v1alpha1.NamespacedAuditPolicyModule{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       v1alpha1.NamespacedAuditPolicyModuleSpec{Order: order, Rules: rules},
	}
}

func getNamespacedModule(namespace, name string) *v1alpha1.NamespacedAuditPolicyModule {
	m := &v1alpha1.NamespacedAuditPolicyModule{}
	Expect(k8s.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, m)).To(Succeed())
	return m
}

// verdict is the Accepted condition of a module of either kind once it describes the current
// generation, else the zero condition.
func verdict(status v1alpha1.AuditPolicyModuleStatus, generation int64) metav1.Condition {
	c := meta.FindStatusCondition(status.Conditions, v1alpha1.ConditionAccepted)
	if c == nil || status.ObservedGeneration != generation || c.ObservedGeneration != generation {
		return metav1.Condition{}
	}
	return *c
}

func moduleVerdict(name string) metav1.Condition {
	m := getModule(name)
	return verdict(m.Status, m.Generation)
}

func namespacedVerdict(namespace, name string) metav1.Condition {
	m := getNamespacedModule(namespace, name)
	return verdict(m.Status, m.Generation)
}

func ensureNamespace(name string) {
	GinkgoHelper()
	err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	Expect(client.IgnoreAlreadyExists(err)).To(Succeed())
}

// settled waits until the singleton makes no revision for a while, and returns the latest.
func settled() int64 {
	GinkgoHelper()
	Eventually(func() string { return condition(v1alpha1.ConditionProgressing).Reason }, timeout).ShouldNot(Equal(v1alpha1.ReasonDebouncing))
	n := latestNumber()
	Consistently(latestNumber, "1s", "100ms").Should(Equal(n))
	return n
}

// warningEvents are the messages of the manager's Warning events with the reason.
func warningEvents(reason string) []string {
	var list eventsv1.EventList
	Expect(k8s.List(ctx, &list)).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Reason == reason && e.Type == corev1.EventTypeWarning {
			out = append(out, e.Note)
		}
	}
	return out
}

func deleteAllNamespacedModules() {
	var l v1alpha1.NamespacedAuditPolicyModuleList
	Expect(k8s.List(ctx, &l)).To(Succeed())
	for i := range l.Items {
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, &l.Items[i]))).To(Succeed())
	}
	Eventually(func() []v1alpha1.NamespacedAuditPolicyModule {
		Expect(k8s.List(ctx, &l)).To(Succeed())
		return l.Items
	}, timeout).Should(BeEmpty())
}

// guardrailSpecs run inside the suite's ordered container, on the shipped baseline with the
// default guardrails.
func guardrailSpecs() {
	Describe("guardrails on the baseline", Ordered, func() {
		BeforeAll(func() {
			deleteAllModules()
			setRollout("200ms", "5s")
			setGuardrails(`{"disabledBuiltIns":[],"custom":[]}`)
			applyBaseline()
			Eventually(func(g Gomega) {
				for _, name := range []string{"secrets-metadata-only", "system-masters", "workloads"} {
					g.Expect(getModule(name).Status.IncludedInRevision).NotTo(BeNil(), name)
				}
			}, timeout).Should(Succeed())
			Eventually(func() metav1.ConditionStatus { return condition(v1alpha1.ConditionDegraded).Status }, timeout).Should(Equal(metav1.ConditionFalse))
			Expect(k8s.Create(ctx, newModule("guarded-edit", 1, rule(v1alpha1.LevelMetadata, "widgets")))).To(Succeed())
			Eventually(func() *int64 { return getModule("guarded-edit").Status.IncludedInRevision }, timeout).ShouldNot(BeNil())
		})
		AfterAll(func() {
			deleteAllNamespacedModules()
			deleteAllModules()
		})

		group := func(group string, resources ...string) []v1alpha1.GroupResources {
			return []v1alpha1.GroupResources{{Group: group, Resources: resources}}
		}
		DescribeTable("an edit that breaks a built-in guardrail is rejected, naming it and a request; the last accepted spec stays and the policy does not change",
			func(guardrailName string, bad v1alpha1.PolicyRule, witness ...string) {
				before := settled()
				policyBefore := string(latestRevision().Policy)
				updateModule("guarded-edit", func(m *v1alpha1.AuditPolicyModule) { m.Spec.Rules = []v1alpha1.PolicyRule{bad} })
				var c metav1.Condition
				Eventually(func() metav1.Condition { c = moduleVerdict("guarded-edit"); return c }, timeout).Should(HaveField("Reason", v1alpha1.ReasonGuardrailViolation))
				Expect(c.Status).To(Equal(metav1.ConditionFalse))
				Expect(c.Message).To(ContainSubstring(fmt.Sprintf("guardrail %q", guardrailName)))
				Expect(c.Message).To(ContainSubstring(fmt.Sprintf("would be logged at %s by its rule 0", bad.Level)))
				Expect(c.Message).To(ContainSubstring("by user "))
				for _, w := range witness {
					Expect(c.Message).To(ContainSubstring(w))
				}
				Expect(c.Message).To(ContainSubstring("The last accepted version stays in force."))
				Expect(getModule("guarded-edit").Status.IncludedInRevision).To(BeNil())
				Consistently(latestNumber, "1s", "100ms").Should(Equal(before), "the merged policy does not change")
				Expect(string(latestRevision().Policy)).To(Equal(policyBefore))
				Expect(policyBefore).To(ContainSubstring("- widgets"), "the last accepted rule stays")
			},
			Entry(nil, "no-credential-bodies", v1alpha1.PolicyRule{Level: v1alpha1.LevelRequestResponse, Resources: group("", "secrets")}, "secrets in namespace"),
			Entry(nil, "system-masters-logged", v1alpha1.PolicyRule{Level: v1alpha1.LevelNone, UserGroups: []string{"system:masters"}, Verbs: []string{"get"}}, "groups: system:masters"),
			// The next three drop requests of system:apiserver only: any other user may be in
			// system:masters, and system-masters-logged would be the first guardrail broken.
			Entry(nil, "rbac-writes-logged", v1alpha1.PolicyRule{Level: v1alpha1.LevelNone, Users: []string{"system:apiserver"}, Resources: group("rbac.authorization.k8s.io", "roles")}, "roles (API group rbac.authorization.k8s.io)", `by user "system:apiserver"`),
			Entry(nil, "admission-writes-logged", v1alpha1.PolicyRule{Level: v1alpha1.LevelNone, Users: []string{"system:apiserver"}, Resources: group("apiextensions.k8s.io", "customresourcedefinitions")}, "customresourcedefinitions (API group apiextensions.k8s.io)"),
			Entry(nil, "pod-interactive-access-logged", v1alpha1.PolicyRule{Level: v1alpha1.LevelNone, Users: []string{"system:apiserver"}, Resources: group("", "pods/exec")}, "pods/exec"),
		)

		It("disabling the module that keeps Secrets at Metadata is refused: its rules stay", func() {
			before := settled()
			updateModule("secrets-metadata-only", func(m *v1alpha1.AuditPolicyModule) { m.Spec.Disabled = true })
			var c metav1.Condition
			Eventually(func() metav1.Condition { c = moduleVerdict("secrets-metadata-only"); return c }, timeout).Should(HaveField("Reason", v1alpha1.ReasonGuardrailViolation))
			Expect(c.Status).To(Equal(metav1.ConditionFalse))
			Expect(c.Message).To(ContainSubstring(`Disabling this module would break guardrail "no-credential-bodies"`))
			// Rule 0 of system-masters keeps lists and watches at Metadata; rule 1 logs the rest in full.
			Expect(c.Message).To(ContainSubstring("would be logged at RequestResponse (rule 1 of module system-masters)"))
			Consistently(latestNumber, "1s", "100ms").Should(Equal(before))
			Expect(string(latestRevision().Policy)).To(ContainSubstring("# module secrets-metadata-only, rule 0"))
			updateModule("secrets-metadata-only", func(m *v1alpha1.AuditPolicyModule) { m.Spec.Disabled = false })
			Eventually(func() string { return moduleVerdict("secrets-metadata-only").Reason }, timeout).Should(Equal(v1alpha1.ReasonValid))
		})

		It("deleting it keeps its rules in force, and the singleton says so until the module is back", func() {
			before := settled()
			saved := getModule("secrets-metadata-only")
			Expect(k8s.Delete(ctx, saved)).To(Succeed())
			Eventually(func() string { return condition(v1alpha1.ConditionDegraded).Reason }, timeout).Should(Equal(v1alpha1.ReasonGuardrailViolation))
			Expect(condition(v1alpha1.ConditionDegraded).Message).To(ContainSubstring("AuditPolicyModule secrets-metadata-only was deleted, but its last accepted rules stay in force"))
			Expect(condition(v1alpha1.ConditionDegraded).Message).To(ContainSubstring(`breaking guardrail "no-credential-bodies"`))
			Eventually(func() []string { return warningEvents(v1alpha1.EventDeletedModuleKept) }, timeout).Should(ContainElement(ContainSubstring("secrets-metadata-only was deleted")))
			Consistently(latestNumber, "1s", "100ms").Should(Equal(before))
			Expect(string(latestRevision().Policy)).To(ContainSubstring("# module secrets-metadata-only, rule 0"))

			Expect(k8s.Create(ctx, &v1alpha1.AuditPolicyModule{ObjectMeta: metav1.ObjectMeta{Name: saved.Name}, Spec: saved.Spec})).To(Succeed())
			Eventually(func() metav1.ConditionStatus { return condition(v1alpha1.ConditionDegraded).Status }, timeout).Should(Equal(metav1.ConditionFalse))
			Eventually(func() string { return moduleVerdict("secrets-metadata-only").Reason }, timeout).Should(Equal(v1alpha1.ReasonValid))
		})

		It("a custom guardrail rejects a module that logs less than it asks", func() {
			setGuardrails(`{"custom":[{"name":"deployment-creates-logged","description":"Every Deployment created is logged.",
				"scope":{"verbs":["create"],"resources":[{"group":"apps","resources":["deployments"]}]},"minLevel":"Metadata"}]}`)
			// system:apiserver only, so that system-masters-logged holds (see the table above).
			Expect(k8s.Create(ctx, newModule("quiet-deployments", 2, v1alpha1.PolicyRule{Level: v1alpha1.LevelNone,
				Users: []string{"system:apiserver"}, Resources: group("apps", "deployments")}))).To(Succeed())
			var c metav1.Condition
			Eventually(func() metav1.Condition { c = moduleVerdict("quiet-deployments"); return c }, timeout).Should(HaveField("Reason", v1alpha1.ReasonGuardrailViolation))
			Expect(c.Message).To(ContainSubstring(`guardrail "deployment-creates-logged" (Every Deployment created is logged)`))
			Expect(c.Message).To(ContainSubstring(`create deployments (API group apps)`))
			Expect(c.Message).To(ContainSubstring(`by user "system:apiserver"`))
			Expect(c.Message).To(ContainSubstring("would be logged at None by its rule 0. Nothing of this module is in force."))
			Expect(k8s.Delete(ctx, getModule("quiet-deployments"))).To(Succeed())
		})

		It("a disabled built-in guardrail holds nothing back; enabled again, it blocks nothing the policy already does", func() {
			setGuardrails(`{"disabledBuiltIns":["no-credential-bodies"],"custom":[]}`)
			updateModule("guarded-edit", func(m *v1alpha1.AuditPolicyModule) {
				m.Spec.Rules = []v1alpha1.PolicyRule{{Level: v1alpha1.LevelRequestResponse, Resources: group("", "secrets")}}
			})
			Eventually(func() string { return moduleVerdict("guarded-edit").Reason }, timeout).Should(Equal(v1alpha1.ReasonValid))
			Eventually(func() string { return string(latestRevision().Policy) }, timeout).Should(ContainSubstring("- secrets\n# module secrets-metadata-only"))

			setGuardrails(`{"disabledBuiltIns":[]}`)
			Eventually(func() string { return condition(v1alpha1.ConditionDegraded).Reason }, timeout).Should(Equal(v1alpha1.ReasonGuardrailViolation))
			Expect(condition(v1alpha1.ConditionDegraded).Message).To(ContainSubstring(`The policy breaks guardrail "no-credential-bodies"`))
			Expect(condition(v1alpha1.ConditionDegraded).Message).To(ContainSubstring("is logged at RequestResponse (rule 0 of module guarded-edit)"))
			Eventually(func() []string { return warningEvents(v1alpha1.ReasonGuardrailViolation) }, timeout).Should(ContainElement(ContainSubstring(`The policy breaks guardrail "no-credential-bodies"`)))
			Expect(moduleVerdict("guarded-edit").Reason).To(Equal(v1alpha1.ReasonValid), "a guardrail the policy in force breaks blocks nothing")

			By("a change elsewhere still goes through")
			before := latestNumber()
			Expect(k8s.Create(ctx, newModule("gadgets", 700, rule(v1alpha1.LevelRequest, "gadgets")))).To(Succeed())
			Eventually(latestNumber, timeout).Should(Equal(before + 1))
			Eventually(func() string { return moduleVerdict("gadgets").Reason }, timeout).Should(Equal(v1alpha1.ReasonValid))

			By("fixing the policy clears the condition")
			updateModule("guarded-edit", func(m *v1alpha1.AuditPolicyModule) {
				m.Spec.Rules = []v1alpha1.PolicyRule{rule(v1alpha1.LevelMetadata, "widgets")}
			})
			Eventually(func() metav1.ConditionStatus { return condition(v1alpha1.ConditionDegraded).Status }, timeout).Should(Equal(metav1.ConditionFalse))
		})

		It("accepts the baseline plus 20 compliant team modules, each confined to its namespace", func() {
			for i := range 20 {
				ns := fmt.Sprintf("team-%02d", i)
				ensureNamespace(ns)
				Expect(k8s.Create(ctx, newNamespacedModule(ns, "deployment-bodies", 10,
					namespacedRule(v1alpha1.LevelRequestResponse, "apps", "deployments", "statefulsets")))).To(Succeed())
			}
			Eventually(func(g Gomega) {
				for i := range 20 {
					m := getNamespacedModule(fmt.Sprintf("team-%02d", i), "deployment-bodies")
					c := verdict(m.Status, m.Generation)
					g.Expect(c.Reason).To(Equal(v1alpha1.ReasonValid), "%s: %s", m.Namespace, c.Message)
					g.Expect(m.Status.IncludedInRevision).NotTo(BeNil())
					g.Expect(m.Status.RuleCount).To(Equal(int32(1)))
				}
			}, timeout).Should(Succeed())
			text := string(latestRevision().Policy)
			iTeam, iSecrets := strings.Index(text, "# namespaced module team-07/deployment-bodies, rule 0"), strings.Index(text, "# module secrets-metadata-only, rule 0")
			Expect(iTeam).To(BeNumerically(">=", 0))
			Expect(iTeam).To(BeNumerically("<", iSecrets), "namespaced modules come first")
			Expect(text).To(ContainSubstring("  namespaces:\n  - team-07\n"))
			Expect(latestRevision().Modules).To(ContainElement(And(HaveField("Namespace", "team-07"), HaveField("Name", "deployment-bodies"))))
		})

		It("rejects a team module that lowers a level, names another namespace, exceeds the cap or logs Secret bodies", func() {
			ensureNamespace("team-a")
			before := settled()
			Expect(k8s.Create(ctx, newNamespacedModule("team-a", "quiet", 5, namespacedRule(v1alpha1.LevelNone, "apps", "deployments")))).To(Succeed())
			escape := newNamespacedModule("team-a", "escape", 10, namespacedRule(v1alpha1.LevelRequestResponse, "apps", "deployments"))
			escape.Spec.Rules[0].Namespaces = []string{"kube-system"}
			Expect(k8s.Create(ctx, escape)).To(Succeed())
			Expect(k8s.Create(ctx, newNamespacedModule("team-a", "leak", 10, v1alpha1.NamespacedPolicyRule{Level: v1alpha1.LevelRequestResponse,
				Resources: []v1alpha1.GroupResources{{Resources: []string{"secrets"}}}}))).To(Succeed())

			Eventually(func() string { return namespacedVerdict("team-a", "quiet").Reason }, timeout).Should(Equal(v1alpha1.ReasonLowersLogging))
			Expect(namespacedVerdict("team-a", "quiet").Message).To(ContainSubstring(`in namespace "team-a"`))
			Expect(namespacedVerdict("team-a", "quiet").Message).To(ContainSubstring("at None; the cluster's modules log it at"))
			Eventually(func() string { return namespacedVerdict("team-a", "escape").Reason }, timeout).Should(Equal(v1alpha1.ReasonInvalid))
			Expect(namespacedVerdict("team-a", "escape").Message).To(ContainSubstring(`"kube-system": a NamespacedAuditPolicyModule applies only to its own namespace "team-a"`))
			Eventually(func() string { return namespacedVerdict("team-a", "leak").Reason }, timeout).Should(Equal(v1alpha1.ReasonGuardrailViolation))
			Expect(namespacedVerdict("team-a", "leak").Message).To(ContainSubstring(`guardrail "no-credential-bodies"`))
			for _, name := range []string{"quiet", "escape", "leak"} {
				Expect(namespacedVerdict("team-a", name).Status).To(Equal(metav1.ConditionFalse), name)
			}
			Consistently(latestNumber, "1s", "100ms").Should(Equal(before), "none of them reaches the policy")

			By("capping namespaced modules at Request")
			Expect(k8s.Patch(ctx, singleton(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"namespacedModules":{"maxLevel":"Request"}}}`)))).To(Succeed())
			Eventually(func() string { return namespacedVerdict("team-03", "deployment-bodies").Reason }, timeout).Should(Equal(v1alpha1.ReasonAboveCap))
			Expect(namespacedVerdict("team-03", "deployment-bodies").Message).To(ContainSubstring("Rule 0 has level RequestResponse, above Request"))
			Eventually(func() string { return string(latestRevision().Policy) }, timeout).ShouldNot(ContainSubstring("# namespaced module"))
			Expect(k8s.Patch(ctx, singleton(), client.RawPatch(types.JSONPatchType, []byte(`[{"op":"remove","path":"/spec/namespacedModules/maxLevel"}]`)))).To(Succeed())
			Eventually(func() string { return namespacedVerdict("team-03", "deployment-bodies").Reason }, timeout).Should(Equal(v1alpha1.ReasonValid))
		})

		It("switched off, namespaced modules contribute nothing and say why", func() {
			Expect(k8s.Patch(ctx, singleton(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"namespacedModules":{"enabled":false}}}`)))).To(Succeed())
			Eventually(func() string { return namespacedVerdict("team-05", "deployment-bodies").Reason }, timeout).Should(Equal(v1alpha1.ReasonNamespacedModulesDisabled))
			Eventually(func() string { return string(latestRevision().Policy) }, timeout).ShouldNot(ContainSubstring("# namespaced module"))
			Expect(k8s.Patch(ctx, singleton(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"namespacedModules":{"enabled":true}}}`)))).To(Succeed())
			Eventually(func() string { return string(latestRevision().Policy) }, timeout).Should(ContainSubstring("# namespaced module team-05/deployment-bodies"))
		})

		It("the schema refuses a custom guardrail without bounds, with crossed bounds or with a built-in's name", func() {
			for doc, want := range map[string]string{
				`{"custom":[{"name":"unbounded","scope":{}}]}`:                                                         "a guardrail needs a bound",
				`{"custom":[{"name":"crossed","scope":{},"minLevel":"Request","maxLevel":"Metadata"}]}`:                "minLevel must not be above maxLevel",
				`{"custom":[{"name":"no-credential-bodies","scope":{},"minLevel":"Metadata"}]}`:                        "is the name of a built-in guardrail",
				`{"disabledBuiltIns":["no-such-guardrail"]}`:                                                           "Unsupported value",
				`{"custom":[{"name":"urls","scope":{"nonResourceURLs":["/x"],"namespaces":["a"]},"minLevel":"None"}]}`: "nonResourceURLs cannot be combined",
			} {
				err := patchSingleton(`{"guardrails":` + doc + `}`)
				Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%s: %v", doc, err)
				Expect(err.Error()).To(ContainSubstring(want), doc)
			}
		})

		It("lists namespaced modules with the modules' columns", func() {
			m := getNamespacedModule("team-00", "deployment-bodies")
			Expect(m.Status.ObservedGeneration).To(Equal(m.Generation))
			Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
				m := getNamespacedModule("team-00", "deployment-bodies")
				m.Spec.Description = "documented"
				return k8s.Update(ctx, m)
			})).To(Succeed())
			Eventually(func() int64 { return getNamespacedModule("team-00", "deployment-bodies").Status.ObservedGeneration }, timeout).Should(Equal(int64(2)))
			Expect(namespacedVerdict("team-00", "deployment-bodies").Reason).To(Equal(v1alpha1.ReasonValid))
		})
	})
}
