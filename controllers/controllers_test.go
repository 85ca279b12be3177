package controllers_test

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/revision"
)

var _ = Describe("kaudit manager", Ordered, func() {
	Describe("the AuditPolicy singleton", func() {
		It("is created by the manager with the schema's defaults", func() {
			Eventually(func() error {
				return k8s.Get(ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, &v1alpha1.AuditPolicy{})
			}, timeout).Should(Succeed())
			ap := singleton()
			Expect(ap.Spec.DefaultLevel).To(Equal(v1alpha1.LevelMetadata))
			Expect(ap.Spec.Rollout.HealthTimeout).To(HaveValue(Equal(metav1.Duration{Duration: 2 * time.Minute})))
			Expect(ap.Spec.Rollout.Debounce).To(HaveValue(Equal(metav1.Duration{Duration: 2 * time.Second})))
			Expect(ap.Spec.AuditLog.MaxBackup).To(HaveValue(BeEquivalentTo(10)))
			Expect(ap.Spec.ManageAPIServerFlags).To(BeFalse())
		})

		It("reports that there is nothing to roll out before any module is accepted", func() {
			Eventually(func() string {
				c := meta.FindStatusCondition(singleton().Status.Conditions, v1alpha1.ConditionProgressing)
				if c == nil {
					return ""
				}
				return c.Reason
			}, timeout).Should(Equal(v1alpha1.ReasonNoModules))
			Expect(listRevisions()).To(BeEmpty())
		})

		It("must be named cluster", func() {
			err := k8s.Create(ctx, &v1alpha1.AuditPolicy{ObjectMeta: metav1.ObjectMeta{Name: "other"}})
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
			Expect(err.Error()).To(ContainSubstring("must be named cluster"))
		})

		It("rejects an unknown default level at apply time", func() {
			err := k8s.Patch(ctx, singleton(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"defaultLevel":"Everything"}}`)))
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
			Expect(err.Error()).To(ContainSubstring("spec.defaultLevel"))
		})
	})

	Describe("merging modules into revisions", Ordered, func() {
		BeforeAll(func() {
			Eventually(func() error {
				return k8s.Get(ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, &v1alpha1.AuditPolicy{})
			}, timeout).Should(Succeed())
			setRollout("200ms", "5s")
			// These specs are about merging and revisions: their modules drop Events for
			// everyone and log Secret bodies. The guardrails have specs of their own.
			setGuardrails(allBuiltInsOff)
		})
		AfterAll(deleteAllModules)

		var first int64

		It("makes one revision holding every module in order, ties broken by name", func() {
			Expect(k8s.Create(ctx, newModule("zeta", 10, rule(v1alpha1.LevelRequest, "pods")))).To(Succeed())
			Expect(k8s.Create(ctx, newModule("alpha", 10, rule(v1alpha1.LevelMetadata, "secrets")))).To(Succeed())
			Expect(k8s.Create(ctx, newModule("first", 1, rule(v1alpha1.LevelNone, "events")))).To(Succeed())

			Eventually(func(g Gomega) {
				for _, name := range []string{"zeta", "alpha", "first"} {
					m := getModule(name)
					g.Expect(m.Status.IncludedInRevision).NotTo(BeNil(), name)
				}
			}, timeout).Should(Succeed())
			rev := latestRevision()
			first = rev.Number
			text := string(rev.Policy)
			iFirst, iAlpha, iZeta := strings.Index(text, "# module first, rule 0"), strings.Index(text, "# module alpha, rule 0"), strings.Index(text, "# module zeta, rule 0")
			Expect(iFirst).To(BeNumerically(">=", 0))
			Expect(iFirst).To(BeNumerically("<", iAlpha))
			Expect(iAlpha).To(BeNumerically("<", iZeta))
			Expect(text).To(ContainSubstring("# default: requests no module matched"))
			_, err := policy.Load(rev.Policy)
			Expect(err).NotTo(HaveOccurred(), "the apiserver's loader must accept every revision")
			Expect(rev.Hash).To(HaveLen(64))

			m := getModule("alpha")
			Expect(m.Status.RuleCount).To(Equal(int32(1)))
			Expect(*m.Status.IncludedInRevision).To(Equal(first))
			Expect(m.Status.ObservedGeneration).To(Equal(m.Generation))
			Expect(accepted("alpha").Status).To(Equal(metav1.ConditionTrue))
			Expect(accepted("alpha").Reason).To(Equal(v1alpha1.ReasonValid))

			Eventually(func() *int64 { return singleton().Status.LatestRevision }, timeout).Should(HaveValue(Equal(first)))
			Expect(*singleton().Status.DesiredRevision).To(Equal(first))
			Expect(singleton().Status.DesiredPolicyHash).To(Equal(rev.Hash))
		})

		It("stores revisions as immutable ConfigMaps labelled with number and hash, without owner references", func() {
			var cm corev1.ConfigMap
			Expect(k8s.Get(ctx, types.NamespacedName{Namespace: namespace, Name: revision.Name(first)}, &cm)).To(Succeed())
			Expect(cm.Immutable).To(HaveValue(BeTrue()))
			Expect(cm.Labels).To(HaveKeyWithValue(revision.LabelRevision, strconv.FormatInt(first, 10)))
			Expect(cm.Labels[revision.LabelPolicyHash]).To(Equal(cm.Annotations[revision.AnnotationPolicySHA256][:16]))
			Expect(cm.OwnerReferences).To(BeEmpty())
		})

		It("makes no revision when only a description changes", func() {
			updateModule("alpha", func(m *v1alpha1.AuditPolicyModule) {
				m.Spec.Description = "renamed and documented"
			})
			Eventually(func() bool {
				m := getModule("alpha")
				return m.Status.ObservedGeneration == m.Generation
			}, timeout).Should(BeTrue())
			Consistently(latestNumber, "1s", "100ms").Should(Equal(first))
			Expect(*getModule("alpha").Status.IncludedInRevision).To(Equal(first))
		})

		It("makes a new revision when rules change and reports where each module is included", func() {
			updateModule("zeta", func(m *v1alpha1.AuditPolicyModule) {
				m.Spec.Rules[0].Verbs = []string{"create", "update"}
			})
			Eventually(latestNumber, timeout).Should(Equal(first + 1))
			Eventually(func() *int64 { return getModule("zeta").Status.IncludedInRevision }, timeout).Should(HaveValue(Equal(first + 1)))
			Expect(*getModule("alpha").Status.IncludedInRevision).To(Equal(first), "an unchanged module keeps the revision that first held it")
			Expect(string(latestRevision().Policy)).To(ContainSubstring("- create"))
		})

		It("rejects a module the apiserver would reject, names rule and field, and keeps its last accepted spec", func() {
			before := latestRevision()
			updateModule("alpha", func(m *v1alpha1.AuditPolicyModule) {
				// The schema cannot see this one; kube-apiserver's loader can: group names are DNS subdomains.
				m.Spec.Rules[0].Resources[0].Group = "Apps/v1"
			})

			Eventually(func(g Gomega) {
				c := accepted("alpha")
				g.Expect(c).NotTo(BeNil())
				g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
				g.Expect(c.Reason).To(Equal(v1alpha1.ReasonInvalid))
				g.Expect(c.Message).To(ContainSubstring("rule 0: resources.group"))
				g.Expect(c.Message).To(ContainSubstring(`"Apps/v1"`))
			}, timeout).Should(Succeed())
			Expect(getModule("alpha").Status.IncludedInRevision).To(BeNil())
			Consistently(latestNumber, "1s", "100ms").Should(Equal(before.Number))
			Expect(string(latestRevision().Policy)).NotTo(ContainSubstring("Apps/v1"))

			By("changing another module: the new revision still holds alpha's last accepted rules")
			updateModule("zeta", func(z *v1alpha1.AuditPolicyModule) {
				z.Spec.Rules[0].Verbs = []string{"create"}
			})
			Eventually(latestNumber, timeout).Should(Equal(before.Number + 1))
			text := string(latestRevision().Policy)
			Expect(text).To(ContainSubstring("# module alpha, rule 0"))
			Expect(text).To(ContainSubstring("- secrets"))
			Expect(text).NotTo(ContainSubstring("Apps/v1"))

			By("fixing the module: it is accepted again")
			updateModule("alpha", func(m *v1alpha1.AuditPolicyModule) {
				m.Spec.Rules[0].Resources[0].Group = ""
			})
			Eventually(func() metav1.ConditionStatus { return accepted("alpha").Status }, timeout).Should(Equal(metav1.ConditionTrue))
		})

		It("excludes a module that was never accepted", func() {
			before := latestNumber()
			bad := newModule("never-good", 5, v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata,
				Resources: []v1alpha1.GroupResources{{Group: "Not_A_Group"}}})
			Expect(k8s.Create(ctx, bad)).To(Succeed())
			Eventually(func() *metav1.Condition { return accepted("never-good") }, timeout).Should(HaveField("Status", metav1.ConditionFalse))
			Consistently(latestNumber, "1s", "100ms").Should(Equal(before))
			Expect(string(latestRevision().Policy)).NotTo(ContainSubstring("never-good"))
			Expect(k8s.Delete(ctx, bad)).To(Succeed())
		})

		It("drops a disabled module's rules and says it is disabled", func() {
			before := latestNumber()
			updateModule("first", func(m *v1alpha1.AuditPolicyModule) {
				m.Spec.Disabled = true
			})
			Eventually(latestNumber, timeout).Should(Equal(before + 1))
			Expect(string(latestRevision().Policy)).NotTo(ContainSubstring("# module first"))
			Eventually(func() string { return accepted("first").Reason }, timeout).Should(Equal(v1alpha1.ReasonDisabled))
			Expect(accepted("first").Status).To(Equal(metav1.ConditionTrue))
			Expect(getModule("first").Status.IncludedInRevision).To(BeNil())
		})

		It("drops a deleted module's rules", func() {
			before := latestNumber()
			Expect(k8s.Delete(ctx, getModule("zeta"))).To(Succeed())
			Eventually(latestNumber, timeout).Should(Equal(before + 1))
			Expect(string(latestRevision().Policy)).NotTo(ContainSubstring("# module zeta"))
		})

		It("never reuses a revision number: A -> B -> A makes a third revision", func() {
			before := latestRevision()
			updateModule("alpha", func(m *v1alpha1.AuditPolicyModule) {
				m.Spec.Rules[0].Level = v1alpha1.LevelRequest
			})
			Eventually(latestNumber, timeout).Should(Equal(before.Number + 1))
			updateModule("alpha", func(m *v1alpha1.AuditPolicyModule) {
				m.Spec.Rules[0].Level = v1alpha1.LevelMetadata
			})
			Eventually(latestNumber, timeout).Should(Equal(before.Number + 2))
			Expect(latestRevision().Hash).To(Equal(before.Hash))
		})

		It("keeps a bounded history, never pruning the pinned revision", func() {
			pinned := latestNumber()
			Expect(k8s.Patch(ctx, singleton(), client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"spec":{"pinnedRevision":%d}}`, pinned))))).To(Succeed())
			Eventually(func() *int64 { return singleton().Status.DesiredRevision }, timeout).Should(HaveValue(Equal(pinned)))
			for i := range historyLimit + 2 {
				updateModule("alpha", func(m *v1alpha1.AuditPolicyModule) {
					m.Spec.Rules[0].Verbs = []string{fmt.Sprintf("verb%d", i)}
				})
				Eventually(latestNumber, timeout).Should(Equal(pinned + int64(i) + 1))
			}
			Eventually(func() int { return len(listRevisions()) }, timeout).Should(Equal(historyLimit))
			revs := listRevisions()
			numbers := make([]int64, 0, len(revs))
			for _, r := range revs {
				numbers = append(numbers, r.Number)
			}
			Expect(numbers).To(ContainElement(pinned), "the pinned revision is kept")
			Expect(numbers).To(ContainElement(latestNumber()))
			Expect(*singleton().Status.DesiredRevision).To(Equal(pinned), "a pinned revision stays desired while newer ones are made")

			Expect(k8s.Patch(ctx, singleton(), client.RawPatch(types.JSONPatchType, []byte(`[{"op":"remove","path":"/spec/pinnedRevision"}]`)))).To(Succeed())
			Eventually(func() *int64 { return singleton().Status.DesiredRevision }, timeout).Should(HaveValue(Equal(latestNumber())))
		})

		It("reports a pinned revision that does not exist as Degraded and keeps the desired revision", func() {
			desired := *singleton().Status.DesiredRevision
			Expect(k8s.Patch(ctx, singleton(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"pinnedRevision":99999}}`)))).To(Succeed())
			Eventually(func() string {
				c := meta.FindStatusCondition(singleton().Status.Conditions, v1alpha1.ConditionDegraded)
				return c.Reason
			}, timeout).Should(Equal(v1alpha1.ReasonPinnedNotFound))
			Expect(*singleton().Status.DesiredRevision).To(Equal(desired))
			Expect(k8s.Patch(ctx, singleton(), client.RawPatch(types.JSONPatchType, []byte(`[{"op":"remove","path":"/spec/pinnedRevision"}]`)))).To(Succeed())
			Eventually(func() metav1.ConditionStatus {
				return meta.FindStatusCondition(singleton().Status.Conditions, v1alpha1.ConditionDegraded).Status
			}, timeout).Should(Equal(metav1.ConditionFalse))
		})

		It("recreates a deleted singleton and keeps the revision history", func() {
			revs := len(listRevisions())
			Expect(k8s.Delete(ctx, singleton())).To(Succeed())
			Eventually(func() error {
				ap := &v1alpha1.AuditPolicy{}
				if err := k8s.Get(ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, ap); err != nil {
					return err
				}
				if ap.Status.LatestRevision == nil {
					return fmt.Errorf("status not written yet")
				}
				return nil
			}, timeout).Should(Succeed())
			Expect(listRevisions()).To(HaveLen(revs))
			setRollout("200ms", "5s")
		})
	})

	Describe("bursts of module changes", Ordered, func() {
		AfterAll(deleteAllModules)

		It("coalesce into one revision (an Argo CD sync of 50 modules)", func() {
			Eventually(func() error {
				return k8s.Get(ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, &v1alpha1.AuditPolicy{})
			}, timeout).Should(Succeed())
			setRollout("1s", "30s")
			before := latestNumber()
			start := time.Now()
			for i := range 50 {
				Expect(k8s.Create(ctx, newModule(fmt.Sprintf("burst-%02d", i), int32(i), rule(v1alpha1.LevelMetadata, fmt.Sprintf("things%d", i))))).To(Succeed())
			}
			lastApply := time.Now()
			Eventually(latestNumber, timeout, "50ms").Should(Equal(before + 1))
			made := time.Now()
			Consistently(latestNumber, "2s", "100ms").Should(Equal(before+1), "one revision for the whole burst")
			for i := range 50 {
				Expect(string(latestRevision().Policy)).To(ContainSubstring(fmt.Sprintf("# module burst-%02d, rule 0", i)))
			}
			GinkgoWriter.Printf("burst: 50 modules applied in %s; revision made %s after the last apply\n", lastApply.Sub(start), made.Sub(lastApply))
			AddReportEntry("burst of 50 modules", fmt.Sprintf("1 revision, %s after the last apply (debounce 1s)", made.Sub(lastApply).Round(time.Millisecond)))
			setRollout("200ms", "5s")
		})
	})
	rolloutStatusSpecs()
	guardrailSpecs()
})
