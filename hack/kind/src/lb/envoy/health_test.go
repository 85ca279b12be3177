package main

import (
	"testing"
	"time"
)

type step struct {
	o           outcome
	want        transition
	wantHealthy bool
}

func run(t *testing.T, h hostHealth, healthyThreshold, unhealthyThreshold uint32, steps []step) {
	t.Helper()
	for i, s := range steps {
		got := h.record(s.o, healthyThreshold, unhealthyThreshold)
		if got != s.want || h.healthy != s.wantHealthy {
			t.Fatalf("step %d (%v): transition %v healthy %v, want %v healthy %v", i, s.o, got, h.healthy, s.want, s.wantHealthy)
		}
	}
}

func TestNewHostState(t *testing.T) {
	if newHostHealth(true).healthy {
		t.Error("a new host of a health-checked cluster must start unhealthy")
	}
	if !newHostHealth(false).healthy {
		t.Error("a host of a cluster without health checks is healthy")
	}
}

// kind: healthy_threshold 1, unhealthy_threshold 2.
func TestHealthKindThresholds(t *testing.T) {
	t.Run("first check passes", func(t *testing.T) {
		run(t, newHostHealth(true), 1, 2, []step{{passed, changed, true}, {passed, unchanged, true}})
	})
	t.Run("first check fails, then passes", func(t *testing.T) {
		run(t, newHostHealth(true), 1, 2, []step{{networkFailure, unchanged, false}, {passed, changed, true}})
	})
	t.Run("two network failures in a row", func(t *testing.T) {
		run(t, newHostHealth(true), 1, 2, []step{
			{passed, changed, true},
			{networkFailure, pending, true}, // still gets traffic
			{networkFailure, changed, false},
			{networkFailure, unchanged, false},
			{passed, changed, true},
		})
	})
	t.Run("timeouts count as network failures", func(t *testing.T) {
		run(t, newHostHealth(true), 1, 2, []step{{passed, changed, true}, {timedOut, pending, true}, {networkFailure, changed, false}})
	})
	t.Run("a pass resets the failure count", func(t *testing.T) {
		run(t, newHostHealth(true), 1, 2, []step{
			{passed, changed, true},
			{networkFailure, pending, true},
			{passed, unchanged, true},
			{networkFailure, pending, true},
			{timedOut, changed, false},
		})
	})
	t.Run("a bad status ejects at once", func(t *testing.T) {
		run(t, newHostHealth(true), 1, 2, []step{{passed, changed, true}, {badStatus, changed, false}})
	})
}

func TestHealthHigherHealthyThreshold(t *testing.T) {
	run(t, newHostHealth(true), 3, 2, []step{
		{networkFailure, unchanged, false}, // the first check fails
		{passed, pending, false},
		{passed, pending, false},
		{badStatus, unchanged, false}, // resets the passes
		{passed, pending, false},
		{passed, pending, false},
		{passed, changed, true},
	})
	// The first check of a host marks it healthy whatever the threshold.
	run(t, newHostHealth(true), 3, 2, []step{{passed, changed, true}})
}

func TestNextInterval(t *testing.T) {
	hc := &healthConfig{
		interval: 2 * time.Second, noTrafficInterval: 3 * time.Second, noTrafficHealthyInterval: 4 * time.Second,
		unhealthyInterval: 5 * time.Second, unhealthyEdgeInterval: 6 * time.Second, healthyEdgeInterval: 7 * time.Second,
	}
	for _, tc := range []struct {
		o          outcome
		t          transition
		hadTraffic bool
		want       time.Duration
	}{
		{passed, unchanged, false, 4 * time.Second},
		{passed, changed, false, 4 * time.Second},
		{passed, pending, false, 3 * time.Second},
		{networkFailure, pending, false, 3 * time.Second},
		{badStatus, changed, false, 3 * time.Second},
		{passed, unchanged, true, 2 * time.Second},
		{passed, changed, true, 2 * time.Second},
		{passed, pending, true, 7 * time.Second},
		{networkFailure, pending, true, 6 * time.Second},
		{networkFailure, changed, true, 5 * time.Second},
		{timedOut, unchanged, true, 5 * time.Second},
	} {
		if got := hc.nextInterval(tc.o, tc.t, tc.hadTraffic); got != tc.want {
			t.Errorf("%v %v traffic=%v: %v, want %v", tc.o, tc.t, tc.hadTraffic, got, tc.want)
		}
	}
}
