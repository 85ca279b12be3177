//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/kaudit/kaudit/internal/testenv"
)

// forwardedPort matches kubectl port-forward's line naming the local port.
var forwardedPort = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) ->`)

// forwardManagerMetrics port-forwards the Service kaudit-manager-metrics to a free local port
// until the spec ends, and returns the metrics URL.
func (k *cluster) forwardManagerMetrics() string {
	GinkgoHelper()
	cmd := exec.Command(k.kubectlBin, "-n", "kaudit-system", "port-forward", "--address=127.0.0.1", "service/kaudit-manager-metrics", ":8443")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+k.kubeconfig())
	cmd.Stderr = GinkgoWriter
	stdout, err := cmd.StdoutPipe()
	Expect(err).NotTo(HaveOccurred())
	Expect(cmd.Start()).To(Succeed())
	DeferCleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	port := make(chan string, 1)
	go func() {
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			if m := forwardedPort.FindStringSubmatch(lines.Text()); m != nil {
				port <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var p string
	Eventually(port).WithTimeout(30 * time.Second).Should(Receive(&p))
	return "https://127.0.0.1:" + p + "/metrics"
}

// serviceAccountToken creates the ServiceAccount name in kaudit-system and returns a token of it.
func (k *cluster) serviceAccountToken(name string) string {
	GinkgoHelper()
	Expect(k.kubectl("-n", "kaudit-system", "create", "serviceaccount", name)).Error().NotTo(HaveOccurred())
	DeferCleanup(func() { _, _ = k.kubectl("-n", "kaudit-system", "delete", "serviceaccount", name) })
	out, err := k.kubectl("-n", "kaudit-system", "create", "token", name)
	Expect(err).NotTo(HaveOccurred())
	return strings.TrimSpace(out)
}

// checkManagerMetrics scrapes the installed manager's metrics through its Service: refused
// without a token and for a ServiceAccount without kaudit-metrics-reader, served to one with
// it, and saying that revision latest is in force on the node.
func (k *cluster) checkManagerMetrics(latest int64) {
	GinkgoHelper()
	url := k.forwardManagerMetrics()
	stranger := k.serviceAccountToken("e2e-metrics-stranger")
	reader := k.serviceAccountToken("e2e-metrics-reader")
	Expect(k.kubectl("create", "clusterrolebinding", "e2e-metrics-reader", "--clusterrole=kaudit-metrics-reader", "--serviceaccount=kaudit-system:e2e-metrics-reader")).Error().NotTo(HaveOccurred())
	DeferCleanup(func() { _, _ = k.kubectl("delete", "clusterrolebinding", "e2e-metrics-reader") })

	Eventually(func(g Gomega) {
		code, body, err := testenv.GetMetrics(context.Background(), url, "")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(code).To(Equal(http.StatusUnauthorized), body)
	}).WithTimeout(30 * time.Second).Should(Succeed())
	code, body, err := testenv.GetMetrics(context.Background(), url, stranger)
	Expect(err).NotTo(HaveOccurred())
	Expect(code).To(Equal(http.StatusForbidden), body)

	Eventually(func(g Gomega) {
		code, body, err := testenv.GetMetrics(context.Background(), url, reader)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(code).To(Equal(http.StatusOK), body)
		lines := strings.Split(body, "\n")
		g.Expect(lines).To(ContainElements(
			fmt.Sprintf("kaudit_revision_latest %d", latest),
			`kaudit_nodes{phase="Applied"} 1`,
			"kaudit_nodes_behind 0",
		))
		g.Expect(lines).To(ContainElement(MatchRegexp(`^kaudit_modules\{kind="AuditPolicyModule",state="accepted"\} [1-9]`)))
		g.Expect(lines).To(ContainElement(MatchRegexp(`^kaudit_revisions_total [1-9]`)))
		g.Expect(lines).To(ContainElement(MatchRegexp(`^kaudit_node_rollout_duration_seconds_count\{result="applied"\} [1-9]`)))
	}).WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Succeed())
}
