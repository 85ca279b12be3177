package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/logfollow"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/staticpod"
)

// secretsPolicy is a policy as kaudit renders it: one module's rule for secrets at level, and
// the catch-all rule.
func secretsPolicy(level string) string {
	return `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
# module secrets, rule 0
- level: ` + level + `
  resources:
  - group: ""
    resources: ["secrets"]
# default: requests no module matched (AuditPolicy cluster spec.defaultLevel)
- level: Metadata
`
}

// auditEvent is one line of kube-apiserver's audit log: a get of resource at level.
func auditEvent(resource string, at time.Time, level string) string {
	return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":%q,"auditID":"x","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/a/%s","verb":"get","user":{"username":"u"},"objectRef":{"resource":%q,"namespace":"a","apiVersion":"v1"},"stageTimestamp":%q}`+"\n",
		level, resource, resource, at.Format(time.RFC3339Nano))
}

// logNode is a testNode whose kube-apiserver writes an audit log, with a mirror pod that shows
// when the apiserver of each manifest annotation started.
type logNode struct {
	*testNode
	mu     sync.Mutex
	starts map[string]time.Time
	// mirrorErr, when set, is what reading the mirror pod fails with.
	mirrorErr error
}

func newLogNode(t *testing.T) *logNode {
	n := &logNode{testNode: newTestNode(t, "kubeadm-v1.33.yaml", true), starts: map[string]time.Time{}}
	if err := os.MkdirAll(n.local("/var/log/kubernetes/audit"), 0o755); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *logNode) mirrorPod(context.Context) (*corev1.Pod, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mirrorErr != nil {
		return nil, n.mirrorErr
	}
	b, err := os.ReadFile(n.manifest)
	if err != nil {
		return nil, err
	}
	ann, err := staticpod.Annotation(b, staticpod.AnnotationPolicyHash)
	if err != nil {
		return nil, err
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-apiserver-n", Annotations: map[string]string{staticpod.AnnotationPolicyHash: ann}}}
	if at, ok := n.starts[ann]; ok {
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: staticpod.APIServerContainer,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(at)}}}}
	}
	return pod, nil
}

// restarted makes the apiserver of the manifest as it is now start at at.
func (n *logNode) restarted(t *testing.T, at time.Time) {
	t.Helper()
	b, err := os.ReadFile(n.manifest)
	if err != nil {
		t.Fatal(err)
	}
	ann, err := staticpod.Annotation(b, staticpod.AnnotationPolicyHash)
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.starts[ann] = at
}

func (n *logNode) write(t *testing.T, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(n.local("/var/log/kubernetes/audit/audit.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.Join(lines, "")); err != nil {
		t.Fatal(err)
	}
}

func (n *logNode) auditLog() *AuditLog {
	return NewAuditLog(AuditLogOptions{Files: n.files(OSFS{}), MirrorPod: n.mirrorPod, Clock: clock.RealClock{},
		Retry: 20 * time.Millisecond, PollInterval: 5 * time.Millisecond, CommitInterval: 5 * time.Millisecond})
}

// run runs l until the test ends.
func runAuditLog(t *testing.T, l *AuditLog) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(logrContext(t))
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return ctx, sync.OnceFunc(stop)
}

func logrContext(t *testing.T) context.Context {
	return logr.NewContext(context.Background(), testr.New(t))
}

// rollOut applies policy as revision rev the way the agent does: paused from before the
// manifest changes until the new apiserver's start is known.
func (n *logNode) rollOut(t *testing.T, ctx context.Context, l *AuditLog, rev int64, policyText string, started time.Time, meanwhile ...string) {
	t.Helper()
	n.rollOutTo(t, ctx, l, rev, policyText, v1alpha1.NodeApplied, started, meanwhile...)
}

// rollOutTo is rollOut ending in phase: a rollout of a revision whose apiserver never gets
// ready ends RolledBack, and started is then when the previous revision's apiserver started
// again.
func (n *logNode) rollOutTo(t *testing.T, ctx context.Context, l *AuditLog, rev int64, policyText string, phase v1alpha1.NodePhase, started time.Time, meanwhile ...string) {
	t.Helper()
	tg := Target{Revision: rev, Policy: []byte(policyText), Flags: n.flags}
	h, err := policy.HashOf(tg.Policy)
	if err != nil {
		t.Fatal(err)
	}
	tg.Hash = h
	l.pause()
	kubelet := &fakeKubelet{tn: n.testNode}
	if phase == v1alpha1.NodeRolledBack {
		kubelet.bad = func(a string) bool { return strings.HasPrefix(a, policy.ShortHash(tg.Hash)) }
	}
	r := &Rollout{Files: n.files(OSFS{}), Health: kubelet, Clock: clock.RealClock{}}
	if res, err := r.Apply(ctx, tg, time.Second); err != nil || res.Phase != phase {
		t.Fatalf("Apply(revision %d) = %+v, %v", rev, res, err)
	}
	// What the new apiserver writes before the agent knows when it started waits for it.
	n.write(t, meanwhile...)
	time.Sleep(50 * time.Millisecond)
	n.restarted(t, started)
	l.sync(ctx)
}

