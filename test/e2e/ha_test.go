//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

const (
	// haRolloutTimeout bounds a rollout over three nodes: three restarts of 40-60 s each, the
	// settle time between them, and a rollback's health timeout where a spec makes one.
	haRolloutTimeout = 10 * time.Minute
	// haHealthTimeout is the suite's rollout.healthTimeout: a restart takes 40-60 s here, and
	// the failure spec waits for it once.
	haHealthTimeout = "90s"
	// shutdownDelay is the recommended setup's --shutdown-delay-duration: longer than kind's
	// load balancer needs to eject an apiserver whose /readyz fails (one check, every 2 s).
	shutdownDelay = "10s"
	// unwritableLogDir is where the failure spec points --audit-log-path; the suite makes it a
	// file on the nodes that must fail, so kubelet cannot mount it there.
	unwritableLogDir = "/var/log/kubernetes/kaudit-e2e-unwritable"
)

// haClusterName is the suite's kind cluster.
var haClusterName = envOr("KAUDIT_E2E_HA_CLUSTER", "kaudit-e2e-ha")

// note records a line for the final report and the artifacts directory.
func note(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	measureMu.Lock()
	measures = append(measures, line)
	measureMu.Unlock()
	AddReportEntry("measurement", line)
	fmt.Fprintln(GinkgoWriter, "MEASURE", line)
}

