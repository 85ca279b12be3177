package envtest_test

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/testenv"
)

// The agent binary on a node whose apiserver has written a large audit log: what following it
// costs, next to the same agent idle.
var _ = Describe("The kaudit agent binary following the audit log", func() {
	It("counts every event of a large log and reports its memory and CPU", func() {
		bin := os.Getenv("KAUDIT_BINARY")
		if bin == "" {
			Skip("KAUDIT_BINARY is not set")
		}
		resetCluster()
		createSingleton("3s", "0s", true)
		const nodeName = "cp-log"
		cp := newFakeControlPlane(nodeName, 300*time.Millisecond)
		logDir := filepath.Join(cp.root, "var", "log", "kubernetes", "audit")
		Expect(os.MkdirAll(logDir, 0o755)).To(Succeed())
		address := freeAddress()
		cmd := exec.Command(bin, "agent", "--kubeconfig", adminKubeconfig(cp.root), "--root", cp.root,
			"--readyz-url", cp.readyzURL, "--readyz-ca-file", cp.caFile, "--readyz-server-name", "example.com",
			"--poll-interval", "100ms", "--retry", "200ms", "--resync", "1s", "--metrics-bind-address", address)
		cmd.Env = append(os.Environ(), "NODE_NAME="+nodeName)
		var logs syncBuffer
		cmd.Stderr = &logs
		Expect(cmd.Start()).To(Succeed())
		DeferCleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		})
		token := metricsToken("log-scraper", true)
		metric := func(g Gomega, name string) float64 {
			body := scrape(g, address, token)
			var sum float64
			for _, m := range regexp.MustCompile(`(?m)^`+name+`(?:\{[^}]*\})? (\S+)$`).FindAllStringSubmatch(body, -1) {
				v, err := strconv.ParseFloat(m[1], 64)
				g.Expect(err).NotTo(HaveOccurred())
				sum += v
			}
			return sum
		}

		// The manifest has no --audit-log-path until revision 1 sets the managed flags.
		Eventually(func(g Gomega) { g.Expect(metric(g, "kaudit_audit_log_followed")).To(BeZero()) }).WithTimeout(30 * time.Second).Should(Succeed())
		// One binary with the manager, which registers its metrics too: the agent serves its own.
		expectOnlyAgentMetrics(scrape(Default, address, token))
		time.Sleep(2 * time.Second)
		idle := rssKiB(cmd.Process.Pid)
		publish(1)
		Eventually(nodePhase(nodeName, v1alpha1.NodeApplied, 1)).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
		Eventually(func(g Gomega) { g.Expect(metric(g, "kaudit_audit_log_followed")).To(Equal(1.0)) }).WithTimeout(30 * time.Second).Should(Succeed())
		time.Sleep(2 * time.Second)
		followingIdle := rssKiB(cmd.Process.Pid)

		// The recorded logs of test/presets, four times, as written now by revision 1's apiserver.
		events := writeRecordedLog(filepath.Join(logDir, "audit.log"), 4)
		cpuBefore := cpuSeconds(cmd.Process.Pid)
		var peak atomic.Int64
		sampler, stopSampler := context.WithCancel(ctx)
		go func() {
			for sampler.Err() == nil {
				peak.Store(max(peak.Load(), rssKiB(cmd.Process.Pid)))
				time.Sleep(10 * time.Millisecond)
			}
		}()
		start := time.Now()
		Eventually(func(g Gomega) {
			g.Expect(metric(g, "kaudit_audit_events_total")).To(Equal(float64(events)))
		}).WithTimeout(5 * time.Minute).WithPolling(time.Second).Should(Succeed())
		elapsed := time.Since(start)
		stopSampler()
		cpu := cpuSeconds(cmd.Process.Pid) - cpuBefore
		after := rssKiB(cmd.Process.Pid)

		// Most of the RSS is the binary's pages (RssFile), the Go runtime's memory the rest (RssAnon).
		report := fmt.Sprintf("agent RSS %d KiB idle without a log, %d KiB following an idle log; reading %d events: peak %d KiB, %d KiB after (%d KiB anonymous, %d KiB file; VmHWM %d KiB); "+
			"%.2f s CPU in %s (%.1f us/event, with the scrapes)", idle, followingIdle, events, peak.Load(), after,
			procStatus(cmd.Process.Pid, "RssAnon:"), procStatus(cmd.Process.Pid, "RssFile:"), hwmKiB(cmd.Process.Pid),
			cpu, elapsed.Round(time.Second), cpu/float64(events)*1e6)
		AddReportEntry("agent binary following the audit log", report)
		GinkgoWriter.Println(report)
		Expect(hwmKiB(cmd.Process.Pid)).To(BeNumerically("<", 128*1024), "the DaemonSet's memory limit")
	})
})

