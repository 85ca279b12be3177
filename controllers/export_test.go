package controllers

import (
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/internal/inforce"
)

// NewPolicyReconcilerReading builds a PolicyReconciler whose revisions come from the given
// cached and live readers, for tests that give it a stale cache, with the default caps.
func NewPolicyReconcilerReading(c client.Client, cached, live client.Reader, clk clock.PassiveClock, recorder events.EventRecorder, namespace string) *PolicyReconciler {
	return &PolicyReconciler{
		Client: c, Recorder: recorder, Clock: clk,
		Namespace: namespace, HistoryLimit: 10,
		MaxPolicyRules: DefaultMaxPolicyRules, MaxPolicyBytes: DefaultMaxPolicyBytes,
		revisions: newRevisionStore(cached, live, namespace), verdicts: newVerdictCache(),
		decisions: newDecisionStore(), memo: inforce.NewMemo(),
		warned: map[types.UID]string{}, findings: map[string]bool{},
	}
}
