package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/revision"
)

// storedRevision is a trusted revision, the ConfigMap it came from and its recorded digest. Only
// the latest trusted revision carries its module records; no revision carries its policy (the
// nodes read it from the ConfigMap): with 5,000 modules each takes megabytes, and the history
// holds ten revisions.
type storedRevision struct {
	*revision.Revision
	ConfigMap *corev1.ConfigMap
	Digest    string
}

// untrustedRevision is a ConfigMap with the revision label that the manager ignores, and why.
type untrustedRevision struct {
	ConfigMap *corev1.ConfigMap
	Reason    string
}

// revisionSet is what one look at the revision ConfigMaps found.
type revisionSet struct {
	// trusted holds the revisions that pass the trust rule, oldest first.
	trusted []storedRevision
	// untrusted holds every other ConfigMap with the revision label, by name.
	untrusted []untrustedRevision
	// records are the records of revisions whose ConfigMap exists, trusted or not: what
	// status.revisions must hold.
	records map[int64]string
	// latest is the last of trusted, with its module records; nil when trusted is empty.
	latest *latestRevision
}

// revisionStore lists revision ConfigMaps and applies the trust rule (see docs/design.md,
// "Revisions"): a ConfigMap is used only if its number is recorded, it is named after its
// number, immutable, and its content has the recorded digest. Every other ConfigMap carrying the
// revision label was not made by the manager, or was changed since, and is only reported.
//
// The records are status.revisions, which only the manager, the agents (admission keeps them to
// their own node entry) and cluster administrators can write; the store also keeps them in
// memory, so a singleton deleted while the manager runs gets them back. The verdicts on
// ConfigMaps are kept per UID and resourceVersion: decompressing every revision on every
// reconcile of every module would be wasted work, and labels and annotations stay writable on
// an immutable ConfigMap, so the resourceVersion must match too. Of the trusted revisions only
// the latest one's module records are kept, with an index by module: they are last known good,
// and what the modules' includedInRevision is read from. A revision this process created is
// trusted without decoding it again while its UID and resourceVersion are the ones the create
// returned: any change of the object changes its resourceVersion.
//
// The cache can lag behind the revisions this process created: a new revision makes the agent
// restart kube-apiserver at once, which can cut the watch before the cache sees the create.
// Deciding from such a view would publish an older revision as desired and roll the nodes
// back. So the store remembers the newest revision it created and, while the cache does not
// show it, lists from the API server instead.
type revisionStore struct {
	cached    client.Reader
	live      client.Reader
	namespace string
	// selector is revision.Selector, parsed once: every module's reconcile lists revisions.
	selector labels.Selector

	mu       sync.Mutex
	records  map[int64]string
	verified map[types.UID]verifiedRevision
	// newest is the latest trusted revision with its module records, once decoded.
	newest *latestRevision
	// creating is the number of the revision being created, recorded before it exists.
	creating int64
	// newestCreated is the newest revision number this process created or adopted, 0 once the
	// cache shows it or it is gone.
	newestCreated int64
}

// verifiedRevision is the trust rule's verdict on one version of a ConfigMap; revision holds
// its number and policy hash only.
type verifiedRevision struct {
	resourceVersion string
	digest          string
	revision        *revision.Revision
	err             error
}

// latestRevision is a trusted revision with its module records, indexed by module ID.
type latestRevision struct {
	*revision.Revision
	uid             types.UID
	resourceVersion string
	byID            map[string]*revision.ModuleRecord
}

func newLatestRevision(rev *revision.Revision, cm *corev1.ConfigMap) *latestRevision {
	l := &latestRevision{Revision: &revision.Revision{Number: rev.Number, Hash: rev.Hash, Modules: rev.Modules},
		uid: cm.UID, resourceVersion: cm.ResourceVersion, byID: make(map[string]*revision.ModuleRecord, len(rev.Modules))}
	for i := range l.Modules {
		rec := &l.Modules[i]
		l.byID[policy.ModuleID(rec.Namespace, rec.Name)] = rec
	}
	return l
}

// record is the record of the module with the given ID, or nil.
func (l *latestRevision) record(id string) *revision.ModuleRecord {
	if l == nil {
		return nil
	}
	return l.byID[id]
}

// summary is a revision without its policy and module records.
func summary(rev *revision.Revision) *revision.Revision {
	return &revision.Revision{Number: rev.Number, Hash: rev.Hash}
}

func newRevisionStore(cached, live client.Reader, namespace string) *revisionStore {
	return &revisionStore{cached: cached, live: live, namespace: namespace, selector: revision.Selector(),
		records: map[int64]string{}, verified: map[types.UID]verifiedRevision{}}
}

// record trusts revision number with digest from now on. The manager calls it just before it
// creates the revision, so that no reader sees the new ConfigMap unrecorded, and then created or
// forget.
func (s *revisionStore) record(number int64, digest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[number] = digest
	s.creating = number
}

// created notes that the recorded revision now exists as cm, as the create returned it: lists
// wait for the cache to show it, and trust it without decoding it while it is unchanged.
func (s *revisionStore) created(rev *revision.Revision, cm *corev1.ConfigMap) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creating = 0
	s.newestCreated = max(s.newestCreated, rev.Number)
	if cm.UID != "" && cm.ResourceVersion != "" {
		s.verified[cm.UID] = verifiedRevision{resourceVersion: cm.ResourceVersion, digest: s.records[rev.Number], revision: summary(rev)}
		s.newest = newLatestRevision(rev, cm)
	}
}

