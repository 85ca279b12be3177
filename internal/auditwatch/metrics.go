package auditwatch

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names and help texts. Counters continue across restarts of the agent (they are saved
// with the checkpoint), except the error counters.
var (
	eventsDesc = prometheus.NewDesc("kaudit_audit_events_total",
		"Audit events the node's kube-apiserver wrote to its log, by the kaudit revision in force when it wrote them, the module and rule of that revision's policy that decided them (module and rule \"default\" for the catch-all rule), the rule's level and the event's stage.",
		[]string{"revision", "module", "rule", "level", "stage"}, nil)
	bytesDesc = prometheus.NewDesc("kaudit_audit_event_bytes_total",
		"Bytes of the audit events counted in kaudit_audit_events_total, as written to the log (newline included).",
		[]string{"revision", "module", "rule", "level", "stage"}, nil)
	securityDesc = prometheus.NewDesc("kaudit_audit_security_events_total",
		"Security-relevant audit events written to the log, by category.",
		[]string{"category"}, nil)
	unattributedDesc = prometheus.NewDesc("kaudit_audit_events_unattributed_total",
		"Audit events credited to no rule: without a time (no_time), written when no revision kaudit keeps was in force (no_revision), or matched by no rule of the revision in force, which therefore did not write them (no_rule).",
		[]string{"reason"}, nil)
	mismatchDesc = prometheus.NewDesc("kaudit_audit_events_level_mismatch_total",
		"Audit events written at another level than the rule of the revision credited with them decides: the apiserver was not running that revision's policy.",
		[]string{"revision"}, nil)
	skippedDesc = prometheus.NewDesc("kaudit_audit_log_lines_skipped_total",
		"Lines of the audit log that are not audit events: not JSON (malformed), JSON of another kind or version (not_event), longer than the follower reads (too_long), or the unfinished last line of a rotated file (incomplete).",
		[]string{"reason"}, nil)
	lagDesc = prometheus.NewDesc("kaudit_audit_log_lag_seconds",
		"Seconds between now and the time of the latest audit event counted. It also grows while the apiserver writes nothing; kaudit_audit_log_unread_bytes tells what is waiting.",
		nil, nil)
	unreadDesc = prometheus.NewDesc("kaudit_audit_log_unread_bytes",
		"Bytes written to the audit log and not read yet, in the file being read and the uncompressed rotated files after it.",
		nil, nil)
	rotationsDesc = prometheus.NewDesc("kaudit_audit_log_rotations_total",
		"Times the audit log file was replaced by a new one (rotation).",
		nil, nil)
	truncationsDesc = prometheus.NewDesc("kaudit_audit_log_truncations_total",
		"Times the audit log file was truncated and read again from its start.",
		nil, nil)
	gapsDesc = prometheus.NewDesc("kaudit_audit_log_gaps_total",
		"Audit log files that were removed before they were read to their end: their remaining events were not counted.",
		nil, nil)
	errorsDesc = prometheus.NewDesc("kaudit_audit_log_errors_total",
		"Failures reading the audit log (read) or saving the checkpoint that the counts are saved with (checkpoint), since the agent started.",
		[]string{"operation"}, nil)
)

// Describe implements prometheus.Collector.
func (w *Watcher) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{eventsDesc, bytesDesc, securityDesc, unattributedDesc, mismatchDesc, skippedDesc, lagDesc, unreadDesc, rotationsDesc, truncationsDesc, gapsDesc, errorsDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the counts of the last commit and the follower's
// position now.
func (w *Watcher) Collect(ch chan<- prometheus.Metric) {
	c := w.published.Load()
	s := w.follower.Stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, r := range c.Rules {
		labels := []string{strconv.FormatInt(r.Revision, 10), r.Module, r.Rule, r.Level, r.Stage}
		counter(eventsDesc, r.Events, labels...)
		counter(bytesDesc, r.Bytes, labels...)
	}
	for _, sc := range c.Security {
		counter(securityDesc, sc.Events, sc.Category)
	}
	counter(unattributedDesc, c.NoTime, "no_time")
	counter(unattributedDesc, c.NoRevision, "no_revision")
	counter(unattributedDesc, c.NoRule, "no_rule")
	for _, m := range c.LevelMismatches {
		counter(mismatchDesc, m.Events, strconv.FormatInt(m.Revision, 10))
	}
	counter(skippedDesc, c.Malformed, "malformed")
	counter(skippedDesc, c.NotEvents, "not_event")
	counter(skippedDesc, s.LongLines, "too_long")
	counter(skippedDesc, s.IncompleteLines, "incomplete")
	if !c.Latest.IsZero() {
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, w.clock.Since(c.Latest).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(unreadDesc, prometheus.GaugeValue, float64(s.Unread))
	counter(rotationsDesc, s.Rotations)
	counter(truncationsDesc, s.Truncations)
	counter(gapsDesc, s.Gaps)
	counter(errorsDesc, w.readErrors.Load(), "read")
	counter(errorsDesc, w.checkpointErrors.Load(), "checkpoint")
}
