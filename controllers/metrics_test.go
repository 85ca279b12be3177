package controllers

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// rolloutSamples is the count and sum of kaudit_node_rollout_duration_seconds for result.
func rolloutSamples(t *testing.T, result string) (uint64, float64) {
	t.Helper()
	var m dto.Metric
	if err := nodeRolloutDuration.WithLabelValues(result).(prometheus.Histogram).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

func TestNodeRolloutsObservesEachNodeAndRevisionOnce(t *testing.T) {
	type samples struct {
		count uint64
		sum   float64
	}
	read := func() map[string]samples {
		out := map[string]samples{}
		for _, result := range rolloutResults {
			c, s := rolloutSamples(t, result)
			out[result] = samples{c, s}
		}
		return out
	}
	entry := func(name string, applied int64, phase v1alpha1.NodePhase, seconds int64) v1alpha1.NodeStatus {
		e := v1alpha1.NodeStatus{Name: name, AppliedRevision: ptr.To(applied), Phase: phase, Message: string(phase)}
		if seconds > 0 {
			e.LastRolloutSeconds = ptr.To(seconds)
		}
		return e
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		name    string
		entries []v1alpha1.NodeStatus
		desired int64
		at      time.Duration
		want    map[string]samples // added by this step
	}{
		{name: "results found at start were perhaps observed before a restart",
			entries: []v1alpha1.NodeStatus{entry("a", 1, v1alpha1.NodeApplied, 42)}, desired: 1},
		{name: "b starts a rollout",
			entries: []v1alpha1.NodeStatus{entry("a", 1, v1alpha1.NodeApplied, 42), entry("b", 1, v1alpha1.NodeRollingOut, 0)}, desired: 2, at: time.Second},
		{name: "b applied: the agent's length of the rollout",
			entries: []v1alpha1.NodeStatus{entry("a", 1, v1alpha1.NodeApplied, 42), entry("b", 2, v1alpha1.NodeApplied, 50)}, desired: 2, at: time.Minute,
			want: map[string]samples{"applied": {1, 50}}},
		{name: "the same result again",
			entries: []v1alpha1.NodeStatus{entry("a", 1, v1alpha1.NodeApplied, 42), entry("b", 2, v1alpha1.NodeApplied, 50)}, desired: 2, at: 2 * time.Minute},
		{name: "a starts a rollout of 3",
			entries: []v1alpha1.NodeStatus{entry("a", 1, v1alpha1.NodeRollingOut, 42), entry("b", 2, v1alpha1.NodeApplied, 50)}, desired: 3, at: 10 * time.Minute},
		{name: "a rolled back: from when the manager saw it rolling out",
			entries: []v1alpha1.NodeStatus{entry("a", 1, v1alpha1.NodeRolledBack, 42), entry("b", 2, v1alpha1.NodeApplied, 50)}, desired: 3, at: 10*time.Minute + 90*time.Second,
			want: map[string]samples{"rolled_back": {1, 90}}},
		{name: "a's entry changes, its result of revision 3 does not",
			entries: []v1alpha1.NodeStatus{{Name: "a", AppliedRevision: ptr.To[int64](1), Phase: v1alpha1.NodeRolledBack, Message: "other"}, entry("b", 2, v1alpha1.NodeApplied, 50)}, desired: 3, at: 11 * time.Minute},
		{name: "a fails revision 4 without the manager seeing it start: no start, nothing observed",
			entries: []v1alpha1.NodeStatus{entry("a", 1, v1alpha1.NodeFailed, 42), entry("b", 2, v1alpha1.NodeApplied, 50)}, desired: 4, at: 12 * time.Minute},
		{name: "c starts a rollout",
			entries: []v1alpha1.NodeStatus{entry("a", 1, v1alpha1.NodeFailed, 42), entry("b", 2, v1alpha1.NodeApplied, 50), entry("c", 2, v1alpha1.NodeRollingOut, 0)}, desired: 4, at: 12*time.Minute + time.Second},
		{name: "b's and c's entries are dropped",
			entries: []v1alpha1.NodeStatus{entry("a", 1, v1alpha1.NodeFailed, 42)}, desired: 4, at: 13 * time.Minute},
		{name: "b is back: observed again; c is back failed, and its start was forgotten with its entry",
			entries: []v1alpha1.NodeStatus{entry("a", 1, v1alpha1.NodeFailed, 42), entry("b", 2, v1alpha1.NodeApplied, 50), entry("c", 2, v1alpha1.NodeFailed, 0)}, desired: 4, at: 14 * time.Minute,
			want: map[string]samples{"applied": {1, 50}}},
	}
	var rollouts nodeRollouts
	for _, s := range steps {
		before := read()
		rollouts.observe(s.entries, ptr.To(s.desired), start.Add(s.at))
		after := read()
		for _, result := range rolloutResults {
			got := samples{after[result].count - before[result].count, after[result].sum - before[result].sum}
			if got != s.want[result] {
				t.Errorf("%s: %s added %+v, want %+v", s.name, result, got, s.want[result])
			}
		}
	}
}

func TestModuleStateByTheAcceptedCondition(t *testing.T) {
	for _, tc := range []struct {
		status metav1.ConditionStatus
		reason string
		want   string
	}{
		{metav1.ConditionTrue, v1alpha1.ReasonValid, moduleAccepted},
		{metav1.ConditionTrue, v1alpha1.ReasonDisabled, moduleDisabled},
		{metav1.ConditionFalse, v1alpha1.ReasonNamespacedModulesDisabled, moduleDisabled},
		{metav1.ConditionFalse, v1alpha1.ReasonInvalid, moduleRejected},
		{metav1.ConditionFalse, v1alpha1.ReasonGuardrailViolation, moduleRejected},
		{metav1.ConditionFalse, v1alpha1.ReasonAboveCap, moduleRejected},
		{metav1.ConditionFalse, v1alpha1.ReasonLowersLogging, moduleRejected},
	} {
		got, ok := moduleState([]metav1.Condition{{Type: v1alpha1.ConditionAccepted, Status: tc.status, Reason: tc.reason}})
		if !ok || got != tc.want {
			t.Errorf("Accepted %s %s: state %q (%v), want %q", tc.status, tc.reason, got, ok, tc.want)
		}
	}
	if got, ok := moduleState(nil); ok {
		t.Errorf("no Accepted condition: state %q, want none: the manager has not decided yet", got)
	}
}
