//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// bareRestart is the measured restart-to-ready after a bare manifest bump, the
// baseline of kaudit's rollout overhead.
var bareRestart time.Duration

var _ = Describe("kaudit on kind", Ordered, ContinueOnFailure, func() {

	Context("the kind cluster alone", func() {
		It("runs kube-apiserver with the audit flags and policy directory from the kind config", func() {
			manifest, err := kc.nodeFile(manifestOnNode)
			Expect(err).NotTo(HaveOccurred())
			Expect(manifest).To(ContainSubstring("--audit-policy-file=" + policyOnNode))
			Expect(manifest).To(ContainSubstring("--audit-log-path=/var/log/kubernetes/audit/audit.log"))
			since := time.Now()
			By("reading node heartbeats at Metadata in the audit log the apiserver writes")
			Eventually(func() []auditv1.Event {
				return kc.auditEvents(since, nodeHeartbeats(kc.node()))
			}).WithTimeout(40 * time.Second).WithPolling(2 * time.Second).ShouldNot(BeEmpty())
		})

		It("restarts kube-apiserver after a bare annotation bump in its manifest", func() {
			value := fmt.Sprint(time.Now().UnixNano())
			start := time.Now()
			kc.bumpManifestAnnotation("kaudit.local/e2e-bump", value)
			at := kc.waitAPIServerWith("kaudit.local/e2e-bump", value, 4*time.Minute)
			bareRestart = at.Sub(start)
			record("bare apiserver restart-to-ready (manifest bump)", bareRestart)
		})
	})

	Context("installed from config/default", func() {
		BeforeAll(func() { kc.install() })

		It("runs the manager and the agent and serves the CRDs with their columns", func() {
			out, err := kc.kubectl("get", "auditpolicymodules")
			Expect(err).NotTo(HaveOccurred())
			Expect(out).To(Or(ContainSubstring("No resources found"), MatchRegexp(`NAME\s+ORDER\s+RULES\s+ACCEPTED\s+REVISION\s+AGE`)))
			Expect(kc.apply(testModule("e2e-columns", 900, "Metadata", dataNamespace, "endpoints"))).Error().NotTo(HaveOccurred())
			out, err = kc.kubectl("get", "auditpolicymodules")
			Expect(err).NotTo(HaveOccurred())
			Expect(out).To(MatchRegexp(`NAME\s+ORDER\s+RULES\s+ACCEPTED\s+REVISION\s+AGE`))
			Expect(out).To(MatchRegexp(`e2e-columns\s+900\s`))
			Eventually(func() (string, error) { return kc.kubectl("get", "auditpolicies") }).
				WithTimeout(time.Minute).Should(MatchRegexp(`NAME\s+DESIRED\s+UPDATED\s+AVAILABLE\s+DEGRADED\s+AGE`))
			Expect(kc.kubectl("delete", "auditpolicymodule", "e2e-columns")).Error().NotTo(HaveOccurred())
		})
	})

	var applied inEffect

	Context("with the baseline modules", func() {
		It("writes the policy to the node, restarts kube-apiserver and logs at the modules' levels", func() {
			before := kc.latestRevision()
			Expect(kc.kubectl("create", "namespace", dataNamespace)).Error().NotTo(HaveOccurred())
			start := time.Now()
			out, err := run([]string{"KUBECONFIG=" + kc.kubeconfig()}, "", kc.kubectlBin, "apply", "--server-side", "-k", "config/modules/baseline")
			Expect(err).NotTo(HaveOccurred(), out)
			// The suite restarts the apiserver back to back; the default minRestartInterval (5m)
			// would make every later spec wait. A merge patch is owned by another field manager
			// than the server-side apply of the baseline, so re-applying it keeps this.
			Expect(kc.kubectl("patch", "auditpolicy", "cluster", "--type", "merge", "-p", `{"spec":{"rollout":{"minRestartInterval":"0s"}}}`)).Error().NotTo(HaveOccurred())
			Expect(kc.apply(testModule("e2e-serviceaccounts", 1, "RequestResponse", dataNamespace, "serviceaccounts"))).Error().NotTo(HaveOccurred())
			inEffectAt := kc.waitPolicyInEffect(before + 1)
			inEffectAfter := inEffectAt.Sub(start)
			record("kaudit module-apply-to-policy-in-effect (baseline)", inEffectAfter)
			applied = kc.waitRolledOut(before + 1)
			record("kaudit module-apply-to-status-Available (baseline)", applied.At.Sub(start))
			Expect(applied.Policy).To(ContainSubstring("e2e-serviceaccounts"), "the rendered policy names its modules")
			if bareRestart > 0 {
				AddReportEntry("rollout overhead", fmt.Sprintf("%.2fx the bare restart", inEffectAfter.Seconds()/bareRestart.Seconds()))
				fmt.Fprintf(GinkgoWriter, "TIMING rollout overhead: %.2fx the bare restart\n", inEffectAfter.Seconds()/bareRestart.Seconds())
			}

			since := time.Now()
			By("reading a secret: logged at Metadata, without bodies")
			Expect(kc.kubectl("-n", dataNamespace, "create", "secret", "generic", "e2e-secret", "--from-literal=password=hunter2")).Error().NotTo(HaveOccurred())
			Expect(kc.kubectl("-n", dataNamespace, "get", "secret", "e2e-secret", "-o", "yaml")).Error().NotTo(HaveOccurred())
			By("changing a service account: logged at RequestResponse, as e2e-serviceaccounts says")
			Expect(kc.kubectl("-n", dataNamespace, "create", "serviceaccount", "e2e-sa")).Error().NotTo(HaveOccurred())
			Expect(kc.kubectl("-n", dataNamespace, "patch", "serviceaccount", "e2e-sa", "-p", `{"metadata":{"labels":{"k":"v2"}}}`)).Error().NotTo(HaveOccurred())

			Eventually(func(g Gomega) {
				secret := kc.auditEvents(since, objectEvents("secrets", "e2e-secret", "get"))
				g.Expect(secret).NotTo(BeEmpty())
				for _, ev := range secret {
					g.Expect(ev.Level).To(Equal(auditv1.LevelMetadata), summary(secret))
					g.Expect(ev.RequestObject).To(BeNil())
					g.Expect(ev.ResponseObject).To(BeNil(), "a secret read must carry no body")
				}
				cm := kc.auditEvents(since, objectEvents("serviceaccounts", "e2e-sa", "patch"))
				g.Expect(cm).NotTo(BeEmpty())
				for _, ev := range cm {
					g.Expect(ev.Level).To(Equal(auditv1.LevelRequestResponse), summary(cm))
					g.Expect(ev.RequestObject).NotTo(BeNil())
				}
			}).WithTimeout(30 * time.Second).WithPolling(2 * time.Second).Should(Succeed())

			By("node heartbeats are suppressed (noise-nodes)")
			hbSince := applied.At.Add(time.Second)
			Consistently(func() []auditv1.Event {
				return kc.auditEvents(hbSince, nodeHeartbeats(kc.node()))
			}).WithTimeout(25 * time.Second).WithPolling(5 * time.Second).Should(BeEmpty())
		})

		It("serves the manager's metrics over HTTPS to a token allowed to get /metrics, and refuses the others", func() {
			kc.checkManagerMetrics(kc.latestRevision())
		})
	})

	Context("when modules change", func() {
		It("changes the audit log after the restart when a module changes", func() {
			before := kc.latestRevision()
			start := time.Now()
			Expect(kc.apply(testModule("e2e-serviceaccounts", 1, "Metadata", dataNamespace, "serviceaccounts"))).Error().NotTo(HaveOccurred())
			inEffectAt := kc.waitPolicyInEffect(before + 1)
			record("kaudit module-change-to-policy-in-effect", inEffectAt.Sub(start))
			applied = kc.waitRolledOut(before + 1)
			record("kaudit module-change-to-status-Available", applied.At.Sub(start))
			since := time.Now()
			Expect(kc.kubectl("-n", dataNamespace, "patch", "serviceaccount", "e2e-sa", "-p", `{"metadata":{"labels":{"k":"v3"}}}`)).Error().NotTo(HaveOccurred())
			Eventually(func(g Gomega) {
				cm := kc.auditEvents(since, objectEvents("serviceaccounts", "e2e-sa", "patch"))
				g.Expect(cm).NotTo(BeEmpty())
				for _, ev := range cm {
					g.Expect(ev.Level).To(Equal(auditv1.LevelMetadata), summary(cm))
					g.Expect(ev.RequestObject).To(BeNil())
				}
			}).WithTimeout(30 * time.Second).WithPolling(2 * time.Second).Should(Succeed())
		})

		It("restarts nothing when nothing changes (re-apply, description edit)", func() {
			before := kc.latestRevision()
			start, err := kc.apiserverStart()
			Expect(err).NotTo(HaveOccurred())
			out, err := run([]string{"KUBECONFIG=" + kc.kubeconfig()}, "", kc.kubectlBin, "apply", "--server-side", "-k", "config/modules/baseline")
			Expect(err).NotTo(HaveOccurred(), out)
			edited := strings.Replace(testModule("e2e-serviceaccounts", 1, "Metadata", dataNamespace, "serviceaccounts"),
				"description: kaudit e2e", "description: edited kaudit e2e", 1)
			Expect(kc.apply(edited)).Error().NotTo(HaveOccurred())
			Consistently(func(g Gomega) {
				g.Expect(kc.latestRevision()).To(Equal(before))
				now, err := kc.apiserverStart()
				if err == nil {
					g.Expect(now.Started).To(BeTemporally("==", start.Started))
					g.Expect(now.UID).To(Equal(start.UID))
				}
			}).WithTimeout(30 * time.Second).WithPolling(2 * time.Second).Should(Succeed())
		})

		It("restarts kube-apiserver once for 20 modules applied at once", func() {
			before := kc.latestRevision()
			var b strings.Builder
			for i := 0; i < 20; i++ {
				b.WriteString(testModule(fmt.Sprintf("e2e-bulk-%02d", i), 600+i, "Request", fmt.Sprintf("kaudit-e2e-bulk-%02d", i), "serviceaccounts"))
				b.WriteString("---\n")
			}
			w := kc.watchRestarts()
			start := time.Now()
			Expect(kc.apply(b.String())).Error().NotTo(HaveOccurred())
			inEffectAt := kc.waitPolicyInEffect(before + 1)
			record("kaudit 20-module burst to policy in effect", inEffectAt.Sub(start))
			applied = kc.waitRolledOut(before + 1)
			Consistently(func() int64 { return kc.latestRevision() }).WithTimeout(15 * time.Second).WithPolling(3 * time.Second).Should(Equal(applied.Revision))
			seen := w.stop()
			Expect(applied.Revision).To(Equal(before+1), "the burst makes one revision")
			Expect(distinctStarts(seen)).To(Equal(2), "one restart: the instance before and one after, saw %+v", seen)
			Expect(applied.Policy).To(ContainSubstring("kaudit-e2e-bulk-19"))
		})
	})

	Context("when a module is invalid", func() {
		It("never reaches the node; the apiserver keeps the last good policy and the module says why", func() {
			before := kc.latestRevision()
			start, err := kc.apiserverStart()
			Expect(err).NotTo(HaveOccurred())
			policyBefore, err := kc.nodeFile(policyOnNode)
			Expect(err).NotTo(HaveOccurred())
			// The apiserver's loader rejects a rule that names both resources and
			// non-resource URLs. kaudit may refuse it at `kubectl apply` (CEL) or
			// accept the object and mark it Accepted=False; either way it must not
			// reach the node.
			bad := `apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicyModule
metadata:
  name: e2e-invalid
spec:
  order: 2
  rules:
  - level: RequestResponse
    nonResourceURLs: ["/healthz"]
    resources: [{group: "", resources: [configmaps]}]
`
			out, applyErr := kc.apply(bad)
			if applyErr != nil {
				Expect(out).To(ContainSubstring("nonResourceURLs"), "the rejection names the field")
				fmt.Fprintf(GinkgoWriter, "rejected at apply: %s\n", out)
			} else {
				Eventually(func(g Gomega) {
					m, err := kc.module("e2e-invalid")
					g.Expect(err).NotTo(HaveOccurred())
					c := meta.FindStatusCondition(m.Status.Conditions, "Accepted")
					g.Expect(c).NotTo(BeNil())
					g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
					g.Expect(c.Message).To(ContainSubstring("nonResourceURLs"))
				}).WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Succeed())
			}
			Consistently(func(g Gomega) {
				g.Expect(kc.latestRevision()).To(Equal(before))
				g.Expect(kc.nodeFile(policyOnNode)).To(Equal(policyBefore))
				now, err := kc.apiserverStart()
				if err == nil {
					g.Expect(now.Started).To(BeTemporally("==", start.Started))
				}
			}).WithTimeout(20 * time.Second).WithPolling(2 * time.Second).Should(Succeed())
			Expect(kc.readyz()).To(Succeed())
			_, _ = kc.kubectl("delete", "auditpolicymodule", "e2e-invalid", "--ignore-not-found")
		})
	})

	Context("with a team module and the guardrails", func() {
		deploymentWrites := func(namespace string) func(*auditv1.Event) bool {
			return func(ev *auditv1.Event) bool {
				r := ev.ObjectRef
				// kubectl's own writes only: the deployment controller updates the object too.
				return r != nil && r.APIGroup == "apps" && r.Resource == "deployments" && r.Namespace == namespace &&
					r.Name == "web" && r.Subresource == "" && (ev.Verb == "create" || ev.Verb == "patch") &&
					ev.Stage == auditv1.StageResponseComplete && !strings.HasPrefix(ev.User.Username, "system:")
			}
		}

		It("logs a team's Deployment writes with bodies in its own namespace only", func() {
			for _, ns := range []string{"team-a", "team-b"} {
				Expect(kc.kubectl("create", "namespace", ns)).Error().NotTo(HaveOccurred())
			}
			before := kc.latestRevision()
			Expect(kc.apply(`apiVersion: audit.kaudit.io/v1alpha1
kind: NamespacedAuditPolicyModule
metadata:
  name: deploy-bodies
  namespace: team-a
spec:
  order: 10
  description: kaudit e2e - team-a keeps the bodies of its Deployment writes
  rules:
  - level: RequestResponse
    verbs: [create, update, patch, delete]
    resources: [{group: apps, resources: [deployments]}]
`)).Error().NotTo(HaveOccurred())
			kc.waitPolicyInEffect(before + 1)
			applied = kc.waitRolledOut(before + 1)
			Expect(applied.Policy).To(ContainSubstring("# namespaced module team-a/deploy-bodies, rule 0"))
			Eventually(func() (string, error) {
				return kc.kubectl("-n", "team-a", "get", "napm", "deploy-bodies", "-o", `jsonpath={.status.conditions[?(@.type=="Accepted")].status}`)
			}).WithTimeout(time.Minute).Should(Equal("True"))

			since := time.Now()
			for _, ns := range []string{"team-a", "team-b"} {
				Expect(kc.kubectl("-n", ns, "create", "deployment", "web", "--image=kaudit.local/e2e-never-pulled:v1")).Error().NotTo(HaveOccurred())
				Expect(kc.kubectl("-n", ns, "patch", "deployment", "web", "-p", `{"metadata":{"labels":{"e2e":"v2"}}}`)).Error().NotTo(HaveOccurred())
			}
			Eventually(func(g Gomega) {
				teamA := kc.auditEvents(since, deploymentWrites("team-a"))
				g.Expect(teamA).To(HaveLen(2), summary(teamA))
				for _, ev := range teamA {
					g.Expect(ev.Level).To(Equal(auditv1.LevelRequestResponse), summary(teamA))
					g.Expect(ev.ResponseObject).NotTo(BeNil(), "team-a's module keeps response bodies")
				}
				teamB := kc.auditEvents(since, deploymentWrites("team-b"))
				g.Expect(teamB).To(HaveLen(2), summary(teamB))
				for _, ev := range teamB {
					g.Expect(ev.Level).To(Equal(auditv1.LevelRequest), "team-b follows the baseline's workloads module: "+summary(teamB))
					g.Expect(ev.ResponseObject).To(BeNil())
				}
			}).WithTimeout(30 * time.Second).WithPolling(2 * time.Second).Should(Succeed())
		})

		It("rejects a module that would log Secret bodies, and the node's policy and log do not change", func() {
			before := kc.latestRevision()
			start, err := kc.apiserverStart()
			Expect(err).NotTo(HaveOccurred())
			policyBefore, err := kc.nodeFile(policyOnNode)
			Expect(err).NotTo(HaveOccurred())
			Expect(kc.apply(`apiVersion: audit.kaudit.io/v1alpha1
kind: NamespacedAuditPolicyModule
metadata:
  name: secret-bodies
  namespace: team-a
spec:
  order: 5
  rules:
  - level: RequestResponse
    resources: [{group: "", resources: [secrets]}]
`)).Error().NotTo(HaveOccurred())
			Eventually(func(g Gomega) {
				out, err := kc.kubectl("-n", "team-a", "get", "napm", "secret-bodies", "-o",
					`jsonpath={.status.conditions[?(@.type=="Accepted")].status} {.status.conditions[?(@.type=="Accepted")].reason} {.status.conditions[?(@.type=="Accepted")].message}`)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(out).To(HavePrefix("False GuardrailViolation "))
				g.Expect(out).To(ContainSubstring("no-credential-bodies"))
			}).WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Succeed())
			Consistently(func(g Gomega) {
				g.Expect(kc.latestRevision()).To(Equal(before))
				g.Expect(kc.nodeFile(policyOnNode)).To(Equal(policyBefore))
				now, err := kc.apiserverStart()
				if err == nil {
					g.Expect(now.Started).To(BeTemporally("==", start.Started))
				}
			}).WithTimeout(20 * time.Second).WithPolling(2 * time.Second).Should(Succeed())

			since := time.Now()
			Expect(kc.kubectl("-n", "team-a", "create", "secret", "generic", "e2e-team-secret", "--from-literal=password=hunter2")).Error().NotTo(HaveOccurred())
			Expect(kc.kubectl("-n", "team-a", "get", "secret", "e2e-team-secret", "-o", "yaml")).Error().NotTo(HaveOccurred())
			Eventually(func(g Gomega) {
				reads := kc.auditEvents(since, func(ev *auditv1.Event) bool {
					r := ev.ObjectRef
					return r != nil && r.Resource == "secrets" && r.Namespace == "team-a" && r.Name == "e2e-team-secret"
				})
				g.Expect(reads).NotTo(BeEmpty())
				for _, ev := range reads {
					g.Expect(ev.Level).To(Equal(auditv1.LevelMetadata), summary(reads))
					g.Expect(ev.RequestObject).To(BeNil())
					g.Expect(ev.ResponseObject).To(BeNil(), "a Secret in team-a must still carry no body")
				}
			}).WithTimeout(30 * time.Second).WithPolling(2 * time.Second).Should(Succeed())
			Expect(kc.kubectl("-n", "team-a", "delete", "napm", "secret-bodies")).Error().NotTo(HaveOccurred())
		})
	})

	Context("when the agent is killed in the middle of a rollout", func() {
		It("converges after it restarts, with no partial file", func() {
			before := kc.latestRevision()
			policyBefore, err := kc.nodeFile(policyOnNode)
			Expect(err).NotTo(HaveOccurred())
			Expect(kc.apply(testModule("e2e-serviceaccounts", 1, "Request", dataNamespace, "serviceaccounts"))).Error().NotTo(HaveOccurred())
			By("killing the agent as soon as it changed the node's policy file")
			Eventually(func() (string, error) { return kc.nodeFile(policyOnNode) }).
				WithTimeout(2 * time.Minute).WithPolling(100 * time.Millisecond).ShouldNot(Equal(policyBefore))
			_, err = kc.nodeExec("pkill", "-KILL", "-f", "kaudit agent")
			Expect(err).NotTo(HaveOccurred(), "no agent process to kill")
			kc.waitPolicyInEffect(before + 1)
			applied = kc.waitRolledOut(before + 1)
			Expect(applied.Policy).To(ContainSubstring("level: Request\n"))
			By("leaving no temporary or backup file where kubelet or the apiserver read")
			for _, dir := range []string{"/etc/kubernetes/manifests", "/etc/kubernetes/audit"} {
				out, err := kc.nodeExec("ls", "-A", dir)
				Expect(err).NotTo(HaveOccurred())
				for _, f := range strings.Fields(out) {
					Expect(f).To(Or(HaveSuffix(".yaml"), HaveSuffix(".log")), "unexpected file %s/%s", dir, f)
					Expect(f).NotTo(HavePrefix("."), "leftover temporary file %s/%s", dir, f)
				}
			}
			out, err := kc.nodeExec("ls", "-A", "/etc/kubernetes/manifests")
			Expect(err).NotTo(HaveOccurred())
			Expect(strings.Fields(out)).To(ConsistOf("etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"))
		})
	})

	Context("when a revision makes kube-apiserver fail to start", func() {
		It("rolls back to the previous policy, healthy, and the singleton is Degraded with the reason", func() {
			before := kc.latestRevision()
			policyBefore, err := kc.nodeFile(policyOnNode)
			Expect(err).NotTo(HaveOccurred())
			// Fault injection: as soon as the agent has written the new revision
			// and before kubelet has restarted kube-apiserver (the old instance's
			// graceful shutdown takes tens of seconds), replace the file with one
			// the apiserver refuses to load. kube-apiserver then crash-loops on
			// this revision exactly as on a bad policy, with no test hook in kaudit.
			var injected atomic.Bool
			done := make(chan struct{})
			go func() {
				defer GinkgoRecover()
				defer close(done)
				deadline := time.Now().Add(2 * time.Minute)
				for time.Now().Before(deadline) {
					if cur, err := kc.nodeFile(policyOnNode); err == nil && cur != policyBefore {
						if err := kc.writeNodeFile(policyOnNode, "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Bogus\n"); err == nil {
							injected.Store(true)
						}
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			Expect(kc.apply(testModule("e2e-serviceaccounts", 1, "RequestResponse", dataNamespace, "serviceaccounts"))).Error().NotTo(HaveOccurred())
			<-done
			Expect(injected.Load()).To(BeTrue(), "the agent never wrote the new revision")
			By("waiting for the agent's health timeout and rollback")
			Eventually(func(g Gomega) {
				ap, err := kc.singleton()
				g.Expect(err).NotTo(HaveOccurred())
				c := condition(ap, "Degraded")
				g.Expect(c).NotTo(BeNil())
				g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
				g.Expect(c.Message).NotTo(BeEmpty())
				n := ap.Status.Node(kc.node())
				g.Expect(n).NotTo(BeNil())
				g.Expect(string(n.Phase)).To(BeElementOf("RolledBack", "Failed"))
				g.Expect(latest(ap)).To(BeNumerically(">", before))
				g.Expect(kc.nodeFile(policyOnNode)).To(Equal(policyBefore), "the node is back on the previous policy")
				g.Expect(kc.readyz()).To(Succeed())
			}).WithTimeout(8*time.Minute).WithPolling(3*time.Second).Should(Succeed(), func() string {
				out, _ := kc.kubectl("get", "auditpolicy", "cluster", "-o", "yaml")
				return out
			})
			ap, _ := kc.singleton()
			fmt.Fprintf(GinkgoWriter, "Degraded: %+v\n", condition(ap, "Degraded"))
		})
	})

	// After the rollouts above: the node's log holds several revisions (agent_metrics_test.go).
	Context("with the agent's metrics", agentMetricsSpecs)

	Context("when the node's policy file is edited by hand", driftSpecs)
})

var _ = Describe("kaudit on a fresh kind cluster without audit flags", Ordered, func() {
	var bc *cluster
	BeforeAll(func() {
		bc = newCluster(bareCluster, "bare", reuse)
		DeferCleanup(func() {
			if CurrentSpecReport().Failed() || failed {
				bc.saveArtifacts("a spec failed")
			}
			if !keep {
				bc.delete()
			}
		})
		bc.install()
	})

	It("adds the audit flags and mounts when the singleton asks, and the apiserver comes back with them", func() {
		manifest, err := bc.nodeFile(manifestOnNode)
		Expect(err).NotTo(HaveOccurred())
		Expect(manifest).NotTo(ContainSubstring("--audit-policy-file"))
		start := time.Now()
		Expect(bc.apply(`apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicy
metadata:
  name: cluster
spec:
  manageAPIServerFlags: true
  rollout:
    minRestartInterval: 0s
  auditLog:
    path: /var/log/kubernetes/audit/audit.log
`)).Error().NotTo(HaveOccurred())
		Expect(bc.apply(testModule("e2e-serviceaccounts", 1, "RequestResponse", dataNamespace, "serviceaccounts"))).Error().NotTo(HaveOccurred())
		inEffectAt := bc.waitPolicyInEffect(1)
		record("kaudit first install: flags added, policy in effect", inEffectAt.Sub(start))
		bc.waitRolledOut(1)
		manifest, err = bc.nodeFile(manifestOnNode)
		Expect(err).NotTo(HaveOccurred())
		Expect(manifest).To(ContainSubstring("--audit-policy-file=" + policyOnNode))
		Expect(manifest).To(ContainSubstring("--audit-log-path=/var/log/kubernetes/audit/audit.log"))
		p, err := bc.mirrorPod()
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Join(p.Spec.Containers[0].Command, " ")).To(ContainSubstring("--audit-policy-file=" + policyOnNode))

		since := time.Now()
		Expect(bc.kubectl("create", "namespace", dataNamespace)).Error().NotTo(HaveOccurred())
		Expect(bc.kubectl("-n", dataNamespace, "create", "serviceaccount", "e2e-sa")).Error().NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			cm := bc.auditEvents(since, objectEvents("serviceaccounts", "e2e-sa", "create"))
			g.Expect(cm).NotTo(BeEmpty())
			g.Expect(cm[0].Level).To(Equal(auditv1.LevelRequestResponse))
		}).WithTimeout(30 * time.Second).WithPolling(2 * time.Second).Should(Succeed())
	})
})
