package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kaudit/kaudit/internal/revision"
)

// storedRevision is a decoded revision and the ConfigMap it came from.
type storedRevision struct {
	*revision.Revision
	ConfigMap *corev1.ConfigMap
}

// revisionStore lists revision ConfigMaps from the cache and keeps them decoded: revisions are
// immutable, so each is decompressed once, not on every reconcile of every module.
//
// The cache can lag behind the revisions this process created: a new revision makes the agent
// restart kube-apiserver at once, which can cut the watch before the cache sees the create.
// Deciding from such a view would publish an older revision as desired and roll the nodes
// back. So the store remembers the newest revision it created and, while the cache has not
// caught up, lists from the API server instead.
type revisionStore struct {
	cached    client.Reader
	live      client.Reader
	namespace string

	mu      sync.Mutex
	decoded map[types.UID]*revision.Revision
	// newestCreated is the newest revision number this process created.
	newestCreated int64
}

func newRevisionStore(cached, live client.Reader, namespace string) *revisionStore {
	return &revisionStore{cached: cached, live: live, namespace: namespace, decoded: map[types.UID]*revision.Revision{}}
}

// created records a revision this process has just written.
func (s *revisionStore) created(number int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.newestCreated = max(s.newestCreated, number)
}

// list returns every valid revision, oldest first, including every revision this process
// created that still exists. ConfigMaps that do not decode are skipped and logged: a
// hand-edited revision must not stop the controller.
func (s *revisionStore) list(ctx context.Context) ([]storedRevision, error) {
	cms, err := s.listFrom(ctx, s.cached)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	expected := s.newestCreated
	s.mu.Unlock()
	if newestNumber(cms) < expected {
		if cms, err = s.listFrom(ctx, s.live); err != nil {
			return nil, fmt.Errorf("the cache has not seen revision %d yet, and listing revisions from the API server failed: %w", expected, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if newest := newestNumber(cms); newest < s.newestCreated && expected == s.newestCreated {
		// Deleted by hand since: stop waiting for the cache to show it.
		s.newestCreated = newest
	}
	seen := make(map[types.UID]bool, len(cms))
	out := make([]storedRevision, 0, len(cms))
	for _, cm := range cms {
		seen[cm.UID] = true
		rev, ok := s.decoded[cm.UID]
		if !ok {
			var err error
			if rev, err = revision.FromConfigMap(cm); err != nil {
				log.FromContext(ctx).Error(err, "ignoring revision ConfigMap that cannot be decoded", "configMap", cm.Name)
				continue
			}
			s.decoded[cm.UID] = rev
		}
		out = append(out, storedRevision{Revision: rev, ConfigMap: cm})
	}
	for uid := range s.decoded {
		if !seen[uid] {
			delete(s.decoded, uid)
		}
	}
	slices.SortFunc(out, func(a, b storedRevision) int { return cmp.Compare(a.Number, b.Number) })
	return out, nil
}

func (s *revisionStore) listFrom(ctx context.Context, reader client.Reader) ([]*corev1.ConfigMap, error) {
	var list corev1.ConfigMapList
	if err := reader.List(ctx, &list, client.InNamespace(s.namespace), client.MatchingLabelsSelector{Selector: revision.Selector()}); err != nil {
		return nil, err
	}
	out := make([]*corev1.ConfigMap, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// newestNumber is the highest revision number among the ConfigMaps, 0 when there is none.
func newestNumber(cms []*corev1.ConfigMap) int64 {
	var newest int64
	for _, cm := range cms {
		if n, err := revision.Number(cm); err == nil {
			newest = max(newest, n)
		}
	}
	return newest
}

// latest returns the newest revision, or nil when there is none.
func (s *revisionStore) latest(ctx context.Context) (*revision.Revision, error) {
	revs, err := s.list(ctx)
	if err != nil || len(revs) == 0 {
		return nil, err
	}
	return revs[len(revs)-1].Revision, nil
}
