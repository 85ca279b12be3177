package controllers

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

func TestRetryDelayIsCappedThroughAnAPIServerRestart(t *testing.T) {
	limiter := controllerOptions().RateLimiter
	req := reconcile.Request{NamespacedName: types.NamespacedName{Name: "cluster"}}
	// About a minute of failures: the delays grow from 5 ms and stop at the cap.
	var last float64
	for i := 0; i < 30; i++ {
		d := limiter.When(req)
		if d > maxRetryDelay {
			t.Fatalf("failure %d: retry after %s, more than %s", i+1, d, maxRetryDelay)
		}
		last = d.Seconds()
	}
	if last != maxRetryDelay.Seconds() {
		t.Errorf("after 30 failures the retry delay is %.3fs, want the cap %s", last, maxRetryDelay)
	}
	limiter.Forget(req)
	if d := limiter.When(req); d > maxRetryDelay/100 {
		t.Errorf("after a success the first retry waits %s", d)
	}
}
