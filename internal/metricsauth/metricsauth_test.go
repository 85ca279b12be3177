package metricsauth

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	rbacv1client "k8s.io/client-go/kubernetes/typed/rbac/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// The tests ask a real kube-apiserver (envtest) for every review.
var cfg *rest.Config

func TestMain(m *testing.M) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run `make test`, or export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)")
		os.Exit(1)
	}
	env := &envtest.Environment{}
	var err error
	if cfg, err = env.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// countingTokenReviews and countingAccessReviews count the reviews that reach the apiserver.
type countingTokenReviews struct {
	authenticationclient.TokenReviewInterface
	n atomic.Int32
}

func (c *countingTokenReviews) Create(ctx context.Context, r *authenticationv1.TokenReview, o metav1.CreateOptions) (*authenticationv1.TokenReview, error) {
	c.n.Add(1)
	return c.TokenReviewInterface.Create(ctx, r, o)
}

type countingAccessReviews struct {
	authorizationclient.SubjectAccessReviewInterface
	n atomic.Int32
}

func (c *countingAccessReviews) Create(ctx context.Context, r *authorizationv1.SubjectAccessReview, o metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error) {
	c.n.Add(1)
	return c.SubjectAccessReviewInterface.Create(ctx, r, o)
}

// testGate is a gate on the test's apiserver with a clock the test moves.
type testGate struct {
	*gate
	tokenReviews  *countingTokenReviews
	accessReviews *countingAccessReviews
	clock         time.Time
	handler       http.Handler
}

func newTestGate(t *testing.T, c *rest.Config) *testGate {
	t.Helper()
	authn, err := authenticationclient.NewForConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	authz, err := authorizationclient.NewForConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	tg := &testGate{
		tokenReviews:  &countingTokenReviews{TokenReviewInterface: authn.TokenReviews()},
		accessReviews: &countingAccessReviews{SubjectAccessReviewInterface: authz.SubjectAccessReviews()},
		clock:         time.Now(),
	}
	tg.gate = newGate(tg.tokenReviews, tg.accessReviews, func() time.Time { return tg.clock })
	tg.handler = tg.gate.handler(logr.Discard(), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("kaudit_metrics 1\n"))
	}))
	return tg
}

