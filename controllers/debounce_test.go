package controllers_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/controllers"
	"github.com/kaudit/kaudit/internal/revision"
	"github.com/kaudit/kaudit/internal/testenv"
)

// steppingClock moves on by step each time it is read: a reconcile that reads it twice took
// step between the two reads.
type steppingClock struct {
	now  time.Time
	step time.Duration
}

func (c *steppingClock) Now() time.Time {
	c.now = c.now.Add(c.step)
	return c.now
}

func (c *steppingClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// The debounce counts from when the reconcile read the modules (see docs/design.md,
// "Revisions"): the time the decision takes is part of the wait, and a decision that took
// longer than the debounce makes its revision at once.
func TestDebounceCountsTheDecision(t *testing.T) {
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
	clock := &steppingClock{now: time.Now()}
	r := controllers.NewPolicyReconcilerReading(c, c, c, clock, events.NewFakeRecorder(100), testenv.Namespace)
	reconcile := func() ctrl.Result {
		t.Helper()
		res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Name: v1alpha1.SingletonName}})
		if err != nil {
			t.Fatalf("reconcile: %v", err)
		}
		return res
	}
	revisions := func() int {
		t.Helper()
		var cms corev1.ConfigMapList
		if err := c.List(ctx, &cms, client.InNamespace(testenv.Namespace), client.MatchingLabelsSelector{Selector: revision.Selector()}); err != nil {
			t.Fatal(err)
		}
		return len(cms.Items)
	}

	reconcile() // creates the singleton
	module := &v1alpha1.AuditPolicyModule{
		ObjectMeta: metav1.ObjectMeta{Name: "endpoints"},
		Spec: v1alpha1.AuditPolicyModuleSpec{Order: 1, Rules: []v1alpha1.PolicyRule{{
			Level: v1alpha1.LevelMetadata, Resources: []v1alpha1.GroupResources{{Resources: []string{"endpoints"}}},
		}}},
	}
	if err := c.Create(ctx, module); err != nil {
		t.Fatal(err)
	}

	clock.step = 500 * time.Millisecond
	if res := reconcile(); res.RequeueAfter <= 0 || res.RequeueAfter >= v1alpha1.DefaultDebounce {
		t.Errorf("a reconcile that took 500ms per look at the clock waits %s; want less than the debounce, %s", res.RequeueAfter, v1alpha1.DefaultDebounce)
	}
	if n := revisions(); n != 0 {
		t.Fatalf("%d revisions before the debounce passed, want 0", n)
	}

	clock.step = v1alpha1.DefaultDebounce + time.Second
	reconcile()
	if n := revisions(); n != 1 {
		t.Fatalf("%d revisions once the debounce passed, want 1", n)
	}

	// The decision about this change takes longer than the debounce: no further wait.
	module.Spec.Rules[0].Level = v1alpha1.LevelRequest
	if err := c.Update(ctx, module); err != nil {
		t.Fatal(err)
	}
	if res := reconcile(); res.RequeueAfter != 0 {
		t.Errorf("a reconcile that took longer than the debounce asks to wait %s more", res.RequeueAfter)
	}
	if n := revisions(); n != 2 {
		t.Errorf("%d revisions after a change whose decision outlasted the debounce, want 2", n)
	}
}
