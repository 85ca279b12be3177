package controllers

import (
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// NewPolicyReconcilerReading builds a PolicyReconciler whose revisions come from the given
// cached and live readers, for tests that give it a stale cache.
func NewPolicyReconcilerReading(c client.Client, cached, live client.Reader, clk clock.PassiveClock, namespace string) *PolicyReconciler {
	return &PolicyReconciler{
		Client: c, Recorder: events.NewFakeRecorder(100), Clock: clk,
		Namespace: namespace, HistoryLimit: 10,
		revisions: newRevisionStore(cached, live, namespace), verdicts: newVerdictCache(),
	}
}
