//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/kaudit/kaudit/cmd"
	"github.com/kaudit/kaudit/internal/simulate"
)

const (
	// metricsNamespace holds this spec's workload, the only requests its module matches, and
	// the service accounts that scrape.
	metricsNamespace = "kaudit-e2e-metrics"
	metricsModule    = "e2e-metrics"
)

// agentMetricsSpecs run in the main cluster's ordered container, after the rollouts, with kaudit
// installed: the agent's metrics endpoint refuses callers without get on /metrics, and its
// per-module counts of the revision in force equal `kaudit simulate` of the node's audit log.
func agentMetricsSpecs() {
	It("serves per-module counts equal to kaudit simulate of the node's log, to allowed callers only", func() {
		_, _ = kc.kubectl("create", "namespace", metricsNamespace)
		before := kc.latestRevision()
		// ResourceQuotas: no module of the baseline decides them (it keeps ConfigMaps at Metadata
		// at order 100), and the quota controller's writes are the baseline's noise.
		Expect(kc.apply(testModule(metricsModule, 950, "Request", metricsNamespace, "resourcequotas"))).Error().NotTo(HaveOccurred())
		in := kc.waitRolledOut(before + 1)
		fmt.Fprintf(GinkgoWriter, "revision %d in force since %s\n", in.Revision, in.Start.Started)

		allowed, refused := kc.metricsTokens()
		address := kc.agentMetricsAddress()

		By("refusing a caller without a token, and one without get on /metrics")
		for who, tc := range map[string]struct {
			token string
			code  int
		}{"no token": {"", 401}, "a token without get on /metrics": {refused, 403}} {
			code, body, err := kc.scrapeAgent(address, tc.token)
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(tc.code), "%s: %s", who, body)
			Expect(body).NotTo(ContainSubstring("kaudit_audit_events_total"), who)
		}

		By("running a workload that only the spec's module matches")
		for i := range 10 {
			name := fmt.Sprintf("quota-%d", i)
			Expect(kc.kubectl("-n", metricsNamespace, "create", "quota", name, "--hard=pods=100")).Error().NotTo(HaveOccurred())
			Expect(kc.kubectl("-n", metricsNamespace, "get", "resourcequota", name)).Error().NotTo(HaveOccurred())
			Expect(kc.kubectl("-n", metricsNamespace, "label", "resourcequota", name, "e2e=x")).Error().NotTo(HaveOccurred())
			Expect(kc.kubectl("-n", metricsNamespace, "delete", "resourcequota", name)).Error().NotTo(HaveOccurred())
		}

		// The apiserver keeps writing (heartbeats, controllers, these scrapes): the agent's count
		// of every module lies between simulate of the log before the scrape and simulate of the
		// log after it. The spec's module sees nothing after its workload: equal counts.
		policyFile := filepath.Join(GinkgoT().TempDir(), "policy.yaml")
		Expect(os.WriteFile(policyFile, []byte(in.Policy), 0o600)).To(Succeed())
		low := simulatedModules(policyFile, kc.logDir(), in.Start.Started)
		Expect(low).To(HaveKeyWithValue(metricsModule, BeNumerically(">=", 40)), "simulate sees the workload")
		var agent map[string]int64
		Eventually(func(g Gomega) {
			code, body, err := kc.scrapeAgent(address, allowed)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(code).To(Equal(200), body)
			g.Expect(body).To(ContainSubstring("kaudit_audit_log_followed 1"))
			agent = agentModules(body, in.Revision)
			for m, n := range low {
				g.Expect(agent[m]).To(BeNumerically(">=", n), "module %s: the agent has not read the log that simulate read yet", m)
			}
		}).WithTimeout(2 * time.Minute).WithPolling(3 * time.Second).Should(Succeed())
		high := simulatedModules(policyFile, kc.logDir(), in.Start.Started)
		fmt.Fprintf(GinkgoWriter, "per module: simulate before %v, agent %v, simulate after %v\n", low, agent, high)
		for m, n := range agent {
			Expect(n).To(BeNumerically("<=", high[m]), "module %s: the agent counted more than simulate of the log after the scrape", m)
		}
		Expect(agent[metricsModule]).To(Equal(low[metricsModule]))
		Expect(high[metricsModule]).To(Equal(low[metricsModule]))
	})
}

