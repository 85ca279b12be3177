package controllers

import (
	"time"

	"golang.org/x/time/rate"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// maxRetryDelay caps the retry backoff of both controllers. On a single control plane every
// rollout takes kube-apiserver away for about a minute, and its Service address for a while
// longer; with controller-runtime's cap (1000 s) the failures of that minute grew the delay to
// 40-80 s, and the singleton turned Available that long after the policy was in effect.
const maxRetryDelay = 10 * time.Second

// controllerOptions are the options of both controllers: the default retry limits, but
// capped at maxRetryDelay per object.
func controllerOptions() controller.Options {
	return controller.Options{RateLimiter: workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](5*time.Millisecond, maxRetryDelay),
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)}
}
