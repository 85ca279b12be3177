package main

import (
	"encoding/json"
	"io"
	"log"
	"os"
	"sync"
	"time"
)

// eventLog writes health check events as JSON lines to the health check's
// event_log_path (kind: /dev/stdout, so `docker logs` of the load balancer
// shows when each apiserver was ejected and added back). The fields follow
// envoy's HealthCheckEvent loosely: the event kind, the host, and for failures
// envoy's failure type.
type eventLog struct {
	mu      sync.Mutex
	writers map[string]io.Writer // by path
}

func newEventLog() *eventLog { return &eventLog{writers: map[string]io.Writer{}} }

type healthEvent struct {
	Timestamp   string `json:"timestamp"`
	Cluster     string `json:"cluster_name"`
	Host        string `json:"host"`
	Hostname    string `json:"hostname"`
	Event       string `json:"event"`
	FailureType string `json:"failure_type,omitempty"`
	FirstCheck  bool   `json:"first_check,omitempty"`
	Detail      string `json:"detail,omitempty"`
}

// healthCheck logs one check the way envoy decides to: a host turning
// healthy (add_healthy_event) or unhealthy (eject_unhealthy_event) always;
// a failure (health_check_failure_event) when it is the first check or
// always_log_health_check_failures; a pass that changes nothing
// (successful_health_check_event) only with always_log_health_check_success.
func (l *eventLog) healthCheck(cluster string, h *host, o outcome, t transition, first bool, detail error, hc *healthConfig) {
	if hc.eventLogPath == "" {
		return
	}
	e := healthEvent{Cluster: cluster, Host: h.addr, Hostname: h.target.host}
	if detail != nil {
		e.Detail = detail.Error()
	}
	if o == passed {
		switch {
		case t == changed:
			e.Event, e.FirstCheck = "add_healthy_event", first
		case hc.logSuccesses:
			e.Event = "successful_health_check_event"
		default:
			return
		}
		l.write(hc.eventLogPath, e)
		return
	}
	e.FailureType = o.String()
	if t == changed {
		eject := e
		eject.Event = "eject_unhealthy_event"
		l.write(hc.eventLogPath, eject)
	}
	if first || hc.logFailures {
		e.Event, e.FirstCheck = "health_check_failure_event", first
		l.write(hc.eventLogPath, e)
	}
}

func (l *eventLog) write(path string, e healthEvent) {
	e.Timestamp = time.Now().UTC().Format(time.RFC3339Nano)
	b, err := json.Marshal(e)
	if err != nil {
		log.Printf("event log: %v", err)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.writers[path]
	if !ok {
		w = os.Stdout
		if path != "/dev/stdout" {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				log.Printf("event log %s: %v", path, err)
				return
			}
			w = f
		}
		l.writers[path] = w
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		log.Printf("event log %s: %v", path, err)
	}
}
