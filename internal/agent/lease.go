package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Lease names (see docs/design.md, "One node at a time").
const (
	DefaultNamespace = "kaudit-system"
	LeaseName        = "kaudit-rollout"
)

// LeaseDuration is how long a holder keeps the rollout lease without renewing it: at least twice
// the health timeout plus 30 s, so it cannot expire while a node restarts and rolls back (with a
// single control plane the holder cannot renew while its apiserver is down).
func LeaseDuration(healthTimeout time.Duration) time.Duration {
	return 2*healthTimeout + 30*time.Second
}

// Lease is the coordination Lease that lets one node at a time restart its apiserver. It is
// held only during a node's rollout, released after it, and taken over once it expired.
type Lease struct {
	Client    client.Client
	Namespace string
	Name      string
	// Identity is the holder: the node name.
	Identity string
	Clock    clock.PassiveClock

	mu sync.Mutex
	// sighting is another holder's lease as this agent last read it, and when it first read it
	// so: its expiry is counted on this agent's clock (see expiresAt).
	sighting leaseSighting
}

// leaseSighting is a version of the Lease object and when this agent first read it.
type leaseSighting struct {
	resourceVersion string
	at              time.Time
}

// TryAcquire takes the lease if nobody holds it, its holder let it expire, or it is already
// ours. It returns the current holder when someone else has it. Two agents racing for it are
// ordered by the apiserver: the loser gets a conflict and reports the lease as busy.
func (l *Lease) TryAcquire(ctx context.Context, duration time.Duration) (bool, string, error) {
	ok, busy, err := l.tryAcquire(ctx, duration)
	return ok, busy.holder, err
}

// busyLease is who holds the lease, and until when unless renewed (zero when unknown).
type busyLease struct {
	holder  string
	expires time.Time
}

// tryAcquire is TryAcquire, telling also when another holder's lease expires.
func (l *Lease) tryAcquire(ctx context.Context, duration time.Duration) (bool, busyLease, error) {
	now := metav1.NewMicroTime(l.Clock.Now())
	var lease coordinationv1.Lease
	err := l.Client.Get(ctx, client.ObjectKey{Namespace: l.Namespace, Name: l.Name}, &lease)
	if apierrors.IsNotFound(err) {
		lease = coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: l.Namespace, Name: l.Name},
			Spec:       l.spec(now, now, duration, 0),
		}
		err := l.Client.Create(ctx, &lease)
		if apierrors.IsAlreadyExists(err) {
			return false, busyLease{}, nil
		}
		return err == nil, busyLease{}, err
	}
	if err != nil {
		return false, busyLease{}, fmt.Errorf("getting lease %s/%s: %w", l.Namespace, l.Name, err)
	}
	holder := ptr.Deref(lease.Spec.HolderIdentity, "")
	if holder != "" && holder != l.Identity {
		if expires := l.expiresAt(&lease); !expires.IsZero() && now.Time.Before(expires) {
			return false, busyLease{holder: holder, expires: expires}, nil
		}
	}
	acquired := now
	transitions := ptr.Deref(lease.Spec.LeaseTransitions, 0)
	if holder == l.Identity && lease.Spec.AcquireTime != nil {
		acquired = *lease.Spec.AcquireTime
	} else {
		transitions++
	}
	lease.Spec = l.spec(acquired, now, duration, transitions)
	if err := l.Client.Update(ctx, &lease); err != nil {
		if apierrors.IsConflict(err) {
			return false, busyLease{holder: holder}, nil
		}
		return false, busyLease{holder: holder}, fmt.Errorf("taking lease %s/%s: %w", l.Namespace, l.Name, err)
	}
	return true, busyLease{}, nil
}

