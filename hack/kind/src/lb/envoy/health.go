package main

import "time"

// outcome is the result of one health check, in envoy's failure types.
type outcome int

const (
	passed outcome = iota
	// networkFailure: connect refused or reset, TLS failure, connection
	// closed before a response (envoy's NETWORK).
	networkFailure
	// timedOut: no complete response within the check's timeout (NETWORK_TIMEOUT).
	timedOut
	// badStatus: a response outside the expected statuses, 200 (ACTIVE). Envoy
	// marks a healthy host unhealthy on the first one, ignoring unhealthy_threshold.
	badStatus
)

func (o outcome) String() string {
	switch o {
	case passed:
		return "PASSED"
	case networkFailure:
		return "NETWORK"
	case timedOut:
		return "NETWORK_TIMEOUT"
	case badStatus:
		return "ACTIVE"
	}
	return "UNKNOWN"
}

// transition says what a check did to a host's health.
type transition int

const (
	unchanged transition = iota
	// pending: the check disagreed with the host's state but a threshold is not reached yet.
	pending
	changed
)

// hostHealth is envoy's active health state of one host
// (ActiveHealthCheckSession::handleSuccess and setUnhealthy).
type hostHealth struct {
	healthy bool
	checked bool // at least one check completed (envoy's !first_check_)
	// consecutive passes while unhealthy, failures while healthy
	passes, failures uint32
	lastOutcome      outcome
}

// newHostHealth is the state of a host that just appeared: with active
// health checking envoy starts it unhealthy (FAILED_ACTIVE_HC) and sends it no
// traffic until a check passes; without, it is healthy for good.
func newHostHealth(activeChecks bool) hostHealth {
	return hostHealth{healthy: !activeChecks}
}

// record applies one check's outcome.
func (h *hostHealth) record(o outcome, healthyThreshold, unhealthyThreshold uint32) transition {
	first := !h.checked
	h.checked = true
	h.lastOutcome = o
	if o == passed {
		h.failures = 0
		if h.healthy {
			return unchanged
		}
		// The first check of a host marks it healthy at once, whatever the threshold.
		h.passes++
		if first || h.passes == healthyThreshold {
			h.healthy, h.passes = true, 0
			return changed
		}
		return pending
	}
	h.passes = 0
	if !h.healthy {
		return unchanged
	}
	h.failures++
	if o == badStatus || h.failures == unhealthyThreshold {
		h.healthy, h.failures = false, 0
		return changed
	}
	return pending
}

// nextInterval is the wait after a check before the next one
// (HealthCheckerImplBase::interval). Until the cluster has carried traffic
// envoy checks at no_traffic_interval; after that at interval, or the
// unhealthy/edge intervals (all default to interval). The wait starts when a
// check completes, so a check that times out delays the next by its timeout.
func (c *healthConfig) nextInterval(o outcome, t transition, hadTraffic bool) time.Duration {
	if !hadTraffic {
		if o == passed && t != pending {
			return c.noTrafficHealthyInterval
		}
		return c.noTrafficInterval
	}
	if o != passed {
		if t == pending {
			return c.unhealthyEdgeInterval
		}
		return c.unhealthyInterval
	}
	if t == pending {
		return c.healthyEdgeInterval
	}
	return c.interval
}
