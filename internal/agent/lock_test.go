package agent

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestASecondAgentOnANodeWaitsForTheFirstToExit(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	first, err := tn.files(OSFS{}).LockStateDir(context.Background(), clock.RealClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fake := clocktesting.NewFakeClock(time.Now())
	waiting := make(chan string, 1)
	locked := make(chan *StateLock, 1)
	go func() {
		l, err := tn.files(OSFS{}).LockStateDir(context.Background(), fake, func(_, holder string) { waiting <- holder })
		if err != nil {
			t.Error(err)
		}
		locked <- l
	}()
	if holder := <-waiting; !strings.Contains(holder, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("the waiting agent was told the holder is %q", holder)
	}
	for !fake.HasWaiters() {
		runtime.Gosched()
	}
	fake.Step(time.Second)
	for !fake.HasWaiters() {
		runtime.Gosched()
	}
	select {
	case <-locked:
		t.Fatal("a second agent took the lock while the first holds it")
	default:
	}
	if err := first.Unlock(); err != nil {
		t.Fatal(err)
	}
	fake.Step(time.Second)
	second := <-locked
	if second == nil {
		t.Fatal("no lock")
	}
	_ = second.Unlock()
}

func TestLockStateDirEndsWithItsContext(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	first, err := tn.files(OSFS{}).LockStateDir(context.Background(), clock.RealClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Unlock() }()
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := tn.files(OSFS{}).LockStateDir(ctx, clock.RealClock{}, func(string, string) { cancel() }); err != context.Canceled {
		t.Errorf("LockStateDir() = %v, want %v", err, context.Canceled)
	}
}

func TestLockStateDirRefusesALinkAndAMissingDirectory(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	symlink(t, plantSecret(t, tn), tn.local(DefaultStateDir+"/"+lockFile))
	if _, err := tn.files(OSFS{}).LockStateDir(context.Background(), clock.RealClock{}, nil); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("LockStateDir() with a link = %v", err)
	}
	if err := os.RemoveAll(tn.local(DefaultStateDir)); err != nil {
		t.Fatal(err)
	}
	if _, err := tn.files(OSFS{}).LockStateDir(context.Background(), clock.RealClock{}, nil); err == nil || !strings.Contains(err.Error(), "state directory /etc/kubernetes/kaudit is missing") {
		t.Errorf("LockStateDir() without the directory = %v", err)
	}
}
