package agent

import (
	"testing"
	"time"
)

func TestNewFillsInTheDefaults(t *testing.T) {
	r := &Rollout{}
	a := New(Options{NodeName: "cp-1", Rollout: r})
	if a.resync != time.Minute || a.retry != 10*time.Second || a.namespace != DefaultNamespace {
		t.Errorf("resync %s, retry %s, namespace %q; want 1m0s, 10s, %q", a.resync, a.retry, a.namespace, DefaultNamespace)
	}
	if a.wake == nil {
		t.Error("no wake channel: a change of the singleton could not start a pass")
	}
	if r.Progress == nil {
		t.Error("the rollout's progress is not reported")
	}
	a = New(Options{Namespace: "other", Resync: time.Second, Retry: time.Millisecond, Rollout: r})
	if a.resync != time.Second || a.retry != time.Millisecond || a.namespace != "other" {
		t.Errorf("resync %s, retry %s, namespace %q; want the given 1s, 1ms, other", a.resync, a.retry, a.namespace)
	}
}
