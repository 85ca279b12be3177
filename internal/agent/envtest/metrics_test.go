package envtest_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
		// The role the scraper is given in the cluster (config/rbac's kaudit-metrics-reader).
		reader := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "envtest-metrics-reader"},
			Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}
		Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, reader))).To(Succeed())
		Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "envtest-metrics-reader"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: reader.Name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: namespace, Name: "scraper"}}}))).To(Succeed())
		token := func(name string) string {
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
			Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, sa))).To(Succeed())
			tr := &authenticationv1.TokenRequest{}
			Expect(k8s.SubResource("token").Create(ctx, sa, tr)).To(Succeed())
			return tr.Status.Token
		}
		scraper, stranger := token("scraper"), token("stranger")

		l, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		address := l.Addr().String()
		Expect(l.Close()).To(Succeed())
		auditLog := agent.NewAuditLog(agent.AuditLogOptions{Files: agent.NewNodeFiles(newNodeRoot()), Clock: clock.RealClock{}})
		sctx, stop := context.WithCancel(ctx)
		DeferCleanup(stop)
		Expect(agent.ServeMetrics(sctx, agent.MetricsOptions{BindAddress: address}, agentCfg, auditLog)).To(Succeed())

		// The endpoint's certificate is self-signed: the test checks authentication and
		// authorization, not the server's identity.
		httpClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		scrape := func(token string) (int, string, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+address+"/metrics", nil)
			if err != nil {
				return 0, "", err
			}
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := httpClient.Do(req)
			if err != nil {
				return 0, "", err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			return resp.StatusCode, string(body), err
		}
		Eventually(func() error { _, _, err := scrape(""); return err }).WithTimeout(10 * time.Second).Should(Succeed())
		for _, tc := range []struct {
			who, token string
			want       int
		}{{"no token", "", http.StatusUnauthorized}, {"a token without get on /metrics", stranger, http.StatusForbidden}} {
			code, body, err := scrape(tc.token)
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(tc.want), "%s: %s", tc.who, body)
			Expect(body).NotTo(ContainSubstring("kaudit_"), tc.who)
		}
		var body string
		Eventually(func() (int, error) {
			code, b, err := scrape(scraper)
			body = b
			return code, err
		}).WithTimeout(10*time.Second).Should(Equal(http.StatusOK), func() string { return body })
		// Nothing follows the log here: the agent says so.
		Expect(body).To(ContainSubstring("kaudit_audit_log_followed 0"))
		Expect(body).To(ContainSubstring("go_goroutines "))
		Expect(body).To(ContainSubstring("process_resident_memory_bytes "))
		GinkgoWriter.Printf("scraped %d bytes\n", len(body))
	})
})
