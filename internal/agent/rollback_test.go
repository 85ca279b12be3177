package agent

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/staticpod"
)

// meanwhile is a Health that changes the manifest as another tool would (edit) when the health
// wait for the new annotation begins, then answers as kubelet does.
type meanwhile struct {
	kubelet *fakeKubelet
	edit    func(manifest []byte) []byte
	done    bool
}

func (m *meanwhile) Wait(ctx context.Context, annotation string, since time.Time, timeout time.Duration) error {
	if !m.done && staticpod.AnnotationBase(annotation) == policy.ShortHash(newHash) {
		m.done = true
		b, err := os.ReadFile(m.kubelet.tn.manifest)
		if err != nil {
			return err
		}
		if err := os.WriteFile(m.kubelet.tn.manifest, m.edit(b), 0o600); err != nil {
			return err
		}
	}
	return m.kubelet.Wait(ctx, annotation, since, timeout)
}

// kubeadmUpgrade changes the apiserver's image from v1.33 to v1.34, as `kubeadm upgrade` would.
func kubeadmUpgrade(t *testing.T) func([]byte) []byte {
	return func(b []byte) []byte {
		out := bytes.Replace(b, []byte("kube-apiserver:v1.33.1"), []byte("kube-apiserver:v1.34.0"), 1)
		if bytes.Equal(out, b) {
			t.Error("the manifest has no v1.33.1 image to upgrade")
		}
		return out
	}
}

