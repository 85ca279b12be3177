package controllers_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/controllers"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/revision"
	"github.com/kaudit/kaudit/internal/testenv"
)

// The trust rule (see docs/design.md, "Revisions"): whoever can write ConfigMaps in
// kaudit-system must not be able to publish a revision, make one desired, feed last known good
// or wedge the numbering. These tests drive a PolicyReconciler by hand against a real API
// server, so that each step, and each manager restart (a new reconciler), is explicit.

type trustFixture struct {
	t      *testing.T
	ctx    context.Context
	c      client.Client
	clock  *clocktesting.FakePassiveClock
	events *events.FakeRecorder
	r      *controllers.PolicyReconciler
}

// newTrustFixture starts a manager (a reconciler with empty memory) on what the cluster holds.
func newTrustFixture(ctx context.Context, t *testing.T, c client.Client) *trustFixture {
	f := &trustFixture{t: t, ctx: ctx, c: c, clock: clocktesting.NewFakePassiveClock(time.Now()), events: events.NewFakeRecorder(1000)}
	f.r = controllers.NewPolicyReconcilerReading(c, c, c, f.clock, f.events, testenv.Namespace)
	return f
}

// resetCluster removes the singleton, every ConfigMap of the namespace and every module.
func resetCluster(ctx context.Context, t *testing.T, c client.Client) {
	t.Helper()
	if err := client.IgnoreNotFound(c.Delete(ctx, &v1alpha1.AuditPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SingletonName}})); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteAllOf(ctx, &corev1.ConfigMap{}, client.InNamespace(testenv.Namespace)); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteAllOf(ctx, &v1alpha1.AuditPolicyModule{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var cms corev1.ConfigMapList
		var mods v1alpha1.AuditPolicyModuleList
		if err := c.List(ctx, &cms, client.InNamespace(testenv.Namespace)); err != nil {
			t.Fatal(err)
		}
		if err := c.List(ctx, &mods); err != nil {
			t.Fatal(err)
		}
		err := c.Get(ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, &v1alpha1.AuditPolicy{})
		if apierrors.IsNotFound(err) && len(mods.Items) == 0 && len(withoutRootCA(cms.Items)) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the cluster was not reset within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// withoutRootCA drops kube-root-ca.crt, which the API server puts in every namespace.
func withoutRootCA(cms []corev1.ConfigMap) []corev1.ConfigMap {
	var out []corev1.ConfigMap
	for _, cm := range cms {
		if cm.Name != "kube-root-ca.crt" {
			out = append(out, cm)
		}
	}
	return out
}

func (f *trustFixture) reconcile() {
	f.t.Helper()
	if _, err := f.r.Reconcile(f.ctx, ctrl.Request{NamespacedName: types.NamespacedName{Name: v1alpha1.SingletonName}}); err != nil {
		f.t.Fatalf("reconcile: %v", err)
	}
}

// settle reconciles once to see a change and once after any debounce.
func (f *trustFixture) settle() {
	f.t.Helper()
	f.reconcile()
	f.clock.SetTime(f.clock.Now().Add(time.Minute))
	f.reconcile()
}

func (f *trustFixture) status() v1alpha1.AuditPolicyStatus {
	f.t.Helper()
	var ap v1alpha1.AuditPolicy
	if err := f.c.Get(f.ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, &ap); err != nil {
		f.t.Fatal(err)
	}
	return ap.Status
}

func (f *trustFixture) degraded() metav1.Condition {
	f.t.Helper()
	st := f.status()
	c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionDegraded)
	if c == nil {
		f.t.Fatalf("no Degraded condition in %+v", st.Conditions)
	}
	return *c
}

// desired is status.desiredRevision, 0 when unset.
func (f *trustFixture) desired() int64 {
	f.t.Helper()
	st := f.status()
	if st.DesiredRevision == nil {
		return 0
	}
	return *st.DesiredRevision
}

// recordedEvents drains the events recorded so far.
func (f *trustFixture) recordedEvents() []string {
	var out []string
	for {
		select {
		case e := <-f.events.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func (f *trustFixture) revision(n int64) *revision.Revision {
	f.t.Helper()
	var cm corev1.ConfigMap
	if err := f.c.Get(f.ctx, types.NamespacedName{Namespace: testenv.Namespace, Name: revision.Name(n)}, &cm); err != nil {
		f.t.Fatal(err)
	}
	r, err := revision.FromConfigMap(&cm)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *trustFixture) createModule(name string, rules ...v1alpha1.PolicyRule) {
	f.t.Helper()
	if err := f.c.Create(f.ctx, &v1alpha1.AuditPolicyModule{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.AuditPolicyModuleSpec{Order: 1, Rules: rules}}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *trustFixture) updateModule(name string, change func(*v1alpha1.AuditPolicyModule)) {
	f.t.Helper()
	var m v1alpha1.AuditPolicyModule
	if err := f.c.Get(f.ctx, types.NamespacedName{Name: name}, &m); err != nil {
		f.t.Fatal(err)
	}
	change(&m)
	if err := f.c.Update(f.ctx, &m); err != nil {
		f.t.Fatal(err)
	}
}

// forge creates what someone with ConfigMap rights in kaudit-system could: a well-formed
// revision n, immutable and labelled, with a correct policy hash, holding the given modules.
func (f *trustFixture) forge(n int64, specs map[string]v1alpha1.AuditPolicyModuleSpec) {
	f.t.Helper()
	var mods []policy.Module
	var recs []revision.ModuleRecord
	for name, spec := range specs {
		mods = append(mods, policy.Module{Name: name, Spec: spec})
		recs = append(recs, revision.ModuleRecord{Name: name, Generation: 1, FirstRevision: n, Spec: spec})
	}
	merged, err := policy.Merge(mods, policy.Settings{DefaultLevel: v1alpha1.LevelNone})
	if err != nil {
		f.t.Fatal(err)
	}
	cm, _, err := revision.Encode(testenv.Namespace, revision.Revision{Number: n, Hash: merged.Hash(), Policy: merged.Render(), Modules: recs})
	if err != nil {
		f.t.Fatal(err)
	}
	cm.TypeMeta = metav1.TypeMeta{}
	if err := f.c.Create(f.ctx, cm); err != nil {
		f.t.Fatal(err)
	}
}

func metadataOn(resources ...string) v1alpha1.PolicyRule {
	return v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata, Resources: []v1alpha1.GroupResources{{Resources: resources}}}
}

// nothingLogged is a module spec that logs nothing at all.
var nothingLogged = v1alpha1.AuditPolicyModuleSpec{Order: 1, Rules: []v1alpha1.PolicyRule{{Level: v1alpha1.LevelNone}}}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func count(list []string, parts ...string) int {
	n := 0
	for _, s := range list {
		if containsAll(s, parts...) {
			n++
		}
	}
	return n
}

func TestRevisionTrust(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := testenv.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	}()
	for _, tt := range []struct {
		name string
		test func(*testing.T, *trustFixture)
	}{
		{"a forged revision never becomes desired and is reported once", forgedRevisionNeverDesired},
		{"a forged module record never becomes last known good", forgedRecordNeverLastKnownGood},
		{"a revision label at the int64 limit wedges nothing", labelAtInt64Limit},
		{"a recorded revision changed since is no longer trusted", changedRevisionUntrusted},
		{"a name taken by another ConfigMap is skipped", takenNameSkipped},
		{"a manager restarted after a lost status write adopts its own revision", lostStatusWriteAdopted},
		{"records lost while no manager runs: the old revisions are untrusted and a fresh one is made", lostRecordsFreshRevision},
		{"the records survive the singleton's deletion while the manager runs", recordsSurviveSingletonDeletion},
		{"a merged policy over a cap makes no revision", overCapNoRevision},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resetCluster(ctx, t, env.Client)
			f := newTrustFixture(ctx, t, env.Client)
			f.reconcile() // creates the singleton
			tt.test(t, f)
		})
	}
}

// forgedRevisionNeverDesired: a forged revision never becomes desired and is reported once.
func forgedRevisionNeverDesired(t *testing.T, f *trustFixture) {
	f.createModule("configmaps", metadataOn("configmaps"))
	f.settle()
	good := f.revision(1)
	f.forge(2, map[string]v1alpha1.AuditPolicyModuleSpec{"configmaps": nothingLogged})
	f.reconcile()
	f.reconcile()

	st := f.status()
	if f.desired() != 1 || *st.LatestRevision != 1 || st.DesiredPolicyHash != good.Hash {
		t.Errorf("desired %d, latest %d, hash %s after a forged revision 2; want revision 1 (%s)", f.desired(), *st.LatestRevision, st.DesiredPolicyHash, good.Hash)
	}
	if len(st.Revisions) != 1 || st.Revisions[0].Number != 1 || st.Revisions[0].SHA256 != revision.Digest(*good) {
		t.Errorf("status.revisions = %+v, want only revision 1 and its digest", st.Revisions)
	}
	if d := f.degraded(); d.Status != metav1.ConditionTrue || d.Reason != v1alpha1.ReasonUntrustedRevision || !containsAll(d.Message, "kaudit-policy-2", "not in status.revisions") {
		t.Errorf("Degraded = %s %s %q; want True, %s, naming kaudit-policy-2 and why", d.Status, d.Reason, d.Message, v1alpha1.ReasonUntrustedRevision)
	}
	if n := count(f.recordedEvents(), "Warning", v1alpha1.ReasonUntrustedRevision, "kaudit-policy-2"); n != 1 {
		t.Errorf("%d Warning events about kaudit-policy-2 after two reconciles, want 1", n)
	}

	// Deleting it clears the condition.
	if err := f.c.Delete(f.ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: testenv.Namespace, Name: revision.Name(2)}}); err != nil {
		t.Fatal(err)
	}
	f.reconcile()
	if d := f.degraded(); d.Status != metav1.ConditionFalse {
		t.Errorf("Degraded = %s %s after the forged revision was deleted", d.Status, d.Reason)
	}
}