var _ = Describe("kaudit on three control planes", Label("ha"), Ordered, ContinueOnFailure, func() {
	var (
		hc      *haCluster
		readyz  *readyzPoller
		bare    time.Duration
		started time.Time
	)

	BeforeAll(func() {
		started = time.Now()
		hc = newHACluster(haClusterName)
		readyz = hc.startReadyzPoller()
		DeferCleanup(func() {
			readyz.stop()
			record("three-control-plane suite, wall time", time.Since(started))
			if failed || CurrentSpecReport().Failed() {
				hc.saveArtifacts("a spec failed")
			}
			if !keep {
				hc.delete()
			}
		})
		hc.createLoadObjects()
		for _, args := range [][]string{{"create", "namespace", dataNamespace}, {"-n", dataNamespace, "create", "serviceaccount", "e2e-sa"}} {
			Expect(hc.kubectl(args...)).Error().NotTo(HaveOccurred())
		}

		By("restarting one apiserver by hand while clients go through kind's load balancer")
		node := hc.nodes[len(hc.nodes)-1]
		av := hc.startAvailability()
		start := time.Now()
		hc.bumpManifestAnnotationOn(node, "kaudit.local/e2e-bump", fmt.Sprint(start.UnixNano()))
		var ready time.Time
		Eventually(func() time.Time { ready = readyz.readyAfter(node, start); return ready }).
			WithTimeout(4 * time.Minute).WithPolling(time.Second).ShouldNot(BeZero())
		bare = ready.Sub(start)
		// The load balancer adds it back at its next check.
		Eventually(func() time.Duration { return time.Since(ready) }).WithTimeout(10 * time.Second).Should(BeNumerically(">", 5*time.Second))
		keptAlive, newConn := av.stop()
		record("bare apiserver restart-to-ready, one node of three (manifest bump)", bare)
		note("availability, bare restart of one node, kind's load balancer: %s | %s", keptAlive, newConn)

		By("installing kaudit")
		hc.installImage()
		// The specs restart every node a few minutes apart, and the failed node twice in a row:
		// no minRestartInterval (default 5m).
		hc.applyRetrying(fmt.Sprintf("apiVersion: audit.kaudit.io/v1alpha1\nkind: AuditPolicy\nmetadata:\n  name: cluster\nspec:\n  rollout:\n    healthTimeout: %s\n    minRestartInterval: 0s\n", haHealthTimeout))
	})

	// rolledOutAll waits until revision atLeast or later is desired and Available, every node
	// applied it and runs its policy, and returns the revision.
	rolledOutAll := func(w *rolloutWatch, atLeast int64) int64 {
		var rev int64
		Eventually(func(g Gomega) {
			ap, err := hc.singleton()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(ap.Status.DesiredRevision).NotTo(BeNil())
			rev = *ap.Status.DesiredRevision
			g.Expect(rev).To(BeNumerically(">=", atLeast))
			c := condition(ap, "Available")
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
			g.Expect(ap.Status.UpdatedNodes).To(Equal("3/3"))
			r, err := hc.revision(rev)
			g.Expect(err).NotTo(HaveOccurred())
			for _, n := range hc.nodes {
				e := ap.Status.Node(n)
				g.Expect(e).NotTo(BeNil(), n)
				g.Expect(e.Phase).To(Equal(v1alpha1.NodeApplied), "%s: %s", n, e.Message)
				g.Expect(e.AppliedRevision).To(HaveValue(Equal(rev)), n)
				g.Expect(hc.policyOn(n)).To(Equal(string(r.Policy)), "%s's policy file", n)
			}
		}).WithTimeout(haRolloutTimeout).WithPolling(2*time.Second).Should(Succeed(), func() string {
			out, _ := hc.kubectl("get", "auditpolicy", "cluster", "-o", "yaml")
			return out + "\n" + w.timeline()
		})
		return rev
	}

	// oneAtATime checks that no two apiservers were down at the same time since start.
	oneAtATime := func(start time.Time) {
		down := readyz.downtimes(start, time.Now())
		for _, d := range down {
			fmt.Fprintln(GinkgoWriter, d)
		}
		Expect(overlapping(down)).To(BeEmpty(), "two apiservers were not ready at the same time")
	}

	// logsAt checks, through each node's own apiserver, that a change of ServiceAccount name in
	// namespace is logged in that node's audit log at level.
	logsAt := func(namespace, name string, level auditv1.Level) {
		for _, n := range hc.nodes {
			since := time.Now()
			Eventually(func() error {
				_, err := hc.kubectlOn(n, "-n", namespace, "patch", "serviceaccount", name, "-p", fmt.Sprintf(`{"metadata":{"labels":{"k":"%s"}}}`, n))
				return err
			}).WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Succeed())
			Eventually(func(g Gomega) {
				evs := hc.auditEventsOn(n, since, func(ev *auditv1.Event) bool {
					r := ev.ObjectRef
					return r != nil && r.Resource == "serviceaccounts" && r.Namespace == namespace && r.Name == name && ev.Verb == "patch"
				})
				g.Expect(evs).NotTo(BeEmpty())
				for _, ev := range evs {
					g.Expect(ev.Level).To(Equal(level), "%s:\n%s", n, summary(evs))
				}
			}).WithTimeout(30*time.Second).WithPolling(2*time.Second).Should(Succeed(), "%s's audit log", n)
		}
	}

	// measure records, for a rollout of rev that began at start, each node's rollout, how
	// long after its /readyz its entry said Applied, and how long after the last node the
	// singleton said Available. It checks those lags once everything is recorded.
	measure := func(w *rolloutWatch, rev int64, start time.Time, what string) {
		var lastApplied, lastReady time.Time
		var prev string
		lags := map[string]time.Duration{}
		for _, n := range w.order(hc.nodes, rev) {
			out, applied := w.rollingOut(n, rev), w.applied(n, rev)
			Expect(applied).NotTo(BeZero(), "the status watch saw no Applied of %s for revision %d", n, rev)
			ready := readyz.readyAfter(n, start)
			if prev != "" {
				record("%s: settle before %s (from the previous node's Applied)", out.Sub(w.applied(prev, rev)), what, n)
			}
			record("%s: %s RollingOut to Applied (bare restart %.1fs)", applied.Sub(out), what, n, bare.Seconds())
			if !ready.IsZero() {
				record("%s: %s /readyz to Applied", applied.Sub(ready), what, n)
				lags[n] = applied.Sub(ready)
			}
			prev, lastApplied, lastReady = n, applied, ready
		}
		available := w.availableAt(rev)
		Expect(available).NotTo(BeZero(), "the status watch saw no Available for revision %d", rev)
		record("%s: module apply to Available", available.Sub(start), what)
		record("%s: last node's /readyz to Available", available.Sub(lastReady), what)
		record("%s: last node's Applied to Available", available.Sub(lastApplied), what)
		// kubelet recreates the mirror pod 0-10 s after the apiserver is ready (its pod worker's
		// back-off), and the agent needs that to say Applied.
		for n, lag := range lags {
			Expect(lag).To(BeNumerically("<", 20*time.Second), "%s reported Applied long after its /readyz", n)
		}
		Expect(available.Sub(lastApplied)).To(BeNumerically("<", 5*time.Second), "Available came late")
	}

	// restartedOnce checks, from the /readyz poller, that each node's apiserver restarted once
	// since since. Not from the mirror pods: kubelet reports a new container there 10-15 s after
	// it is ready, so a watch that begins right after a node's restart misses that restart.
	restartedOnce := func(since time.Time, nodes ...string) {
		for _, n := range nodes {
			Eventually(func() int { return readyz.restarts(n, since) }).WithTimeout(30*time.Second).WithPolling(time.Second).Should(Equal(1), "%s restarts", n)
		}
	}

	It("rolls a module change out to every node, one at a time, while clients go through kind's load balancer", func() {
		before := hc.latestRevision()
		// The flags first, with no revision yet: the module's revision then restarts each node
		// once. The apiservers that stop during this rollout run as kind made them.
		hc.patchSingleton(`{"manageAPIServerFlags":true,"shutdownDelayDuration":"` + shutdownDelay + `"}`)
		w := hc.watchRollout()
		defer w.stop()
		av := hc.startAvailability()
		start := time.Now()
		hc.applyRetrying(testModule("e2e-serviceaccounts", 1, "RequestResponse", dataNamespace, "serviceaccounts"))
		rev := rolledOutAll(w, before+1)
		keptAlive, newConn := av.stop()
		note("availability, kaudit rollout over three nodes, kind's load balancer (/healthz, no shutdown delay): %s | %s", keptAlive, newConn)
		fmt.Fprintln(GinkgoWriter, w.timeline())

		Expect(rev).To(Equal(before + 1))
		measure(w, rev, start, "module change")
		restartedOnce(start, hc.nodes...)
		oneAtATime(start)
		By("each node's audit log follows the new policy")
		logsAt(dataNamespace, "e2e-sa", auditv1.LevelRequestResponse)
	})

	It("restarts each node once for 20 modules applied at once, with no failed request in the recommended setup", func() {
		By("the load balancer checks /readyz, and the apiservers (from the last rollout) have --shutdown-delay-duration")
		hc.setLoadBalancerHealthPath("/readyz")
		hc.patchSingleton(`{"rollout":{"minReadyTime":"5s"}}`)
		for _, args := range [][]string{{"create", "namespace", "kaudit-e2e-bulk-00"}, {"-n", "kaudit-e2e-bulk-00", "create", "serviceaccount", "e2e-sa"}} {
			Expect(hc.kubectl(args...)).Error().NotTo(HaveOccurred())
		}
		before := hc.latestRevision()
		var b strings.Builder
		for i := 0; i < 20; i++ {
			b.WriteString(testModule(fmt.Sprintf("e2e-bulk-%02d", i), 600+i, "Request", fmt.Sprintf("kaudit-e2e-bulk-%02d", i), "serviceaccounts"))
			b.WriteString("---\n")
		}
		w := hc.watchRollout()
		defer w.stop()
		av := hc.startAvailability()
		start := time.Now()
		hc.applyRetrying(b.String())
		rev := rolledOutAll(w, before+1)
		keptAlive, newConn := av.stop()
		note("availability, kaudit rollout over three nodes, recommended setup (load balancer on /readyz, --shutdown-delay-duration=%s): %s | %s", shutdownDelay, keptAlive, newConn)
		fmt.Fprintln(GinkgoWriter, w.timeline())

		Expect(rev).To(Equal(before+1), "the burst makes one revision")
		measure(w, rev, start, "20-module burst")
		Consistently(hc.latestRevision).WithTimeout(10 * time.Second).WithPolling(2 * time.Second).Should(Equal(rev))
		restartedOnce(start, hc.nodes...)
		oneAtATime(start)
		Expect(keptAlive.availability()).To(BeNumerically(">=", 0.999), keptAlive.String())
		Expect(newConn.availability()).To(BeNumerically(">=", 0.999), newConn.String())
		logsAt("kaudit-e2e-bulk-00", "e2e-sa", auditv1.LevelRequest)
	})

	It("rolls the second node back when its apiserver cannot start, never touches the third, and resumes on every node once fixed", func() {
		before := hc.latestRevision()
		manifests := map[string]string{}
		for _, n := range hc.nodes {
			m, err := hc.execOn(n, "cat", manifestOnNode)
			Expect(err).NotTo(HaveOccurred())
			manifests[n] = m
		}
		w := hc.watchRollout()
		defer w.stop()
		start := time.Now()
		hc.patchSingleton(`{"auditLog":{"path":"` + unwritableLogDir + `/audit.log"}}`)

		By("making the log directory a file on every node but the first to roll out")
		var first string
		Eventually(func() []string { return w.order(hc.nodes, before) }).WithTimeout(time.Minute).WithPolling(200 * time.Millisecond).ShouldNot(BeEmpty())
		first = w.order(hc.nodes, before)[0]
		for _, n := range hc.nodes {
			if n != first {
				Expect(hc.execOn(n, "sh", "-c", "rm -rf "+unwritableLogDir+" && : > "+unwritableLogDir)).Error().NotTo(HaveOccurred())
			}
		}

		var second, third string
		Eventually(func(g Gomega) {
			ap, err := hc.singleton()
			g.Expect(err).NotTo(HaveOccurred())
			second, third = "", ""
			for _, n := range hc.nodes {
				e := ap.Status.Node(n)
				g.Expect(e).NotTo(BeNil())
				switch {
				case n == first:
					g.Expect(e.Phase).To(Equal(v1alpha1.NodeApplied), "%s: %s", n, e.Message)
				case e.Phase == v1alpha1.NodeRolledBack:
					second = n
				default:
					third = n
				}
			}
			g.Expect(second).NotTo(BeEmpty(), "no node rolled back yet")
			g.Expect(third).NotTo(BeEmpty())
			g.Expect(ap.Status.Node(third).Phase).To(Equal(v1alpha1.NodePending))
			g.Expect(ap.Status.Node(third).Message).To(ContainSubstring("halted because node " + second))
			c := condition(ap, "Degraded")
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(c.Message).To(ContainSubstring(second))
			g.Expect(c.Message).To(ContainSubstring("rolled back"))
		}).WithTimeout(haRolloutTimeout).WithPolling(2*time.Second).Should(Succeed(), func() string {
			out, _ := hc.kubectl("get", "auditpolicy", "cluster", "-o", "yaml")
			return out + "\n" + w.timeline()
		})
		ap, _ := hc.singleton()
		fmt.Fprintf(GinkgoWriter, "Degraded: %s\n", condition(ap, "Degraded").Message)
		Expect(ap.Status.Node(second).Message).To(ContainSubstring("kube-apiserver not healthy"))

		By("the second node is back on its previous manifest, ready; the third was never touched")
		Eventually(func() time.Time { return readyz.readyAfter(second, start) }).WithTimeout(time.Minute).ShouldNot(BeZero())
		for n, want := range map[string]bool{first: true, second: false, third: false} {
			manifest, err := hc.execOn(n, "cat", manifestOnNode)
			Expect(err).NotTo(HaveOccurred())
			Expect(strings.Contains(manifest, unwritableLogDir)).To(Equal(want), "%s's manifest", n)
			if n == third {
				Expect(manifest).To(Equal(manifests[n]), "the third node's manifest changed")
			}
		}
		_, restarted := readyz.restart(third, start)
		Expect(restarted).To(BeFalse(), "the third node's apiserver restarted")
		restartedOnce(start, first)
		oneAtATime(start)

		By("fixing the log path: every node rolls out, the failed one first")
		fixed := time.Now()
		w2 := hc.watchRollout()
		defer w2.stop()
		hc.patchSingleton(`{"auditLog":{"path":"/var/log/kubernetes/audit/kaudit.log"}}`)
		rev := rolledOutAll(w2, before)
		Expect(rev).To(Equal(before))
		Expect(w2.order(hc.nodes, rev)).To(HaveLen(3))
		Expect(w2.order(hc.nodes, rev)[0]).To(Equal(second), "the failed node goes first")
		restartedOnce(fixed, hc.nodes...)
		for _, n := range hc.nodes {
			Expect(hc.execOn(n, "rm", "-rf", unwritableLogDir)).Error().NotTo(HaveOccurred())
		}
		ap, err := hc.singleton()
		Expect(err).NotTo(HaveOccurred())
		Expect(condition(ap, "Degraded").Status).To(Equal(metav1.ConditionFalse))
		oneAtATime(fixed)
		logsAt(dataNamespace, "e2e-sa", auditv1.LevelRequestResponse)
	})

	// noStrayFiles checks that node has no temporary file of the agent's under /etc/kubernetes,
	// no journal left, and the manifests directory holds what it held before (kubelet runs any
	// file there as a static pod).
	noStrayFiles := func(node, manifestsBefore string) {
		out, err := hc.execOn(node, "find", "/etc/kubernetes", "-name", ".kaudit-tmp-*", "-o", "-name", "journal.json")
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.TrimSpace(out)).To(BeEmpty(), "%s: files left by the rollout", node)
		Expect(hc.execOn(node, "ls", "-A", "/etc/kubernetes/manifests")).To(Equal(manifestsBefore), "%s's manifests directory", node)
	}
	manifestListings := func() map[string]string {
		out := map[string]string{}
		for _, n := range hc.nodes {
			l, err := hc.execOn(n, "ls", "-A", "/etc/kubernetes/manifests")
			Expect(err).NotTo(HaveOccurred())
			out[n] = l
		}
		return out
	}
	// firstRollingOut waits until a node begins rolling rev out and returns it.
	firstRollingOut := func(w *rolloutWatch, rev int64) string {
		Eventually(func() []string { return w.order(hc.nodes, rev) }).WithTimeout(2*time.Minute).WithPolling(200*time.Millisecond).ShouldNot(BeEmpty(), w.timeline)
		return w.order(hc.nodes, rev)[0]
	}
	// waitRestarting waits until node, rolling rev out, is in the middle of its restart: its
	// /readyz has failed for a second since the rollout began. kubelet stops the apiserver
	// tens of milliseconds after the agent reports RollingOut, and the status watch may see
	// that report later: a downtime that began up to 5 s earlier counts (one that ended is an
	// earlier restart).
	waitRestarting := func(w *rolloutWatch, node string, rev int64) {
		began := w.rollingOut(node, rev)
		Expect(began).NotTo(BeZero())
		Eventually(func() bool { return readyz.down(node, began.Add(-5*time.Second), time.Second) }).WithTimeout(2*time.Minute).WithPolling(100*time.Millisecond).Should(BeTrue(), "%s's apiserver never went down", node)
	}

	It("holds the other nodes while the agent holding the Lease is killed in the middle of its node's restart, and converges", func() {
		before := hc.latestRevision()
		manifests := manifestListings()
		w := hc.watchRollout()
		defer w.stop()
		start := time.Now()
		hc.applyRetrying(testModule("e2e-agent-killed", 2, "Request", dataNamespace, "resourcequotas"))
		first := firstRollingOut(w, before+1)

		By("killing the agent on " + first + " while its apiserver restarts")
		waitRestarting(w, first, before+1)
		restartsBefore := hc.agentRestartsOn(first)
		Expect(hc.execOn(first, "sh", "-c", "crictl stop --timeout 0 $(crictl ps -q --name '^agent$')")).Error().NotTo(HaveOccurred())

		rev := rolledOutAll(w, before+1)
		Expect(rev).To(Equal(before + 1))
		Expect(hc.agentRestartsOn(first)).To(BeNumerically(">", restartsBefore), "the agent on %s was not restarted", first)
		fmt.Fprintln(GinkgoWriter, w.timeline())

		By("no other node began before the killed agent's node was Applied, from its journal")
		order := w.order(hc.nodes, rev)
		Expect(order).To(HaveLen(3))
		Expect(order[0]).To(Equal(first))
		for _, n := range order[1:] {
			Expect(w.rollingOut(n, rev)).To(BeTemporally(">", w.applied(first, rev)), "%s began before %s was Applied", n, first)
		}
		restartedOnce(start, hc.nodes...)
		oneAtATime(start)
		for _, n := range hc.nodes {
			noStrayFiles(n, manifests[n])
		}
		logsAt(dataNamespace, "e2e-sa", auditv1.LevelRequestResponse)
	})

	It("converges when a control-plane node's container is restarted in the middle of its rollout", func() {
		before := hc.latestRevision()
		manifests := manifestListings()
		old := map[string]string{}
		for _, n := range hc.nodes {
			old[n] = hc.policyOn(n)
		}
		w := hc.watchRollout()
		defer w.stop()
		start := time.Now()
		hc.applyRetrying(testModule("e2e-node-restarted", 3, "Request", dataNamespace, "limitranges"))
		first := firstRollingOut(w, before+1)
		next, err := hc.revision(before + 1)
		Expect(err).NotTo(HaveOccurred())

		By("restarting the container of " + first + " while its apiserver restarts")
		waitRestarting(w, first, before+1)
		Expect(run(nil, "", "docker", "restart", "--time", "0", first)).Error().NotTo(HaveOccurred())
		out, err := run(nil, "", "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", first)
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.TrimSpace(out)).To(Equal(hc.ip[first]), "docker gave %s another address: its etcd member and the load balancer's backend would be gone, not kaudit's doing", first)

		By("it comes back with exactly the old or the new policy")
		Eventually(func() (string, error) { return hc.execOn(first, "cat", policyOnNode) }).WithTimeout(time.Minute).WithPolling(time.Second).
			Should(Or(Equal(old[first]), Equal(string(next.Policy))))

		rev := rolledOutAll(w, before+1)
		Expect(rev).To(Equal(before + 1))
		fmt.Fprintln(GinkgoWriter, w.timeline())
		oneAtATime(start)
		for _, n := range hc.nodes {
			noStrayFiles(n, manifests[n])
		}
		logsAt(dataNamespace, "e2e-sa", auditv1.LevelRequestResponse)
	})
})
