package auditwatch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kaudit/kaudit/internal/attribution"
	"github.com/kaudit/kaudit/internal/logfollow"
)

const policyV1 = `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
# module secrets, rule 0
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets"]
# default: requests no module matched (AuditPolicy cluster spec.defaultLevel)
- level: Metadata
`

// policyV2 records secrets at Request.
var policyV2 = strings.Replace(policyV1, "- level: Metadata\n  resources", "- level: Request\n  resources", 1)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func event(resource string, at time.Time, level string) string {
	return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":%q,"auditID":"x","stage":"ResponseComplete","requestURI":"/api/v1/%s","verb":"get","user":{"username":"u"},"objectRef":{"resource":%q,"apiVersion":"v1"},"stageTimestamp":%q}`+"\n",
		level, resource, resource, at.Format(time.RFC3339Nano))
}

type node struct {
	t     *testing.T
	dir   string
	clock *clocktesting.FakeClock
}

func newNode(t *testing.T) *node {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "kaudit"), 0o700); err != nil {
		t.Fatal(err)
	}
	return &node{t: t, dir: dir, clock: clocktesting.NewFakeClock(t0.Add(time.Hour))}
}

func (n *node) write(lines ...string) {
	n.t.Helper()
	f, err := os.OpenFile(filepath.Join(n.dir, "audit.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		if _, err := f.WriteString(l); err != nil {
			n.t.Fatal(err)
		}
	}
}

func (n *node) watcher(history ...attribution.Revision) *Watcher {
	n.t.Helper()
	w, err := New(Options{
		Follow: logfollow.Options{Path: filepath.Join(n.dir, "audit.log"), CheckpointDir: filepath.Join(n.dir, "kaudit")},
		Clock:  n.clock,
	}, history)
	if err != nil {
		n.t.Fatal(err)
	}
	return w
}

// readAll reads until the log has nothing more, then commits as Run does once the interval
// has passed.
func (n *node) readAll(w *Watcher) {
	for w.readOnce() {
	}
	n.clock.Step(DefaultCommitInterval)
	w.readOnce()
}