// metrics gathers l's metrics as name{label="value",...} -> value.
func metrics(t *testing.T, l *AuditLog) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(l)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			sort.Strings(labels)
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			out[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}

// waitMetrics waits until l's metrics hold want.
func waitMetrics(t *testing.T, l *AuditLog, want map[string]float64) {
	t.Helper()
	var got map[string]float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		got = metrics(t, l)
		ok := true
		for k, v := range want {
			if got[k] != v {
				ok = false
			}
		}
		if ok {
			return
		}
	}
	var lines []string
	for k, v := range got {
		lines = append(lines, fmt.Sprintf("%s %v", k, v))
	}
	sort.Strings(lines)
	t.Fatalf("metrics never held %v; last:\n%s", want, strings.Join(lines, "\n"))
}

func secrets(rev int64, level string) string {
	return fmt.Sprintf(`kaudit_audit_events_total{level=%q,module="secrets",revision="%d",rule="0",stage="ResponseComplete"}`, level, rev)
}

func TestAuditLogCreditsEventsToTheRevisionWhoseAPIServerWroteThem(t *testing.T) {
	n := newLogNode(t)
	l := n.auditLog()
	ctx, stop := runAuditLog(t, l)
	// kubeadm's manifest has no --audit-log-path until the first rollout sets the managed flags.
	waitMetrics(t, l, map[string]float64{"kaudit_audit_log_followed{}": 0})

	t1 := time.Now().Add(-time.Hour).Truncate(time.Second)
	t2 := t1.Add(10 * time.Minute)
	n.rollOut(t, ctx, l, 2, secretsPolicy("Metadata"), t1)
	n.write(t,
		auditEvent("secrets", t1.Add(-time.Second), "Metadata"), // before kaudit's first apiserver
		auditEvent("secrets", t1.Add(time.Second), "Metadata"),
		auditEvent("pods", t1.Add(time.Second), "Metadata"),
		auditEvent("secrets", t2.Add(-time.Second), "Metadata"), // the old apiserver, still running during the rollout
	)
	waitMetrics(t, l, map[string]float64{
		"kaudit_audit_log_followed{}":                                  1,
		secrets(2, "Metadata"):                                         2,
		`kaudit_audit_events_unattributed_total{reason="no_revision"}`: 1,
		`kaudit_audit_security_events_total{category="R2"}`:            2,
	})

	n.rollOut(t, ctx, l, 3, secretsPolicy("Request"), t2, auditEvent("secrets", t2.Add(time.Second), "Request"))
	want := map[string]float64{
		secrets(2, "Metadata"): 2,
		secrets(3, "Request"):  1,
		`kaudit_audit_events_total{level="Metadata",module="default",revision="2",rule="default",stage="ResponseComplete"}`: 1,
		`kaudit_audit_security_events_total{category="R2"}`:                                                                 3,
	}
	waitMetrics(t, l, want)
	if got := metrics(t, l)[`kaudit_audit_events_level_mismatch_total{revision="2"}`]; got != 0 {
		t.Errorf("%v events credited to revision 2 at another level: the new apiserver's event was read before its revision was known", got)
	}
	for _, f := range []string{logfollow.CheckpointFile, revisionsFile} {
		if _, err := os.Stat(n.local(filepath.Join(DefaultStateDir, f))); err != nil {
			t.Errorf("%s is not in the state directory: %v", f, err)
		}
	}

	// A new agent resumes from the checkpoint and the saved history, without counting twice
	// and without the mirror pod.
	stop()
	n.mirrorErr = fmt.Errorf("the API is down")
	l = n.auditLog()
	ctx, _ = runAuditLog(t, l)
	l.sync(ctx)
	n.write(t, auditEvent("secrets", t2.Add(time.Minute), "Request"))
	want[secrets(3, "Request")] = 2
	want[`kaudit_audit_security_events_total{category="R2"}`] = 4
	waitMetrics(t, l, want)
}

