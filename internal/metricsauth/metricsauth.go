// Package metricsauth admits a request to a metrics endpoint only for a caller whose bearer
// token the apiserver authenticates (TokenReview) and who may use the request's verb on its path
// (SubjectAccessReview, a non-resource URL), as kube-rbac-proxy and controller-runtime's metrics
// filter do. It is kaudit's own so that neither process links k8s.io/apiserver's delegating
// authenticator and authorizer for it: 14 MB of the image's binary, 8 MiB of which each process
// kept resident (docs/design.md, "At scale").
package metricsauth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// How long answers are reused, as controller-runtime's filter did: a token's review for a
// minute whatever its outcome; an allowed decision for 5 minutes, a denied one for 30 seconds
// (a new RoleBinding takes effect within that). Prometheus scrapes every 15 to 60 s, so a steady
// scraper costs a review every few scrapes.
const (
	tokenTTL      = time.Minute
	allowedTTL    = 5 * time.Minute
	deniedTTL     = 30 * time.Second
	reviewTimeout = 10 * time.Second
	// maxCached bounds each cache: callers sending new tokens cannot grow the process. When it
	// is full of unexpired answers, new ones are not kept (each such request costs its reviews).
	maxCached = 1024
)

// Filter is a metricsserver.FilterProvider: the metrics server calls it once, with the
// process's client configuration.
func Filter(cfg *rest.Config, httpClient *http.Client) (metricsserver.Filter, error) {
	authn, err := authenticationclient.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	authz, err := authorizationclient.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	g := newGate(authn.TokenReviews(), authz.SubjectAccessReviews(), time.Now)
	return func(log logr.Logger, next http.Handler) (http.Handler, error) {
		return g.handler(log, next), nil
	}, nil
}

// gate decides requests, with the caches of the reviews' answers.
type gate struct {
	tokenReviews  authenticationclient.TokenReviewInterface
	accessReviews authorizationclient.SubjectAccessReviewInterface
	now           func() time.Time
	// users holds the reviewed identity of each token (nil: not authenticated), keyed by the
	// token's SHA-256 so that no token is kept.
	users     *ttlCache[[sha256.Size]byte, *authenticationv1.UserInfo]
	decisions *ttlCache[string, bool]
}

func newGate(tokenReviews authenticationclient.TokenReviewInterface, accessReviews authorizationclient.SubjectAccessReviewInterface, now func() time.Time) *gate {
	return &gate{
		tokenReviews: tokenReviews, accessReviews: accessReviews, now: now,
		users:     &ttlCache[[sha256.Size]byte, *authenticationv1.UserInfo]{entries: map[[sha256.Size]byte]cached[*authenticationv1.UserInfo]{}},
		decisions: &ttlCache[string, bool]{entries: map[string]cached[bool]{}},
	}
}

// handler answers 401 without a token the apiserver authenticates, 403 when the caller may not
// use the method on the path, 500 when a review fails, and passes the rest to next.
func (g *gate) handler(log logr.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r)
		if !ok {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		user, err := g.authenticate(r.Context(), token)
		if err != nil {
			log.Error(err, "Reviewing a metrics caller's token failed")
			http.Error(w, "Authentication failed", http.StatusInternalServerError)
			return
		}
		if user == nil {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		allowed, err := g.authorize(r.Context(), user, strings.ToLower(r.Method), r.URL.Path)
		if err != nil {
			msg := fmt.Sprintf("Authorization for user %s failed", user.Username)
			log.Error(err, msg)
			http.Error(w, msg, http.StatusInternalServerError)
			return
		}
		if !allowed {
			http.Error(w, fmt.Sprintf("Authorization denied for user %s", user.Username), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearerToken reads "Authorization: Bearer TOKEN" as the apiserver does (the scheme in any case).
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != "" && !strings.Contains(token, " ")
}

// authenticate returns who the token is, or nil if the apiserver does not authenticate it.
func (g *gate) authenticate(ctx context.Context, token string) (*authenticationv1.UserInfo, error) {
	key := sha256.Sum256([]byte(token))
	if user, ok := g.users.get(key, g.now()); ok {
		return user, nil
	}
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	review, err := g.tokenReviews.Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("TokenReview: %w", err)
	}
	var user *authenticationv1.UserInfo
	if review.Status.Authenticated {
		user = &review.Status.User
	}
	g.users.put(key, user, g.now(), tokenTTL)
	return user, nil
}

// authorize asks whether user may use verb on the non-resource URL path.
func (g *gate) authorize(ctx context.Context, user *authenticationv1.UserInfo, verb, path string) (bool, error) {
	spec := authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, UID: user.UID, Groups: user.Groups,
		NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: path, Verb: verb},
	}
	if len(user.Extra) > 0 {
		spec.Extra = make(map[string]authorizationv1.ExtraValue, len(user.Extra))
		for k, v := range user.Extra {
			spec.Extra[k] = authorizationv1.ExtraValue(v)
		}
	}
	// The whole question is the key: encoding/json writes map keys sorted.
	keyBytes, err := json.Marshal(spec)
	if err != nil {
		return false, err
	}
	key := string(keyBytes)
	if allowed, ok := g.decisions.get(key, g.now()); ok {
		return allowed, nil
	}
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	review, err := g.accessReviews.Create(ctx, &authorizationv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("SubjectAccessReview: %w", err)
	}
	allowed := review.Status.Allowed && !review.Status.Denied
	ttl := deniedTTL
	if allowed {
		ttl = allowedTTL
	}
	g.decisions.put(key, allowed, g.now(), ttl)
	return allowed, nil
}

// ttlCache keeps at most maxCached answers, each until it expires.
type ttlCache[K comparable, V any] struct {
	mu      sync.Mutex
	entries map[K]cached[V]
}

type cached[V any] struct {
	value   V
	expires time.Time
}

func (c *ttlCache[K, V]) get(key K, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.value, true
}

func (c *ttlCache[K, V]) put(key K, value V, now time.Time, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= maxCached {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= maxCached {
			return
		}
	}
	c.entries[key] = cached[V]{value: value, expires: now.Add(ttl)}
}