func wantMetrics(t *testing.T, w *Watcher, want string, names ...string) {
	t.Helper()
	if err := testutil.CollectAndCompare(w, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
}

const eventsHelp = `# HELP kaudit_audit_events_total Audit events the node's kube-apiserver wrote to its log, by the kaudit revision in force when it wrote them, the module and rule of that revision's policy that decided them (module and rule "default" for the catch-all rule), the rule's level and the event's stage.
# TYPE kaudit_audit_events_total counter
`

func TestMetricsFollowNamingConventions(t *testing.T) {
	n := newNode(t)
	n.write(event("secrets", t0, "Metadata"))
	w := n.watcher(attribution.Revision{Number: 1, Policy: []byte(policyV1), Started: t0})
	n.readAll(w)
	problems, err := testutil.CollectAndLint(w)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestMetricsContinueAcrossRestartsWithoutCountingTwice(t *testing.T) {
	n := newNode(t)
	history := []attribution.Revision{{Number: 1, Policy: []byte(policyV1), Started: t0}}
	n.write(event("secrets", t0, "Metadata"), event("pods", t0, "Metadata"))
	w := n.watcher(history...)
	wantMetrics(t, w, "", "kaudit_audit_events_total") // nothing committed yet
	n.readAll(w)
	wantMetrics(t, w, eventsHelp+`kaudit_audit_events_total{level="Metadata",module="default",revision="1",rule="default",stage="ResponseComplete"} 1
kaudit_audit_events_total{level="Metadata",module="secrets",revision="1",rule="0",stage="ResponseComplete"} 1
`, "kaudit_audit_events_total")

	// Read but not committed when the agent stops: read again, counted once.
	n.write(event("secrets", t0.Add(time.Second), "Metadata"))
	for w.readOnce() {
	}
	w = n.watcher(history...)
	n.readAll(w)
	wantMetrics(t, w, eventsHelp+`kaudit_audit_events_total{level="Metadata",module="default",revision="1",rule="default",stage="ResponseComplete"} 1
kaudit_audit_events_total{level="Metadata",module="secrets",revision="1",rule="0",stage="ResponseComplete"} 2
`, "kaudit_audit_events_total")

	// A clean stop commits.
	n.write(event("pods", t0.Add(2*time.Second), "Metadata"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	n.write(event("pods", t0.Add(3*time.Second), "Metadata"))
	w = n.watcher(history...)
	n.readAll(w)
	wantMetrics(t, w, eventsHelp+`kaudit_audit_events_total{level="Metadata",module="default",revision="1",rule="default",stage="ResponseComplete"} 3
kaudit_audit_events_total{level="Metadata",module="secrets",revision="1",rule="0",stage="ResponseComplete"} 2
`, "kaudit_audit_events_total")
}

func TestPauseHoldsEventsUntilTheNewRevisionIsKnown(t *testing.T) {
	n := newNode(t)
	w := n.watcher(attribution.Revision{Number: 1, Policy: []byte(policyV1), Started: t0})
	n.write(event("secrets", t0, "Metadata"))
	n.readAll(w)

	// The agent pauses, changes the policy; the old apiserver writes, the new one starts at
	// restart and writes; the agent learns when it started and resumes.
	w.Pause()
	restart := t0.Add(time.Minute)
	n.write(event("secrets", restart.Add(-time.Second), "Metadata"), event("secrets", restart, "Request"))
	n.readAll(w)
	wantMetrics(t, w, eventsHelp+`kaudit_audit_events_total{level="Metadata",module="secrets",revision="1",rule="0",stage="ResponseComplete"} 1
`, "kaudit_audit_events_total")
	if err := w.SetRevisions([]attribution.Revision{{Number: 1, Policy: []byte(policyV1), Started: t0}, {Number: 2, Policy: []byte(policyV2), Started: restart}}); err != nil {
		t.Fatal(err)
	}
	w.Resume()
	n.readAll(w)
	wantMetrics(t, w, eventsHelp+`kaudit_audit_events_total{level="Metadata",module="secrets",revision="1",rule="0",stage="ResponseComplete"} 2
kaudit_audit_events_total{level="Request",module="secrets",revision="2",rule="0",stage="ResponseComplete"} 1
`, "kaudit_audit_events_total")
	wantMetrics(t, w, `# HELP kaudit_audit_events_level_mismatch_total Audit events written at another level than the rule of the revision credited with them decides: the apiserver was not running that revision's policy.
# TYPE kaudit_audit_events_level_mismatch_total counter
`, "kaudit_audit_events_level_mismatch_total")
}

func TestMetricsOfTheFollower(t *testing.T) {
	n := newNode(t)
	n.write(event("secrets", t0, "Metadata"), "not json\n", strings.Repeat("x", 5<<20)+"\n", `{"kind":"Event","apiVersion":"audit.k8s.io/v1"}`+"\n", "partial")
	w := n.watcher(attribution.Revision{Number: 1, Policy: []byte(policyV1), Started: t0})
	n.readAll(w)
	wantMetrics(t, w, `# HELP kaudit_audit_log_lag_seconds Seconds between now and the time of the latest audit event counted. It also grows while the apiserver writes nothing; kaudit_audit_log_unread_bytes tells what is waiting.
# TYPE kaudit_audit_log_lag_seconds gauge
kaudit_audit_log_lag_seconds 3605
# HELP kaudit_audit_log_lines_skipped_total Lines of the audit log that are not audit events: not JSON (malformed), JSON of another kind or version (not_event), longer than the follower reads (too_long), or the unfinished last line of a rotated file (incomplete).
# TYPE kaudit_audit_log_lines_skipped_total counter
kaudit_audit_log_lines_skipped_total{reason="incomplete"} 0
kaudit_audit_log_lines_skipped_total{reason="malformed"} 1
kaudit_audit_log_lines_skipped_total{reason="not_event"} 0
kaudit_audit_log_lines_skipped_total{reason="too_long"} 1
# HELP kaudit_audit_log_unread_bytes Bytes written to the audit log and not read yet, in the file being read and the uncompressed rotated files after it.
# TYPE kaudit_audit_log_unread_bytes gauge
kaudit_audit_log_unread_bytes 7
# HELP kaudit_audit_events_unattributed_total Audit events credited to no rule: without a time (no_time), written when no revision kaudit keeps was in force (no_revision), or matched by no rule of the revision in force, which therefore did not write them (no_rule).
# TYPE kaudit_audit_events_unattributed_total counter
kaudit_audit_events_unattributed_total{reason="no_revision"} 0
kaudit_audit_events_unattributed_total{reason="no_rule"} 0
kaudit_audit_events_unattributed_total{reason="no_time"} 1
`, "kaudit_audit_log_lag_seconds", "kaudit_audit_log_lines_skipped_total", "kaudit_audit_log_unread_bytes", "kaudit_audit_events_unattributed_total")
}

// TestRunCountsWhileTheAgentPausesAndPrometheusScrapes runs the watcher as the agent does, with
// Pause, SetRevisions, Resume and scrapes from other goroutines (go test -race checks them).
func TestRunCountsWhileTheAgentPausesAndPrometheusScrapes(t *testing.T) {
	n := newNode(t)
	history := []attribution.Revision{{Number: 1, Policy: []byte(policyV1), Started: t0}}
	w := n.watcher(history...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	const events = 40
	for i := range events {
		n.write(event("secrets", t0.Add(time.Duration(i)*time.Second), "Metadata"))
		if i%10 == 0 {
			w.Pause()
			if err := w.SetRevisions(history); err != nil {
				t.Fatal(err)
			}
			w.Resume()
		}
		n.clock.Step(DefaultCommitInterval)
		testutil.CollectAndCount(w)
	}
	counted := func() int64 {
		var sum int64
		for _, r := range w.published.Load().Rules {
			sum += r.Events
		}
		return sum
	}
	for deadline := time.Now().Add(30 * time.Second); counted() < events; n.clock.Step(DefaultCommitInterval) {
		if time.Now().After(deadline) {
			t.Fatalf("%d events counted after 30 s, want %d", counted(), events)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := counted(); got != events {
		t.Fatalf("%d events counted, want %d", got, events)
	}
}
