package controllers

import (
	"cmp"
	"context"
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
type revisionStore struct {
	reader    client.Reader
	namespace string

	mu      sync.Mutex
	decoded map[types.UID]*revision.Revision
}

func newRevisionStore(reader client.Reader, namespace string) *revisionStore {
	return &revisionStore{reader: reader, namespace: namespace, decoded: map[types.UID]*revision.Revision{}}
}

// list returns every valid revision, oldest first. ConfigMaps that do not decode are skipped
// and logged: a hand-edited revision must not stop the controller.
func (s *revisionStore) list(ctx context.Context) ([]storedRevision, error) {
	var cms corev1.ConfigMapList
	if err := s.reader.List(ctx, &cms, client.InNamespace(s.namespace), client.MatchingLabelsSelector{Selector: revision.Selector()}); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[types.UID]bool, len(cms.Items))
	out := make([]storedRevision, 0, len(cms.Items))
	for i := range cms.Items {
		cm := &cms.Items[i]
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

// latest returns the newest revision, or nil when there is none.
func (s *revisionStore) latest(ctx context.Context) (*revision.Revision, error) {
	revs, err := s.list(ctx)
	if err != nil || len(revs) == 0 {
		return nil, err
	}
	return revs[len(revs)-1].Revision, nil
}
