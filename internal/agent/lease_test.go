package agent

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// ReleaseAfter shortens a Lease we hold to d; it never lengthens one, so a node that calls it
// on every pass (to hand on a Lease left from a crash) keeps nobody waiting longer.
func TestReleaseAfterOnlyShortensTheLease(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name        string
		holder      string
		renewed     time.Time
		seconds     int32
		wantRenewed time.Time
		wantSeconds int32
	}{
		{"ours, for minutes more: shortened to d", "node-1", now.Add(-time.Minute), 270, now, 10},
		{"ours, ending within d: left alone", "node-1", now.Add(-265 * time.Second), 270, now.Add(-265 * time.Second), 270},
		{"ours, expired: left alone, not held again", "node-1", now.Add(-time.Hour), 270, now.Add(-time.Hour), 270},
		{"another node's: left alone", "node-2", now.Add(-time.Minute), 270, now.Add(-time.Minute), 270},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lease := &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Namespace: "kaudit-system", Name: "kaudit-rollout"},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(tc.holder), RenewTime: ptr.To(metav1.NewMicroTime(tc.renewed)), LeaseDurationSeconds: ptr.To(tc.seconds)},
			}
			c := fake.NewClientBuilder().WithObjects(lease).Build()
			l := &Lease{Client: c, Namespace: lease.Namespace, Name: lease.Name, Identity: "node-1", Clock: clocktesting.NewFakePassiveClock(now)}
			if err := l.ReleaseAfter(ctx, 9500*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			got := &coordinationv1.Lease{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(lease), got); err != nil {
				t.Fatal(err)
			}
			if !got.Spec.RenewTime.Time.Equal(tc.wantRenewed) || *got.Spec.LeaseDurationSeconds != tc.wantSeconds || *got.Spec.HolderIdentity != tc.holder {
				t.Errorf("lease: holder %s, renewed %s, %d s; want renewed %s, %d s", *got.Spec.HolderIdentity, got.Spec.RenewTime.Time, *got.Spec.LeaseDurationSeconds, tc.wantRenewed, tc.wantSeconds)
			}
		})
	}
}

// Another holder's lease expires a full duration after this agent first read its last renewal,
// whatever the holder's clock said: a holder whose clock runs minutes behind still keeps
// everyone else waiting its whole duration, and each renewal starts it again. A lease already
// stale when first read (this agent restarted) still lasts a duration from then.
func TestLeaseExpiresOnTheReadersClock(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	const seconds = 100
	for _, tc := range []struct {
		name          string
		renewed       time.Time // on the holder's clock
		stillHeldAt   []time.Duration
		takenOverFrom time.Duration
	}{
		{"holder's clock 5 minutes behind, renewed just now", now.Add(-5 * time.Minute), []time.Duration{0, 99 * time.Second}, 100 * time.Second},
		{"holder's clock in step, renewed 40 s ago", now.Add(-40 * time.Second), []time.Duration{0, 59 * time.Second, 99 * time.Second}, 100 * time.Second},
		{"expired 30 s ago when first read", now.Add(-130 * time.Second), []time.Duration{0, 99 * time.Second}, 100 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lease := &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Namespace: "kaudit-system", Name: "kaudit-rollout"},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("node-2"), RenewTime: ptr.To(metav1.NewMicroTime(tc.renewed)), LeaseDurationSeconds: ptr.To(int32(seconds))},
			}
			c := fake.NewClientBuilder().WithObjects(lease).Build()
			clk := clocktesting.NewFakePassiveClock(now)
			l := &Lease{Client: c, Namespace: lease.Namespace, Name: lease.Name, Identity: "node-1", Clock: clk}
			for _, at := range tc.stillHeldAt {
				clk.SetTime(now.Add(at))
				if ok, holder, err := l.TryAcquire(ctx, time.Minute); err != nil || ok || holder != "node-2" {
					t.Fatalf("at +%s: acquired %v, holder %q, err %v; want held by node-2", at, ok, holder, err)
				}
			}
			clk.SetTime(now.Add(tc.takenOverFrom))
			if ok, _, err := l.TryAcquire(ctx, time.Minute); err != nil || !ok {
				t.Fatalf("at +%s: acquired %v, err %v; want taken over", tc.takenOverFrom, ok, err)
			}
		})
	}

	t.Run("a renewal starts the duration again", func(t *testing.T) {
		lease := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: "kaudit-system", Name: "kaudit-rollout"},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("node-2"), RenewTime: ptr.To(metav1.NewMicroTime(now)), LeaseDurationSeconds: ptr.To(int32(seconds))},
		}
		c := fake.NewClientBuilder().WithObjects(lease).Build()
		clk := clocktesting.NewFakePassiveClock(now)
		l := &Lease{Client: c, Namespace: lease.Namespace, Name: lease.Name, Identity: "node-1", Clock: clk}
		if ok, _, _ := l.TryAcquire(ctx, time.Minute); ok {
			t.Fatal("acquired a lease renewed just now")
		}
		clk.SetTime(now.Add(90 * time.Second))
		holder := &Lease{Client: c, Namespace: lease.Namespace, Name: lease.Name, Identity: "node-2", Clock: clocktesting.NewFakePassiveClock(now.Add(-time.Hour))}
		if err := holder.Renew(ctx, seconds*time.Second); err != nil {
			t.Fatal(err)
		}
		if ok, _, _ := l.TryAcquire(ctx, time.Minute); ok {
			t.Fatal("acquired a lease just renewed, by a holder whose clock is an hour behind")
		}
		clk.SetTime(now.Add(189 * time.Second))
		if ok, _, _ := l.TryAcquire(ctx, time.Minute); ok {
			t.Fatal("acquired before a duration had passed since the renewal was read")
		}
		clk.SetTime(now.Add(190 * time.Second))
		if ok, _, err := l.TryAcquire(ctx, time.Minute); err != nil || !ok {
			t.Fatalf("acquired %v, err %v; want taken over a duration after the renewal was read", ok, err)
		}
	})
}
