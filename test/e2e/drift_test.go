//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// driftSpecs run in the main cluster's ordered container, after the rollouts: a hand edit of the
// node's policy file after the agent applied a revision (see docs/design.md, "Drift").
func driftSpecs() {
	It("reports the edit (a DriftDetected event, the agent decides no restart is needed) and restores the file without restarting kube-apiserver", func() {
		// A rule for a namespace of this run makes a new revision however the specs before left
		// the cluster (a rolled-back revision halts drift checks until the next one applies).
		before := kc.latestRevision()
		Expect(kc.apply(testModule("e2e-drift", 950, "Metadata", fmt.Sprintf("kaudit-e2e-drift-%d", time.Now().Unix()), "configmaps"))).Error().NotTo(HaveOccurred())
		kc.waitRolledOut(before + 1)

		start, err := kc.apiserverStart()
		Expect(err).NotTo(HaveOccurred())
		want, err := kc.nodeFile(policyOnNode)
		Expect(err).NotTo(HaveOccurred())
		since := time.Now().Truncate(time.Second)

		By("appending a rule to " + policyOnNode + " on the node, in place")
		_, err = kc.nodeExec("sh", "-c", `printf '%s' "$1" >> "$2"`, "sh", "- level: None\n  users: [kaudit-e2e-drift]\n", policyOnNode)
		Expect(err).NotTo(HaveOccurred())

		Eventually(func(g Gomega) {
			g.Expect(kc.nodeFile(policyOnNode)).To(Equal(want), "the file is back")
			g.Expect(kc.eventMessages(v1alpha1.EventDriftDetected, since)).To(ContainElement(
				ContainSubstring("node " + kc.node() + ": " + policyOnNode + ": rules differ from revision")))
			g.Expect(kc.eventMessages(v1alpha1.EventDriftRepaired, since)).NotTo(BeEmpty())
			ap, err := kc.singleton()
			g.Expect(err).NotTo(HaveOccurred())
			n := ap.Status.Node(kc.node())
			g.Expect(n).NotTo(BeNil())
			g.Expect(n.Phase).To(Equal(v1alpha1.NodeApplied), n.Message)
			g.Expect(condition(ap, v1alpha1.ConditionDegraded)).To(HaveField("Status", metav1.ConditionFalse))
		}).WithTimeout(2*time.Minute).WithPolling(time.Second).Should(Succeed(), func() string {
			out, _ := kc.kubectl("get", "auditpolicy", "cluster", "-o", "yaml")
			return out
		})
		// The Drifted entry lasts milliseconds here (the status itself is checked in
		// internal/agent/envtest); the agent's log says what it decided.
		logs, err := kc.kubectl("-n", kauditNamespace, "logs", "ds/kaudit-agent", "--since-time", since.Format(time.RFC3339))
		Expect(err).NotTo(HaveOccurred())
		Expect(logs).To(And(
			ContainSubstring(`"msg":"the node's files differ from the applied revision"`),
			ContainSubstring(policyOnNode+": rules differ from revision"),
			ContainSubstring(`"restart":false`),
			ContainSubstring(`"msg":"restored the policy file"`)))
		now, err := kc.apiserverStart()
		Expect(err).NotTo(HaveOccurred())
		Expect(now.Started).To(BeTemporally("==", start.Started), "kube-apiserver was restarted")
		Expect(kc.readyz()).To(Succeed())
	})
}

// eventMessages are the messages of the events with reason last seen at or after since.
func (k *cluster) eventMessages(reason string, since time.Time) []string {
	out, err := k.kubectl("get", "events", "-A", "--field-selector", "reason="+reason, "-o", "json")
	Expect(err).NotTo(HaveOccurred(), out)
	var list corev1.EventList
	Expect(json.Unmarshal([]byte(out), &list)).To(Succeed())
	var msgs []string
	for _, e := range list.Items {
		last := e.LastTimestamp.Time
		if last.IsZero() {
			last = e.EventTime.Time
		}
		if !last.Before(since) {
			msgs = append(msgs, e.Message)
		}
	}
	return msgs
}