// forgedRecordNeverLastKnownGood: a forged module record never becomes last known good.
func forgedRecordNeverLastKnownGood(t *testing.T, f *trustFixture) {
	f.createModule("secrets", metadataOn("secrets"))
	f.settle()
	// The forger's revision 2 says the secrets module logs nothing; then the module's
	// current spec turns invalid, so the next revision holds its last known good spec.
	f.forge(2, map[string]v1alpha1.AuditPolicyModuleSpec{"secrets": nothingLogged})
	f.updateModule("secrets", func(m *v1alpha1.AuditPolicyModule) {
		m.Spec.Rules[0].Resources[0].Group = "Not_A_Group"
	})
	f.createModule("pods", metadataOn("pods"))
	f.settle()

	latest := *f.status().LatestRevision
	if latest == 1 {
		t.Fatal("no revision was made for the new module")
	}
	rev := f.revision(latest)
	for _, rec := range rev.Modules {
		if rec.Name == "secrets" && rec.Spec.Rules[0].Level != v1alpha1.LevelMetadata {
			t.Errorf("revision %d holds the forged spec of module secrets: %+v", latest, rec.Spec)
		}
	}
	if !strings.Contains(string(rev.Policy), "- secrets") {
		t.Errorf("revision %d lost the last known good rules of module secrets:\n%s", latest, rev.Policy)
	}
}

