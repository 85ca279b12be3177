package envtest_test

import (
	"context"
	"net/http"
	"regexp"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kaudit/kaudit/internal/agent"
)

// The agent's metrics endpoint, with the agent's own RBAC from config/agent for the
// TokenReviews and SubjectAccessReviews of its callers.
var _ = Describe("The agent's metrics endpoint", func() {
	It("refuses callers without a token or without get on /metrics, and serves the allowed one", func() {
		applyConfigAgent()
		agentCfg := rest.CopyConfig(cfg)
		agentCfg.Impersonate = rest.ImpersonationConfig{
			UserName: "system:serviceaccount:kaudit-system:kaudit-agent",
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:kaudit-system", "system:authenticated"},
		}
		scraper, stranger := metricsToken("scraper", true), metricsToken("stranger", false)

		// This test binary links the manager's package, as the kaudit binary does: its metrics are
		// registered with controller-runtime's.
		Expect(gathered(crmetrics.Registry, "kaudit_revisions_total")).To(BeTrue())
		// ServeMetrics replaces controller-runtime's registry with the agent's own.
		managerRegistry := crmetrics.Registry
		DeferCleanup(func() { crmetrics.Registry = managerRegistry })

		address := freeAddress()
		auditLog := agent.NewAuditLog(agent.AuditLogOptions{Files: agent.NewNodeFiles(newNodeRoot()), Clock: clock.RealClock{}})
		sctx, stop := context.WithCancel(ctx)
		DeferCleanup(stop)
		Expect(agent.ServeMetrics(sctx, agent.MetricsOptions{BindAddress: address}, agentCfg, auditLog)).To(Succeed())

		Eventually(func() error { _, _, err := get(address, ""); return err }).WithTimeout(10 * time.Second).Should(Succeed())
		for _, tc := range []struct {
			who, token string
			want       int
		}{{"no token", "", http.StatusUnauthorized}, {"a token without get on /metrics", stranger, http.StatusForbidden}} {
			code, body, err := get(address, tc.token)
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(tc.want), "%s: %s", tc.who, body)
			Expect(body).NotTo(ContainSubstring("kaudit_"), tc.who)
		}
		var body string
		Eventually(func(g Gomega) { body = scrape(g, address, scraper) }).WithTimeout(10 * time.Second).Should(Succeed())
		// Nothing follows the log here: the agent says so.
		Expect(body).To(ContainSubstring("kaudit_audit_log_followed 0"))
		Expect(body).To(ContainSubstring("go_goroutines "))
		Expect(body).To(ContainSubstring("process_resident_memory_bytes "))
		Expect(body).NotTo(ContainSubstring("kaudit_revisions_total"))
		expectOnlyAgentMetrics(body)
	})
})

// expectOnlyAgentMetrics expects the families of a scrape of the agent's endpoint to be the
// agent's own, Go's and the process's: none of the manager's or controller-runtime's, which the
// same binary links in.
func expectOnlyAgentMetrics(body string) {
	families := regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllStringSubmatch(body, -1)
	Expect(families).NotTo(BeEmpty())
	for _, f := range families {
		Expect(f[1]).To(MatchRegexp(`^(kaudit_|go_|process_)`))
	}
}

// gathered tells whether g gathers the metric name.
func gathered(g prometheus.Gatherer, name string) bool {
	families, err := g.Gather()
	Expect(err).NotTo(HaveOccurred())
	return slices.ContainsFunc(families, func(f *dto.MetricFamily) bool { return f.GetName() == name })
}