func withAnnotation(t *testing.T, manifest []byte, value string) []byte {
	t.Helper()
	out, err := staticpod.SetAnnotation(manifest, staticpod.AnnotationPolicyHash, value)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A rollback must not undo what another tool changed in the manifest during the rollout: here
// a kubeadm upgrade of the image, which a rollback to the saved manifest silently downgraded.
func TestRollbackKeepsAnUpgradeMadeDuringTheHealthWait(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	health := &meanwhile{kubelet: &fakeKubelet{tn: tn, bad: badNew}, edit: kubeadmUpgrade(t)}
	r := &Rollout{Files: tn.files(OSFS{}), Health: health, Clock: clock.RealClock{}}
	res, err := r.Apply(context.Background(), tn.target(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Phase != v1alpha1.NodeRolledBack {
		t.Fatalf("result = %+v", res)
	}
	// The upgraded manifest without kaudit's flags and mounts, with the rollback annotation.
	want := withAnnotation(t, kubeadmUpgrade(t)(tn.original), "none-rollback-1")
	if got := tn.read(t, DefaultManifest); got != string(want) {
		t.Errorf("manifest after the rollback:\n%s\nwant\n%s", got, want)
	}
	if got := tn.read(t, tn.policyFile); got != oldPolicy {
		t.Errorf("policy file after the rollback = %q", got)
	}
}

// Where another tool changed what kaudit itself changed, no rollback can tell whose change to
// keep: the manifest is left as it is and the node reports Failed, saying so.
func TestRollbackLeavesTheManifestAloneWhenKauditsOwnChangeWasChangedToo(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	var theirs []byte
	edit := func(b []byte) []byte {
		theirs = bytes.Replace(b, []byte("--audit-log-maxage=7"), []byte("--audit-log-maxage=30"), 1)
		return theirs
	}
	r := &Rollout{Files: tn.files(OSFS{}), Health: &meanwhile{kubelet: &fakeKubelet{tn: tn, bad: badNew}, edit: edit}, Clock: clock.RealClock{}}
	res, err := r.Apply(context.Background(), tn.target(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Phase != v1alpha1.NodeFailed || !res.Restarted {
		t.Fatalf("result = %+v", res)
	}
	for _, want := range []string{"not rolled back", "--audit-log-maxage", "left as it is", "the previous policy is back"} {
		if !strings.Contains(res.Message, want) {
			t.Errorf("message %q does not say %q", res.Message, want)
		}
	}
	if got := tn.read(t, DefaultManifest); got != string(theirs) {
		t.Errorf("the manifest was changed by the rollback:\n%s", got)
	}
	if got := tn.read(t, tn.policyFile); got != oldPolicy {
		t.Errorf("policy file = %q, want the previous one", got)
	}
	st, _ := r.Files.LoadState()
	if st.Failed == nil || st.Failed.Hash != newHash || st.Failed.RolledBack {
		t.Errorf("state.Failed = %+v", st.Failed)
	}
	if res, err := r.Resume(context.Background(), time.Second); err != nil || res != nil {
		t.Errorf("Resume() after the failure = %+v, %v; want nothing left to do", res, err)
	}
}

// The same holds when the agent that rolls back is a new one, finishing from the journal.
func TestRecoveryRollbackKeepsAnUpgradeMadeWhileTheAgentWasDown(t *testing.T) {
	for _, step := range []string{StepManifestWritten, StepRollingBack} {
		t.Run(step, func(t *testing.T) {
			tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
			files := tn.files(OSFS{})
			j := changeFiles(t, files, tn.target())
			if step == StepRollingBack { // killed as the rollback began
				j.Step, j.Reason, j.RollbackAt = StepRollingBack, "revision 2: not healthy", time.Now().UTC()
				if err := files.saveJournal(j); err != nil {
					t.Fatal(err)
				}
			}
			b, _ := os.ReadFile(tn.manifest)
			if err := os.WriteFile(tn.manifest, kubeadmUpgrade(t)(b), 0o600); err != nil {
				t.Fatal(err)
			}
			r := &Rollout{Files: files, Health: &fakeKubelet{tn: tn, bad: badNew}, Clock: clock.RealClock{}}
			res, err := r.Resume(context.Background(), time.Second)
			if err != nil || res == nil || res.Phase != v1alpha1.NodeRolledBack {
				t.Fatalf("Resume() = %+v, %v", res, err)
			}
			want := withAnnotation(t, kubeadmUpgrade(t)(tn.original), "none-rollback-1")
			if got := tn.read(t, DefaultManifest); got != string(want) {
				t.Errorf("manifest after the rollback:\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestRecoveryRollbackLeavesTheManifestAloneWhenKauditsOwnChangeWasChangedToo(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	files := tn.files(OSFS{})
	j := changeFiles(t, files, tn.target())
	j.Step, j.Reason, j.RollbackAt = StepRollingBack, "revision 2: not healthy", time.Now().UTC()
	if err := files.saveJournal(j); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(tn.manifest)
	theirs := bytes.Replace(b, []byte("path: /var/log/kubernetes/audit\n"), []byte("path: /var/log/other\n"), 1)
	if err := os.WriteFile(tn.manifest, theirs, 0o600); err != nil {
		t.Fatal(err)
	}
	r := &Rollout{Files: files, Health: &fakeKubelet{tn: tn}, Clock: clock.RealClock{}}
	res, err := r.Resume(context.Background(), time.Second)
	if err != nil || res == nil || res.Phase != v1alpha1.NodeFailed || !strings.Contains(res.Message, "kaudit-audit-log") {
		t.Fatalf("Resume() = %+v, %v", res, err)
	}
	if got := tn.read(t, DefaultManifest); got != string(theirs) {
		t.Errorf("the manifest was changed by the rollback:\n%s", got)
	}
	if j, _ := files.LoadJournal(); j != nil {
		t.Error("journal left: the next start would try the same rollback again")
	}
}

// A manifest changed between the backup and kaudit's own change is not changed: the backup
// would no longer be what kaudit changed.
func TestApplyDoesNotChangeAManifestChangedSinceItsBackup(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	upgraded := kubeadmUpgrade(t)(tn.original)
	ffs := &faultFS{FS: OSFS{}, fail: func(op, p string) error {
		if op == "rename" && strings.HasSuffix(p, "->"+tn.local(tn.policyFile)) {
			if err := os.WriteFile(tn.manifest, upgraded, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return nil
	}}
	r := &Rollout{Files: tn.files(ffs), Health: &fakeKubelet{tn: tn}, Clock: clock.RealClock{}}
	res, err := r.Apply(context.Background(), tn.target(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Phase != v1alpha1.NodeFailed || res.Restarted || !strings.Contains(res.Message, "changed since the rollout began") {
		t.Fatalf("result = %+v", res)
	}
	if got := tn.read(t, DefaultManifest); got != string(upgraded) {
		t.Errorf("manifest = \n%s\nwant the upgraded one, unchanged", got)
	}
	if got := tn.read(t, tn.policyFile); got != oldPolicy {
		t.Errorf("policy file = %q", got)
	}
}

// An agent updated in the middle of a rollout finds a journal without the manifest hashes and
// the flags: it rolls back as the agent that wrote the journal would have, or the flags that
// agent added would stay, pointing at a policy file the rollback may remove.
func TestRecoveryFromAnOlderAgentsJournalRestoresTheWholeBackup(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	files := tn.files(OSFS{})
	if err := os.Remove(tn.local(tn.policyFile)); err != nil { // the node's first policy
		t.Fatal(err)
	}
	j := changeFiles(t, files, tn.target())
	j.Flags, j.PreviousManifestSHA256, j.ManifestSHA256 = nil, "", ""
	if err := files.saveJournal(j); err != nil {
		t.Fatal(err)
	}
	r := &Rollout{Files: files, Health: &fakeKubelet{tn: tn, bad: badNew}, Clock: clock.RealClock{}}
	res, err := r.Resume(context.Background(), time.Second)
	if err != nil || res == nil || res.Phase != v1alpha1.NodeRolledBack {
		t.Fatalf("Resume() = %+v, %v", res, err)
	}
	if got, want := tn.read(t, DefaultManifest), string(withAnnotation(t, tn.original, "none-rollback-1")); got != want {
		t.Errorf("manifest after the rollback:\n%s\nwant the backup with the rollback annotation", got)
	}
	if _, err := os.Stat(tn.local(tn.policyFile)); !os.IsNotExist(err) {
		t.Errorf("the policy file the rollout created is still there: %v", err)
	}
}