// labelAtInt64Limit: a revision label at the int64 limit wedges nothing.
func labelAtInt64Limit(t *testing.T, f *trustFixture) {
	f.forge(math.MaxInt64, map[string]v1alpha1.AuditPolicyModuleSpec{"x": nothingLogged})
	f.createModule("configmaps", metadataOn("configmaps"))
	f.settle()
	f.updateModule("configmaps", func(m *v1alpha1.AuditPolicyModule) { m.Spec.Rules[0].Verbs = []string{"create"} })
	f.settle()
	if f.desired() != 2 {
		t.Errorf("desired revision %d, want 2", f.desired())
	}
	if d := f.degraded(); d.Reason != v1alpha1.ReasonUntrustedRevision || !strings.Contains(d.Message, revision.Name(math.MaxInt64)) {
		t.Errorf("Degraded = %s %q; want it to name the forged ConfigMap", d.Reason, d.Message)
	}
}

// changedRevisionUntrusted: a recorded revision changed since is no longer trusted.
func changedRevisionUntrusted(t *testing.T, f *trustFixture) {
	f.createModule("configmaps", metadataOn("configmaps"))
	f.settle()
	first := f.revision(1)
	f.updateModule("configmaps", func(m *v1alpha1.AuditPolicyModule) { m.Spec.Rules[0].Verbs = []string{"create"} })
	f.settle()
	// Data is immutable, annotations are not: point revision 2 at revision 1's policy hash.
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, revision.AnnotationPolicySHA256, first.Hash)
	if err := f.c.Patch(f.ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: testenv.Namespace, Name: revision.Name(2)}}, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
	f.reconcile()
	if st := f.status(); f.desired() != 1 || st.DesiredPolicyHash != first.Hash {
		t.Errorf("desired %d (%s), want revision 1 once revision 2 changed", f.desired(), st.DesiredPolicyHash)
	}
	if d := f.degraded(); d.Reason != v1alpha1.ReasonUntrustedRevision || !containsAll(d.Message, "kaudit-policy-2", "do not match its content") {
		t.Errorf("Degraded = %s %q", d.Reason, d.Message)
	}
	if recs := f.status().Revisions; len(recs) != 2 {
		t.Errorf("status.revisions = %+v: the record of an existing revision stays", recs)
	}
}

