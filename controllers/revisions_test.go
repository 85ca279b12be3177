package controllers_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/controllers"
	"github.com/kaudit/kaudit/internal/revision"
	"github.com/kaudit/kaudit/internal/testenv"
)

// snapshotReader answers lists as the API server saw them at one resourceVersion: a cache whose
// watch was cut before it saw the latest writes.
type snapshotReader struct {
	client.Reader
	resourceVersion string
}

func (r *snapshotReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if r.resourceVersion == "" {
		return r.Reader.List(ctx, list, opts...)
	}
	lo := &client.ListOptions{}
	lo.ApplyOptions(opts)
	lo.Raw = &metav1.ListOptions{ResourceVersion: r.resourceVersion, ResourceVersionMatch: metav1.ResourceVersionMatchExact}
	return r.Reader.List(ctx, list, lo)
}

// countingReader counts the lists that reach the API server.
type countingReader struct {
	client.Reader
	lists int
}

func (r *countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	r.lists++
	return r.Reader.List(ctx, list, opts...)
}

// The e2e suite saw this on kind: the manager created a revision, the agent restarted
// kube-apiserver before the manager's cache saw the new ConfigMap, and the next reconcile
// published the previous revision as desired, so the node rolled back and forth.
func TestStaleCacheNeverMakesTheDesiredRevisionGoBack(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := testenv.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	}()
	c := env.Client
	stale := &snapshotReader{Reader: c}
	live := &countingReader{Reader: c}
	clock := clocktesting.NewFakePassiveClock(time.Now())
	r := controllers.NewPolicyReconcilerReading(c, stale, live, clock, events.NewFakeRecorder(100), testenv.Namespace)
	reconcile := func() {
		t.Helper()
		if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Name: v1alpha1.SingletonName}}); err != nil {
			t.Fatalf("reconcile: %v", err)
		}
	}
	// makeRevision reconciles once to see the change and once after the debounce.
	makeRevision := func() {
		t.Helper()
		reconcile()
		clock.SetTime(clock.Now().Add(time.Minute))
		reconcile()
	}
	desired := func() (desired, latest int64) {
		t.Helper()
		var ap v1alpha1.AuditPolicy
		if err := c.Get(ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, &ap); err != nil {
			t.Fatal(err)
		}
		if ap.Status.DesiredRevision == nil || ap.Status.LatestRevision == nil {
			t.Fatalf("status without revisions: %+v", ap.Status)
		}
		return *ap.Status.DesiredRevision, *ap.Status.LatestRevision
	}
	module := func(name string, level v1alpha1.Level) *v1alpha1.AuditPolicyModule {
		return &v1alpha1.AuditPolicyModule{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.AuditPolicyModuleSpec{Order: 1, Rules: []v1alpha1.PolicyRule{{
				// Endpoints: no guardrail bounds them, so every level is put in force.
				Level: level, Resources: []v1alpha1.GroupResources{{Resources: []string{"endpoints"}}},
			}}},
		}
	}

	reconcile() // creates the singleton
	first := module("first", v1alpha1.LevelMetadata)
	if err := c.Create(ctx, first); err != nil {
		t.Fatal(err)
	}
	makeRevision()
	if d, _ := desired(); d != 1 {
		t.Fatalf("desired revision %d, want 1", d)
	}

	var snapshot corev1.ConfigMapList
	if err := c.List(ctx, &snapshot, client.InNamespace(testenv.Namespace)); err != nil {
		t.Fatal(err)
	}
	stale.resourceVersion = snapshot.ResourceVersion
	first.Spec.Rules[0].Level = v1alpha1.LevelRequest
	if err := c.Update(ctx, first); err != nil {
		t.Fatal(err)
	}
	makeRevision()
	if d, _ := desired(); d != 2 {
		t.Fatalf("desired revision %d after the change, want 2", d)
	}

	// A further change starts a debounce; the cache still shows revision 1 alone.
	if err := c.Create(ctx, module("second", v1alpha1.LevelMetadata)); err != nil {
		t.Fatal(err)
	}
	reconcile()
	if d, l := desired(); d != 2 || l != 2 {
		t.Fatalf("with a stale cache the status says desired %d, latest %d; want 2 and 2", d, l)
	}

	// A revision deleted by hand is not waited for: one more list from the API server finds
	// it gone, and later reconciles read the cache alone again.
	if err := c.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: testenv.Namespace, Name: revision.Name(2)}}); err != nil {
		t.Fatal(err)
	}
	reconcile()
	if d, _ := desired(); d != 1 {
		t.Fatalf("desired revision %d after revision 2 was deleted, want 1", d)
	}
	lists := live.lists
	reconcile()
	if live.lists != lists {
		t.Fatalf("the reconciler still lists revisions from the API server after revision 2 was deleted")
	}
}
