package controllers

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/revision"
)

// TestChangedRecordsCoverEveryIncludedInChange checks changedRecords against includedIn by
// brute force: over pairs of latest revisions made of every combination of records, each
// module whose includedInRevision differs between them is enqueued, for its kind only.
func TestChangedRecordsCoverEveryIncludedInChange(t *testing.T) {
	specs := []v1alpha1.AuditPolicyModuleSpec{
		{Order: 1, Rules: []v1alpha1.PolicyRule{{Level: v1alpha1.LevelMetadata}}},
		{Order: 1, Rules: []v1alpha1.PolicyRule{{Level: v1alpha1.LevelRequest}}},
		// the same content as the first, written differently
		{Order: 1, Rules: []v1alpha1.PolicyRule{{Level: v1alpha1.LevelMetadata, Verbs: []string{}}}},
	}
	ids := []types.NamespacedName{{Name: "cluster"}, {Namespace: "team-a", Name: "team"}}
	// choice per module: no record, or a spec and a first revision
	type choice struct {
		spec  int
		first int64
	}
	choices := []*choice{nil}
	for s := range specs {
		for _, first := range []int64{1, 2} {
			choices = append(choices, &choice{s, first})
		}
	}
	var revisions []*latestRevision
	revisions = append(revisions, nil)
	for number, pick := range combinations(len(choices), len(ids)) {
		rev := &revision.Revision{Number: int64(number + 1)}
		for i, c := range pick {
			if ch := choices[c]; ch != nil {
				rev.Modules = append(rev.Modules, revision.ModuleRecord{Namespace: ids[i].Namespace, Name: ids[i].Name, FirstRevision: ch.first, Spec: specs[ch.spec]})
			}
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{UID: types.UID(fmt.Sprint(number)), ResourceVersion: "1"}}
		revisions = append(revisions, newLatestRevision(rev, cm))
	}
	for _, prev := range revisions {
		for _, latest := range revisions {
			for _, namespaced := range []bool{false, true} {
				enqueued := map[types.NamespacedName]bool{}
				for _, r := range changedRecords(prev, latest, namespaced) {
					if (r.Namespace != "") != namespaced {
						t.Fatalf("namespaced %v: enqueued %s of the other kind", namespaced, r.NamespacedName)
					}
					enqueued[r.NamespacedName] = true
				}
				for _, id := range ids {
					if (id.Namespace != "") != namespaced {
						continue
					}
					for _, spec := range specs {
						m := liveModule{Module: policy.Module{Namespace: id.Namespace, Name: id.Name, Spec: spec}}
						before, after := includedIn(m, true, prev), includedIn(m, true, latest)
						if !ptr.Equal(before, after) && !enqueued[id] {
							t.Fatalf("%s: includedInRevision %v under %v, %v under %v, not enqueued", id, ptr.Deref(before, 0), describe(prev), ptr.Deref(after, 0), describe(latest))
						}
					}
				}
			}
		}
	}
}

// combinations lists every way to pick one of n values for each of k places.
func combinations(n, k int) [][]int {
	out := [][]int{nil}
	for range k {
		var next [][]int
		for _, p := range out {
			for v := range n {
				next = append(next, append(append([]int(nil), p...), v))
			}
		}
		out = next
	}
	return out
}

func describe(l *latestRevision) string {
	if l == nil {
		return "no revision"
	}
	return fmt.Sprintf("%+v", l.Modules)
}