func TestAuditLogWithoutALogFileLeavesTheAgentWorking(t *testing.T) {
	for name, flag := range map[string]string{
		"stdout":              "--audit-log-path=-",
		"directory unmounted": "--audit-log-path=/var/log/elsewhere/audit.log",
	} {
		t.Run(name, func(t *testing.T) {
			n := newLogNode(t)
			b := strings.Replace(string(n.original), "    - --advertise-address=10.0.0.10\n", "    - --advertise-address=10.0.0.10\n    - "+flag+"\n", 1)
			if err := os.WriteFile(n.manifest, []byte(b), 0o600); err != nil {
				t.Fatal(err)
			}
			l := n.auditLog()
			ctx, _ := runAuditLog(t, l)
			l.sync(ctx)
			time.Sleep(100 * time.Millisecond)
			got := metrics(t, l)
			if got["kaudit_audit_log_followed{}"] != 0 || len(got) != 1 {
				t.Errorf("metrics = %v, want only kaudit_audit_log_followed 0", got)
			}
		})
	}
}

func TestAuditLogCreditsEventsAfterARollbackToThePreviousRevision(t *testing.T) {
	n := newLogNode(t)
	l := n.auditLog()
	ctx, _ := runAuditLog(t, l)
	t1 := time.Now().Add(-time.Hour).Truncate(time.Second)
	t2, t3 := t1.Add(10*time.Minute), t1.Add(20*time.Minute)
	n.rollOut(t, ctx, l, 2, secretsPolicy("Metadata"), t1)
	n.write(t, auditEvent("secrets", t2.Add(-time.Second), "Metadata"))
	// Revision 3's apiserver never gets ready; the rollback's apiserver runs revision 2 again.
	n.rollOutTo(t, ctx, l, 3, secretsPolicy("Request"), v1alpha1.NodeRolledBack, t3, auditEvent("secrets", t3.Add(time.Second), "Metadata"))
	waitMetrics(t, l, map[string]float64{secrets(2, "Metadata"): 2})
	var history []inForce
	if b, err := os.ReadFile(n.local(filepath.Join(DefaultStateDir, revisionsFile))); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &history); err != nil {
		t.Fatal(err)
	}
	if len(history) != 2 || history[1].Revision != 2 || !history[1].Started.Equal(t3) || !strings.Contains(history[1].Annotation, "rollback") {
		t.Errorf("history after the rollback = %+v, want revision 2 again from %s under the rollback's annotation", history, t3)
	}
	got := metrics(t, l)
	for k, v := range got {
		if strings.Contains(k, `revision="3"`) || strings.HasPrefix(k, "kaudit_audit_events_level_mismatch_total") && v != 0 {
			t.Errorf("%s %v: after the rollback the events are revision 2's", k, v)
		}
	}
}

func TestAuditLogRecordsTheAppliedRevisionsPolicyNotADriftedFile(t *testing.T) {
	n := newLogNode(t)
	l := n.auditLog()
	ctx, _ := runAuditLog(t, l)
	applied := secretsPolicy("Metadata")
	tg := Target{Revision: 2, Policy: []byte(applied), Flags: n.flags}
	h, err := policy.HashOf(tg.Policy)
	if err != nil {
		t.Fatal(err)
	}
	tg.Hash = h
	l.pause()
	r := &Rollout{Files: n.files(OSFS{}), Health: &fakeKubelet{tn: n.testNode}, Clock: clock.RealClock{}}
	if res, err := r.Apply(ctx, tg, time.Second); err != nil || res.Phase != v1alpha1.NodeApplied {
		t.Fatalf("Apply(revision 2) = %+v, %v", res, err)
	}
	// The file is edited by hand before the agent records the revision in force.
	if err := os.WriteFile(n.local(DefaultPolicyFile), []byte(secretsPolicy("None")), 0o644); err != nil {
		t.Fatal(err)
	}
	n.restarted(t, time.Now().Add(-time.Minute).Truncate(time.Second))
	if !l.sync(ctx) {
		t.Fatal("sync did not record the revision in force")
	}
	var history []inForce
	if b, err := os.ReadFile(n.local(filepath.Join(DefaultStateDir, revisionsFile))); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &history); err != nil {
		t.Fatal(err)
	}
	if len(history) != 1 || history[0].Revision != 2 || history[0].Policy != applied {
		t.Errorf("history = %+v, want revision 2 with the policy the agent applied, not the drifted file", history)
	}
}