// metricsTokens returns a token of a service account bound to kaudit-metrics-reader (or, when
// the installation has no such ClusterRole, to one with the same rule) and one of a service
// account without any role.
func (k *cluster) metricsTokens() (allowed, refused string) {
	role := "kaudit-metrics-reader"
	if _, err := k.kubectl("get", "clusterrole", role); err != nil {
		role = "kaudit-e2e-metrics-reader"
		Expect(k.apply(`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: ` + role + `
rules:
- nonResourceURLs: [/metrics]
  verbs: [get]
`)).Error().NotTo(HaveOccurred())
	}
	Expect(k.apply(fmt.Sprintf(`apiVersion: v1
kind: ServiceAccount
metadata:
  name: scraper
  namespace: %[1]s
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: stranger
  namespace: %[1]s
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kaudit-e2e-metrics-scraper
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: %[2]s
subjects:
- kind: ServiceAccount
  name: scraper
  namespace: %[1]s
`, metricsNamespace, role))).Error().NotTo(HaveOccurred())
	token := func(sa string) string {
		out, err := k.kubectl("-n", metricsNamespace, "create", "token", sa)
		Expect(err).NotTo(HaveOccurred())
		return strings.TrimSpace(out)
	}
	return token("scraper"), token("stranger")
}

// agentMetricsAddress is the node's endpoint of Service kaudit-agent-metrics, host:port.
func (k *cluster) agentMetricsAddress() string {
	var address string
	Eventually(func(g Gomega) {
		port, err := k.kubectl("-n", kauditNamespace, "get", "service", "kaudit-agent-metrics", "-o", `jsonpath={.spec.ports[?(@.name=="https")].port}`)
		g.Expect(err).NotTo(HaveOccurred())
		ip, err := k.kubectl("-n", kauditNamespace, "get", "endpointslices", "-l", "kubernetes.io/service-name=kaudit-agent-metrics",
			"-o", "jsonpath={.items[*].endpoints[*].addresses[0]}")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(strings.TrimSpace(ip)).NotTo(BeEmpty())
		address = strings.Fields(ip)[0] + ":" + strings.TrimSpace(port)
	}).WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Succeed())
	return address
}

// scrapeAgent gets https://address/metrics from the node, with token when not "". The
// endpoint's certificate is self-signed, so it is not verified.
func (k *cluster) scrapeAgent(address, token string) (code int, body string, err error) {
	args := []string{"curl", "-sk", "--max-time", "10", "-w", "\n%{http_code}"}
	if token != "" {
		args = append(args, "-H", "Authorization: Bearer "+token)
	}
	out, err := k.nodeExec(append(args, "https://"+address+"/metrics")...)
	if err != nil {
		return 0, out, err
	}
	i := strings.LastIndex(out, "\n")
	code, err = strconv.Atoi(strings.TrimSpace(out[i+1:]))
	return code, out[:max(i, 0)], err
}

var (
	eventsLine  = regexp.MustCompile(`^kaudit_audit_events_total\{(.*)\} (\S+)$`)
	moduleLabel = regexp.MustCompile(`module="([^"]*)"`)
)

// agentModules adds up kaudit_audit_events_total of revision rev by module.
func agentModules(body string, rev int64) map[string]int64 {
	out := map[string]int64{}
	for _, line := range strings.Split(body, "\n") {
		m := eventsLine.FindStringSubmatch(line)
		if m == nil || !strings.Contains(m[1], fmt.Sprintf(`revision="%d"`, rev)) {
			continue
		}
		module := moduleLabel.FindStringSubmatch(m[1])
		v, err := strconv.ParseFloat(m[2], 64)
		Expect(err).NotTo(HaveOccurred(), line)
		out[module[1]] += int64(v)
	}
	return out
}

// simulatedModules runs `kaudit simulate` of the events of the audit log directory dir written
// since the apiserver of the revision started, with the revision's policy, and returns its
// events by module.
func simulatedModules(policyFile, dir string, since time.Time) map[string]int64 {
	files, err := filepath.Glob(filepath.Join(dir, "*.log"))
	Expect(err).NotTo(HaveOccurred())
	sort.Strings(files) // audit-<time>.log, rotated, before audit.log
	var lines bytes.Buffer
	for _, f := range files {
		b, err := os.ReadFile(f)
		Expect(err).NotTo(HaveOccurred())
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var ev struct {
				StageTimestamp time.Time `json:"stageTimestamp"`
			}
			// A partial last line is for the next read, as for the agent.
			if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.StageTimestamp.Before(since) {
				continue
			}
			lines.Write(sc.Bytes())
			lines.WriteByte('\n')
		}
	}
	logFile := filepath.Join(GinkgoT().TempDir(), "since.log")
	Expect(os.WriteFile(logFile, lines.Bytes(), 0o600)).To(Succeed())
	var out bytes.Buffer
	c := cmd.NewRootCommand()
	c.SetArgs([]string{"simulate", "--policy", policyFile, "--format", "json", "--progress", "never", logFile})
	c.SetOut(&out)
	c.SetErr(GinkgoWriter)
	Expect(c.Execute()).To(Succeed())
	var report simulate.Report
	Expect(json.Unmarshal(out.Bytes(), &report)).To(Succeed())
	modules := map[string]int64{}
	for _, m := range report.Policy.Modules {
		modules[m.Source] += m.Events
	}
	return modules
}