// serve sends method path with the Authorization header, if any, and returns the answer.
func (tg *testGate) serve(method, path, authorization string) (int, string) {
	req := httptest.NewRequest(method, path, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	tg.handler.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// reviews returns the TokenReviews and SubjectAccessReviews sent so far.
func (tg *testGate) reviews() (int32, int32) {
	return tg.tokenReviews.n.Load(), tg.accessReviews.n.Load()
}

func expectAnswer(t *testing.T, code int, body string, wantCode int, wantBody string) {
	t.Helper()
	if code != wantCode || !strings.Contains(body, wantBody) {
		t.Fatalf("got %d %q, want %d with %q", code, body, wantCode, wantBody)
	}
}

func expectReviews(t *testing.T, tg *testGate, tokens, access int32) {
	t.Helper()
	if gotTokens, gotAccess := tg.reviews(); gotTokens != tokens || gotAccess != access {
		t.Fatalf("%d TokenReviews and %d SubjectAccessReviews, want %d and %d", gotTokens, gotAccess, tokens, access)
	}
}

// serviceAccount creates a ServiceAccount in namespace "default" and returns a token of it.
func serviceAccount(t *testing.T, name string) string {
	t.Helper()
	core := corev1client.NewForConfigOrDie(cfg)
	ctx := context.Background()
	if _, err := core.ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	req, err := core.ServiceAccounts("default").CreateToken(ctx, name, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return req.Status.Token
}

// allowGetMetrics binds a ClusterRole that allows get on /metrics to the ServiceAccount, and
// returns a func that removes the binding.
func allowGetMetrics(t *testing.T, serviceAccount string) func() {
	t.Helper()
	rbac := rbacv1client.NewForConfigOrDie(cfg)
	ctx := context.Background()
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "metrics-reader-" + serviceAccount},
		Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
	}
	if _, err := rbac.ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "default", Name: serviceAccount}},
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := rbac.ClusterRoleBindings().Delete(ctx, binding.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRefusesRequestsWithoutABearerToken(t *testing.T) {
	tg := newTestGate(t, cfg)
	for _, authorization := range []string{"", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer two words", "bearer"} {
		code, body := tg.serve(http.MethodGet, "/metrics", authorization)
		expectAnswer(t, code, body, http.StatusUnauthorized, "Unauthorized")
	}
	expectReviews(t, tg, 0, 0)
}

func TestRefusesTokensTheAPIServerDoesNotAuthenticate(t *testing.T) {
	tg := newTestGate(t, cfg)
	code, body := tg.serve(http.MethodGet, "/metrics", "Bearer not-a-token")
	expectAnswer(t, code, body, http.StatusUnauthorized, "Unauthorized")
	expectReviews(t, tg, 1, 0)

	tg.clock = tg.clock.Add(tokenTTL - time.Second)
	code, body = tg.serve(http.MethodGet, "/metrics", "Bearer not-a-token")
	expectAnswer(t, code, body, http.StatusUnauthorized, "Unauthorized")
	expectReviews(t, tg, 1, 0) // the refusal is reused for a minute

	tg.clock = tg.clock.Add(time.Second)
	tg.serve(http.MethodGet, "/metrics", "Bearer not-a-token")
	expectReviews(t, tg, 2, 0)
}

func TestServesOnlyCallersAllowedToUseTheMethodOnThePath(t *testing.T) {
	tg := newTestGate(t, cfg)
	scraper, stranger := "Bearer "+serviceAccount(t, "scraper"), "Bearer "+serviceAccount(t, "stranger")
	allowGetMetrics(t, "scraper")

	code, body := tg.serve(http.MethodGet, "/metrics", scraper)
	expectAnswer(t, code, body, http.StatusOK, "kaudit_metrics 1")
	expectReviews(t, tg, 1, 1)
	code, body = tg.serve(http.MethodGet, "/metrics", scraper)
	expectAnswer(t, code, body, http.StatusOK, "kaudit_metrics 1")
	expectReviews(t, tg, 1, 1) // both answers reused

	code, body = tg.serve(http.MethodGet, "/metrics", stranger)
	expectAnswer(t, code, body, http.StatusForbidden, "Authorization denied for user system:serviceaccount:default:stranger")
	code, body = tg.serve(http.MethodPost, "/metrics", scraper)
	expectAnswer(t, code, body, http.StatusForbidden, "Authorization denied for user system:serviceaccount:default:scraper")
	code, body = tg.serve(http.MethodGet, "/debug/pprof/", scraper)
	expectAnswer(t, code, body, http.StatusForbidden, "Authorization denied")
	expectReviews(t, tg, 2, 4)
}

func TestDecisionsFollowRBACChangesAfterTheirTTL(t *testing.T) {
	tg := newTestGate(t, cfg)
	token := "Bearer " + serviceAccount(t, "late")

	code, body := tg.serve(http.MethodGet, "/metrics", token)
	expectAnswer(t, code, body, http.StatusForbidden, "Authorization denied")
	unbind := allowGetMetrics(t, "late")
	tg.clock = tg.clock.Add(deniedTTL - time.Second)
	code, body = tg.serve(http.MethodGet, "/metrics", token)
	expectAnswer(t, code, body, http.StatusForbidden, "Authorization denied")
	expectReviews(t, tg, 1, 1) // the denial is reused for 30 s, the token's review for a minute

	tg.clock = tg.clock.Add(time.Second)
	code, body = tg.serve(http.MethodGet, "/metrics", token)
	expectAnswer(t, code, body, http.StatusOK, "kaudit_metrics 1")
	expectReviews(t, tg, 1, 2)

	unbind()
	tg.clock = tg.clock.Add(allowedTTL - time.Second)
	code, body = tg.serve(http.MethodGet, "/metrics", token)
	expectAnswer(t, code, body, http.StatusOK, "kaudit_metrics 1")
	expectReviews(t, tg, 2, 2) // the token is reviewed again; the permission is reused for 5 min

	tg.clock = tg.clock.Add(time.Second)
	code, body = tg.serve(http.MethodGet, "/metrics", token)
	expectAnswer(t, code, body, http.StatusForbidden, "Authorization denied")
	expectReviews(t, tg, 2, 3)
}

func TestAnswers500WhenTheAPIServerCannotReview(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	tg := newTestGate(t, &rest.Config{Host: dead.URL})
	code, body := tg.serve(http.MethodGet, "/metrics", "Bearer some-token")
	expectAnswer(t, code, body, http.StatusInternalServerError, "Authentication failed")
	code, _ = tg.serve(http.MethodGet, "/metrics", "Bearer some-token")
	if code != http.StatusInternalServerError {
		t.Fatalf("a failed review must not be cached as a refusal: got %d", code)
	}
	expectReviews(t, tg, 2, 0)
}

func TestCachesAreBounded(t *testing.T) {
	now := time.Now()
	tokens := &ttlCache[string, bool]{entries: map[string]cached[bool]{}}
	for i := range maxCached {
		tokens.put(fmt.Sprint(i), true, now, time.Minute)
	}
	tokens.put("one too many", true, now, time.Minute)
	if _, ok := tokens.get("one too many", now); ok || len(tokens.entries) != maxCached {
		t.Fatalf("a full cache of unexpired answers kept a new one: %d entries", len(tokens.entries))
	}
	tokens.put("0", false, now, time.Minute)
	if v, ok := tokens.get("0", now); !ok || v {
		t.Fatal("a full cache did not replace an entry it holds")
	}
	later := now.Add(time.Minute)
	tokens.put("after expiry", true, later, time.Minute)
	if _, ok := tokens.get("after expiry", later); !ok || len(tokens.entries) != 1 {
		t.Fatalf("expired answers were not dropped to make room: %d entries", len(tokens.entries))
	}
}