// takenNameSkipped: a name taken by another ConfigMap is skipped.
func takenNameSkipped(t *testing.T, f *trustFixture) {
	squatter := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: testenv.Namespace, Name: revision.Name(1)}, Data: map[string]string{"x": "y"}}
	if err := f.c.Create(f.ctx, squatter); err != nil {
		t.Fatal(err)
	}
	f.createModule("configmaps", metadataOn("configmaps"))
	f.settle()
	if f.desired() != 2 {
		t.Errorf("desired revision %d, want 2 (number 1 is taken)", f.desired())
	}
	if n := count(f.recordedEvents(), "Warning", v1alpha1.EventRevisionNameTaken, "kaudit-policy-1"); n != 1 {
		t.Errorf("%d RevisionNameTaken events, want 1", n)
	}
	f.updateModule("configmaps", func(m *v1alpha1.AuditPolicyModule) { m.Spec.Rules[0].Verbs = []string{"get"} })
	f.settle()
	if f.desired() != 3 {
		t.Errorf("desired revision %d after a change, want 3", f.desired())
	}
}

// lostStatusWriteAdopted: a manager restarted after a lost status write adopts its own revision.
func lostStatusWriteAdopted(t *testing.T, f *trustFixture) {
	f.createModule("configmaps", metadataOn("configmaps"))
	f.settle()
	// The status write is lost: the singleton goes while no manager runs. The next
	// manager makes the same revision 1 and finds it already there.
	if err := f.c.Delete(f.ctx, &v1alpha1.AuditPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SingletonName}}); err != nil {
		t.Fatal(err)
	}
	f = newTrustFixture(f.ctx, t, f.c)
	f.reconcile()
	f.settle()
	st := f.status()
	if f.desired() != 1 || len(st.Revisions) != 1 || st.Revisions[0].Number != 1 {
		t.Errorf("desired %d, records %+v; want revision 1 adopted", f.desired(), st.Revisions)
	}
	if d := f.degraded(); d.Status != metav1.ConditionFalse {
		t.Errorf("Degraded = %s %s %q", d.Status, d.Reason, d.Message)
	}
	if n := count(f.recordedEvents(), "Normal", v1alpha1.EventRevisionAdopted); n != 1 {
		t.Errorf("%d RevisionAdopted events, want 1", n)
	}
}