func (l *Lease) spec(acquired, renewed metav1.MicroTime, duration time.Duration, transitions int32) coordinationv1.LeaseSpec {
	return coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(l.Identity),
		LeaseDurationSeconds: ptr.To(int32(duration.Round(time.Second) / time.Second)),
		AcquireTime:          &acquired,
		RenewTime:            &renewed,
		LeaseTransitions:     ptr.To(transitions),
	}
}

// expiresAt is when another holder's lease expires unless it is renewed, on this agent's clock;
// zero when the lease says nothing. The holder wrote its renewal time with its own clock, which
// may run behind ours: the lease lasts its duration from when this agent first read the
// holder's last write, as client-go's leader election counts it, so no clock skew can end it
// early. The price: an agent that starts while a dead holder's lease is stale waits one more
// duration before it takes it over.
func (l *Lease) expiresAt(lease *coordinationv1.Lease) time.Time {
	end := expiry(lease)
	if end.IsZero() {
		return end
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sighting.resourceVersion != lease.ResourceVersion || lease.ResourceVersion == "" {
		l.sighting = leaseSighting{resourceVersion: lease.ResourceVersion, at: l.Clock.Now()}
	}
	return l.sighting.at.Add(end.Sub(lease.Spec.RenewTime.Time))
}

// expiry is when lease expires unless renewed, on the clock of the holder that wrote it; zero
// when it says nothing.
func expiry(lease *coordinationv1.Lease) time.Time {
	if lease.Spec.RenewTime == nil || lease.Spec.LeaseDurationSeconds == nil {
		return time.Time{}
	}
	return lease.Spec.RenewTime.Add(time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second)
}

// Renew extends a lease we hold.
func (l *Lease) Renew(ctx context.Context, duration time.Duration) error {
	ok, holder, err := l.TryAcquire(ctx, duration)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("lease %s/%s is held by %s", l.Namespace, l.Name, holder)
	}
	return nil
}

// ReleaseAfter keeps the lease we hold for d from now, without renewing it after that, so that
// nobody else takes it before d has passed; it releases it at once when d is not positive. It
// only shortens: a lease that ends within d already, or has ended, is left as it is. The
// wait survives a restart of any agent: it is in the Lease, not in memory.
func (l *Lease) ReleaseAfter(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return l.Release(ctx)
	}
	var lease coordinationv1.Lease
	if err := l.Client.Get(ctx, client.ObjectKey{Namespace: l.Namespace, Name: l.Name}, &lease); err != nil {
		return client.IgnoreNotFound(err)
	}
	if ptr.Deref(lease.Spec.HolderIdentity, "") != l.Identity {
		return nil
	}
	if end := expiry(&lease); end.IsZero() || !l.Clock.Now().Add(d).Before(end) {
		return nil // it ends within d already: never extend it
	}
	// Whole seconds, rounded up: never shorter than d.
	seconds := int32((d + time.Second - 1) / time.Second)
	lease.Spec.RenewTime = ptr.To(metav1.NewMicroTime(l.Clock.Now()))
	lease.Spec.LeaseDurationSeconds = ptr.To(seconds)
	if err := l.Client.Update(ctx, &lease); err != nil {
		return fmt.Errorf("keeping lease %s/%s for %s: %w", l.Namespace, l.Name, d, err)
	}
	return nil
}

// Release gives the lease up if we hold it.
func (l *Lease) Release(ctx context.Context) error {
	var lease coordinationv1.Lease
	if err := l.Client.Get(ctx, client.ObjectKey{Namespace: l.Namespace, Name: l.Name}, &lease); err != nil {
		return client.IgnoreNotFound(err)
	}
	if ptr.Deref(lease.Spec.HolderIdentity, "") != l.Identity {
		return nil
	}
	lease.Spec.HolderIdentity = nil
	lease.Spec.AcquireTime = nil
	lease.Spec.RenewTime = nil
	if err := l.Client.Update(ctx, &lease); err != nil {
		return fmt.Errorf("releasing lease %s/%s: %w", l.Namespace, l.Name, err)
	}
	return nil
}