// writeRecordedLog writes the recorded logs of test/presets copies times to file, every event
// stamped now, and returns the number of events.
func writeRecordedLog(file string, copies int) int {
	out, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	Expect(err).NotTo(HaveOccurred())
	defer out.Close()
	w := bufio.NewWriterSize(out, 1<<20)
	stamp := regexp.MustCompile(`"(stageTimestamp|requestReceivedTimestamp)":"[^"]*"`)
	now := []byte(time.Now().UTC().Format(time.RFC3339Nano))
	logs, err := filepath.Glob(filepath.Join("..", "..", "..", "test", "presets", "testdata", "auditlogs", "*.jsonl.gz"))
	Expect(err).NotTo(HaveOccurred())
	Expect(logs).NotTo(BeEmpty())
	n := 0
	for range copies {
		for _, l := range logs {
			f, err := os.Open(l)
			Expect(err).NotTo(HaveOccurred())
			z, err := gzip.NewReader(f)
			Expect(err).NotTo(HaveOccurred())
			sc := bufio.NewScanner(z)
			sc.Buffer(make([]byte, 1<<20), 16<<20)
			for sc.Scan() {
				line := stamp.ReplaceAllFunc(sc.Bytes(), func(m []byte) []byte {
					key, _, _ := strings.Cut(string(m), ":")
					return append([]byte(key+`:"`), append(now, '"')...)
				})
				_, _ = w.Write(append(line, '\n'))
				if strings.Contains(string(line), `"kind":"Event"`) {
					n++
				}
			}
			Expect(sc.Err()).NotTo(HaveOccurred())
			Expect(f.Close()).To(Succeed())
		}
	}
	Expect(w.Flush()).To(Succeed())
	return n
}

// cpuSeconds is the CPU time a process used so far, user and system.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	Expect(err).NotTo(HaveOccurred())
	// The fields after the command's name, in parentheses: utime and stime are the 12th and
	// 13th, in clock ticks (100 per second on Linux).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// adminKubeconfig writes a kubeconfig of envtest's admin into dir.
func adminKubeconfig(dir string) string {
	kubeconfig := filepath.Join(dir, "kubeconfig")
	Expect(clientcmd.WriteToFile(clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"envtest": {Server: cfg.Host, CertificateAuthorityData: cfg.CAData}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"admin": {ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}},
		Contexts:       map[string]*clientcmdapi.Context{"envtest": {Cluster: "envtest", AuthInfo: "admin"}},
		CurrentContext: "envtest",
	}, kubeconfig)).To(Succeed())
	return kubeconfig
}

// freeAddress is a free port on 127.0.0.1.
func freeAddress() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().String()
}

// metricsToken is the token of service account name in the agent's namespace, allowed to get
// /metrics (as config/rbac's kaudit-metrics-reader allows) or not.
func metricsToken(name string, allowed bool) string {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, sa))).To(Succeed())
	if allowed {
		reader := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "envtest-metrics-reader"},
			Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}
		Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, reader))).To(Succeed())
		Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "envtest-metrics-reader-" + name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: reader.Name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: namespace, Name: name}}}))).To(Succeed())
	}
	tr := &authenticationv1.TokenRequest{}
	Expect(k8s.SubResource("token").Create(ctx, sa, tr)).To(Succeed())
	return tr.Status.Token
}

// get gets https://address/metrics with token when not "".
func get(address, token string) (code int, body string, err error) {
	return testenv.GetMetrics(ctx, "https://"+address+"/metrics", token)
}

// scrape gets the metrics with an allowed token.
func scrape(g Gomega, address, token string) string {
	code, body, err := get(address, token)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(http.StatusOK), body)
	return body
}
