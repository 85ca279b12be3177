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