// lostRecordsFreshRevision: records lost while no manager runs: the old revisions are untrusted and a fresh one is made.
func lostRecordsFreshRevision(t *testing.T, f *trustFixture) {
	f.createModule("configmaps", metadataOn("configmaps"))
	f.settle()
	if err := f.c.Delete(f.ctx, &v1alpha1.AuditPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SingletonName}}); err != nil {
		t.Fatal(err)
	}
	f.updateModule("configmaps", func(m *v1alpha1.AuditPolicyModule) { m.Spec.Rules[0].Verbs = []string{"get"} })
	f = newTrustFixture(f.ctx, t, f.c)
	f.reconcile()
	f.settle()
	if f.desired() != 2 {
		t.Errorf("desired revision %d, want a fresh revision 2", f.desired())
	}
	if d := f.degraded(); d.Reason != v1alpha1.ReasonUntrustedRevision || !strings.Contains(d.Message, "kaudit-policy-1") {
		t.Errorf("Degraded = %s %q; want the old revision 1 reported", d.Reason, d.Message)
	}
}

// recordsSurviveSingletonDeletion: the records survive the singleton's deletion while the manager runs.
func recordsSurviveSingletonDeletion(t *testing.T, f *trustFixture) {
	f.createModule("configmaps", metadataOn("configmaps"))
	f.settle()
	if err := f.c.Delete(f.ctx, &v1alpha1.AuditPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SingletonName}}); err != nil {
		t.Fatal(err)
	}
	f.reconcile() // recreates it
	f.settle()
	st := f.status()
	if f.desired() != 1 || len(st.Revisions) != 1 {
		t.Errorf("desired %d, records %+v; want revision 1, still trusted", f.desired(), st.Revisions)
	}
	if d := f.degraded(); d.Status != metav1.ConditionFalse {
		t.Errorf("Degraded = %s %s %q", d.Status, d.Reason, d.Message)
	}
}

// overCapNoRevision: a merged policy over a cap makes no revision.
func overCapNoRevision(t *testing.T, f *trustFixture) {
	f.createModule("configmaps", metadataOn("configmaps"))
	f.settle()
	f.r.MaxPolicyRules = 2
	f.updateModule("configmaps", func(m *v1alpha1.AuditPolicyModule) {
		m.Spec.Rules = append(m.Spec.Rules, metadataOn("secrets"))
	})
	f.settle()
	if f.desired() != 1 {
		t.Errorf("desired revision %d, want 1: 3 rules are over the cap", f.desired())
	}
	if d := f.degraded(); d.Reason != v1alpha1.ReasonPolicyTooLarge || !containsAll(d.Message, "3 rules", "limit of 2", "--max-policy-rules") {
		t.Errorf("Degraded = %s %q", d.Reason, d.Message)
	}
	if n := count(f.recordedEvents(), "Warning", v1alpha1.ReasonPolicyTooLarge); n == 0 {
		t.Error("no PolicyTooLarge event")
	}

	f.r.MaxPolicyRules, f.r.MaxPolicyBytes = controllers.DefaultMaxPolicyRules, 100
	f.settle()
	if d := f.degraded(); f.desired() != 1 || d.Reason != v1alpha1.ReasonPolicyTooLarge || !containsAll(d.Message, "bytes, over the limit of 100", "--max-policy-bytes") {
		t.Errorf("desired %d, Degraded = %s %q", f.desired(), d.Reason, d.Message)
	}

	f.r.MaxPolicyBytes = controllers.DefaultMaxPolicyBytes
	f.settle()
	if f.desired() != 2 || f.degraded().Status != metav1.ConditionFalse {
		t.Errorf("desired %d, Degraded %s once within the caps; want 2, False", f.desired(), f.degraded().Status)
	}
}