// forget drops the record of a revision that could not be created.
func (s *revisionStore) forget(number int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creating = 0
	delete(s.records, number)
}

// list applies the trust rule to every revision ConfigMap, with the records of the store and
// those of status.revisions.
func (s *revisionStore) list(ctx context.Context, recorded []v1alpha1.RevisionRecord) (revisionSet, error) {
	cms, err := s.listFrom(ctx, s.cached)
	if err != nil {
		return revisionSet{}, err
	}
	s.mu.Lock()
	expected := s.newestCreated
	s.mu.Unlock()
	inCache := expected == 0 || hasName(cms, revision.Name(expected))
	if !inCache {
		if cms, err = s.listFrom(ctx, s.live); err != nil {
			return revisionSet{}, fmt.Errorf("the cache has not seen revision %d yet, and listing revisions from the API server failed: %w", expected, err)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if expected == s.newestCreated && (inCache || !hasName(cms, revision.Name(expected))) {
		// The cache shows it, or it was deleted by hand since: stop listing from the API server.
		s.newestCreated = 0
	}
	for _, r := range recorded {
		if _, ok := s.records[r.Number]; !ok {
			s.records[r.Number] = r.SHA256
		}
	}
	set := revisionSet{records: map[int64]string{}}
	seen := make(map[types.UID]bool, len(cms))
	for _, cm := range cms {
		seen[cm.UID] = true
		if n, err := revision.Number(cm); err == nil && cm.Name == revision.Name(n) {
			if digest, ok := s.records[n]; ok {
				set.records[n] = digest
			}
		}
		rev, digest, err := s.verify(cm)
		if err != nil {
			set.untrusted = append(set.untrusted, untrustedRevision{ConfigMap: cm, Reason: err.Error()})
			continue
		}
		set.trusted = append(set.trusted, storedRevision{Revision: rev, ConfigMap: cm, Digest: digest})
	}
	// Records leave with their ConfigMap: status.revisions holds the revisions that exist.
	for n := range s.records {
		if _, ok := set.records[n]; !ok && n != s.creating {
			delete(s.records, n)
		}
	}
	for uid := range s.verified {
		if !seen[uid] {
			delete(s.verified, uid)
		}
	}
	slices.SortFunc(set.trusted, func(a, b storedRevision) int { return cmp.Compare(a.Number, b.Number) })
	slices.SortFunc(set.untrusted, func(a, b untrustedRevision) int { return cmp.Compare(a.ConfigMap.Name, b.ConfigMap.Name) })
	if len(set.trusted) == 0 {
		s.newest = nil
		return set, nil
	}
	latest := &set.trusted[len(set.trusted)-1]
	if s.newest == nil || s.newest.uid != latest.ConfigMap.UID || s.newest.resourceVersion != latest.ConfigMap.ResourceVersion {
		// decode it again for its records: it passed the trust rule, so it still does
		rev, err := revision.Verify(latest.ConfigMap, latest.Digest)
		if err != nil {
			return revisionSet{}, fmt.Errorf("revision %d passed the trust rule, then failed it: %w", latest.Number, err)
		}
		s.newest = newLatestRevision(rev, latest.ConfigMap)
	}
	latest.Revision = s.newest.Revision
	set.latest = s.newest
	return set, nil
}

// verify applies the trust rule to one ConfigMap; the caller holds mu.
func (s *revisionStore) verify(cm *corev1.ConfigMap) (*revision.Revision, string, error) {
	n, err := revision.Number(cm)
	if err != nil {
		return nil, "", err
	}
	digest, ok := s.records[n]
	if !ok {
		return nil, "", fmt.Errorf("ConfigMap %s/%s: revision %d is not in status.revisions: the manager did not make it", cm.Namespace, cm.Name, n)
	}
	if v, ok := s.verified[cm.UID]; ok && v.resourceVersion == cm.ResourceVersion && v.digest == digest {
		return v.revision, digest, v.err
	}
	rev, err := revision.Verify(cm, digest)
	if err == nil {
		rev = summary(rev)
	}
	s.verified[cm.UID] = verifiedRevision{resourceVersion: cm.ResourceVersion, digest: digest, revision: rev, err: err}
	return rev, digest, err
}

// listFrom lists the revision ConfigMaps. Those of the cache are its own objects, not copies
// (every module's reconcile lists them, and each holds up to a megabyte): they are only read.
func (s *revisionStore) listFrom(ctx context.Context, reader client.Reader) ([]*corev1.ConfigMap, error) {
	var list corev1.ConfigMapList
	opts := []client.ListOption{client.InNamespace(s.namespace), client.MatchingLabelsSelector{Selector: s.selector}}
	if reader == s.cached {
		opts = append(opts, client.UnsafeDisableDeepCopy)
	}
	if err := reader.List(ctx, &list, opts...); err != nil {
		return nil, err
	}
	out := make([]*corev1.ConfigMap, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

func hasName(cms []*corev1.ConfigMap, name string) bool {
	return slices.ContainsFunc(cms, func(cm *corev1.ConfigMap) bool { return cm.Name == name })
}

// latest returns the newest trusted revision, or nil when there is none.
func (s *revisionStore) latest(ctx context.Context, recorded []v1alpha1.RevisionRecord) (*latestRevision, error) {
	set, err := s.list(ctx, recorded)
	if err != nil {
		return nil, err
	}
	return set.latest, nil
}
