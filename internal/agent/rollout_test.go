package agent

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
)

// hashedTarget is tn's target with the policy's real canonical hash.
func hashedTarget(t *testing.T, tn *testNode) Target {
	t.Helper()
	tg := tn.target()
	h, err := policy.HashOf(tg.Policy)
	if err != nil {
		t.Fatal(err)
	}
	tg.Hash = h
	return tg
}

func TestUpToDateComparesThePolicyFileNotTheRecordedHash(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	tg := hashedTarget(t, tn)
	r := &Rollout{Files: tn.files(OSFS{}), Health: &fakeKubelet{tn: tn}, Clock: clock.RealClock{}}
	if res, err := r.Apply(context.Background(), tg, time.Second); err != nil || res.Phase != v1alpha1.NodeApplied {
		t.Fatalf("Apply() = %+v, %v", res, err)
	}
	// Someone puts another policy in the file; state.json still records the target's hash.
	if err := os.WriteFile(tn.local(tn.policyFile), []byte(oldPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.Files.UpToDate(tg); err != nil || ok {
		t.Errorf("UpToDate() with a different policy in the file = %v, %v; want false", ok, err)
	}
	// Comments only: up to date, and Adopt refreshes the file without a restart.
	if err := os.WriteFile(tn.local(tn.policyFile), []byte("# renamed module\n"+newPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.Files.UpToDate(tg); err != nil || !ok {
		t.Fatalf("UpToDate() with only comments changed = %v, %v; want true", ok, err)
	}
	if err := r.Files.Adopt(tg); err != nil {
		t.Fatal(err)
	}
	if got := tn.read(t, tn.policyFile); got != newPolicy {
		t.Errorf("policy file after Adopt = %q", got)
	}
}

func TestAdoptNeverWritesAPolicyThatFailsValidationOrItsHash(t *testing.T) {
	invalid := "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n"
	for name, tc := range map[string]struct {
		policy string
		hash   func(tg Target) string
	}{
		"rejected by the loader": {invalid, func(Target) string { h, _ := policy.HashOf([]byte(invalid)); return h }},
		"hash of other bytes":    {oldPolicy, func(tg Target) string { return tg.Hash }},
	} {
		t.Run(name, func(t *testing.T) {
			tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
			tg := hashedTarget(t, tn)
			r := &Rollout{Files: tn.files(OSFS{}), Health: &fakeKubelet{tn: tn}, Clock: clock.RealClock{}}
			if res, err := r.Apply(context.Background(), tg, time.Second); err != nil || res.Phase != v1alpha1.NodeApplied {
				t.Fatalf("Apply() = %+v, %v", res, err)
			}
			// The file differs only in comments, so Adopt would rewrite it with tg.Policy.
			if err := os.WriteFile(tn.local(tn.policyFile), []byte("# x\n"+newPolicy), 0o644); err != nil {
				t.Fatal(err)
			}
			bad := tg
			bad.Policy, bad.Hash = []byte(tc.policy), tc.hash(tg)
			if err := r.Files.Adopt(bad); err == nil {
				t.Error("Adopt() = nil, want an error")
			}
			if got := tn.read(t, tn.policyFile); got != "# x\n"+newPolicy {
				t.Errorf("policy file was written: %q", got)
			}
		})
	}
}

// changeFiles runs a rollout of tg up to the restart: journal, policy file, manifest. What
// follows is up to the test, as after an agent that died there.
func changeFiles(t *testing.T, files *NodeFiles, tg Target) *Journal {
	t.Helper()
	j, err := files.Begin(tg)
	if err != nil {
		t.Fatal(err)
	}
	if err := files.WritePolicy(j, tg); err != nil {
		t.Fatal(err)
	}
	if err := files.BumpManifest(j); err != nil {
		t.Fatal(err)
	}
	return j
}

// A Commit cut between saving the state and removing the journal leaves the new revision in
// state.json; a rollback found at the next start must record the previous one again.
func TestFinishRollbackRecordsThePreviousRevision(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	files := tn.files(OSFS{})
	if err := files.saveState(State{Revision: 1, Hash: "1111"}); err != nil {
		t.Fatal(err)
	}
	j := changeFiles(t, files, tn.target())
	st, _ := files.LoadState()
	st.Revision, st.Hash = j.Revision, j.Hash // Commit's first half
	if err := files.saveState(st); err != nil {
		t.Fatal(err)
	}
	r := &Rollout{Files: files, Health: &fakeKubelet{tn: tn, bad: badNew}, Clock: clock.RealClock{}}
	res, err := r.Resume(context.Background(), time.Second)
	if err != nil || res == nil || res.Phase != v1alpha1.NodeRolledBack {
		t.Fatalf("Resume() = %+v, %v", res, err)
	}
	if st, _ := files.LoadState(); st.Revision != 1 || st.Hash != "1111" {
		t.Errorf("state after the rollback = revision %d hash %q, want revision 1 hash 1111", st.Revision, st.Hash)
	}
}

// A rollout, or its rollback, restarts kube-apiserver on the files it wrote: a record of a drift
// restore waiting for a verdict is void, even one that cannot be read, which would otherwise
// ask for a restart after every rollout.
func TestRolloutsEndAPendingDriftRestore(t *testing.T) {
	for name, bad := range map[string]func(string) bool{"committed": nil, "rolled back": badNew} {
		t.Run(name, func(t *testing.T) {
			tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
			files := tn.files(OSFS{})
			if err := files.saveState(State{Revision: 1, Hash: "1111"}); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(files.inStateDir(driftRestoreFile), []byte("{"), 0o600); err != nil {
				t.Fatal(err)
			}
			r := &Rollout{Files: files, Health: &fakeKubelet{tn: tn, bad: bad}, Clock: clock.RealClock{}}
			if _, err := r.Apply(context.Background(), tn.target(), time.Second); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(files.inStateDir(driftRestoreFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s is still there after the rollout (stat: %v)", driftRestoreFile, err)
			}
		})
	}
}

// timeoutRecorder is a Health that records the timeout it was given and fails.
type timeoutRecorder struct{ got time.Duration }

func (h *timeoutRecorder) Wait(_ context.Context, _ string, _ time.Time, timeout time.Duration) error {
	h.got = timeout
	return context.DeadlineExceeded
}

func TestResumeWaitsForTheHealthTimeoutRecordedAtBegin(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	files := tn.files(OSFS{})
	tg := tn.target()
	tg.HealthTimeout = time.Hour
	changeFiles(t, files, tg)
	h := &timeoutRecorder{}
	r := &Rollout{Files: files, Health: h, Clock: clock.RealClock{}}
	// The agent restarted and cannot read the singleton: it passes the default.
	if _, err := r.Resume(context.Background(), v1alpha1.DefaultHealthTimeout); err != nil {
		t.Fatal(err)
	}
	if h.got < 59*time.Minute {
		t.Errorf("Resume waited up to %s, want the recorded 1h", h.got)
	}
}

// waitsRecorder records the timeout of each health wait; the new apiserver's wait fails as one
// refused connection would end it.
type waitsRecorder struct{ got []time.Duration }

func (h *waitsRecorder) Wait(_ context.Context, annotation string, _ time.Time, timeout time.Duration) error {
	h.got = append(h.got, timeout)
	if badNew(annotation) {
		return errors.New("/readyz: dial tcp 127.0.0.1:6443: connect: connection refused")
	}
	return nil
}

// An agent restarted after a downtime longer than the health timeout (a node reboot) used to
// wait for nothing, so a single refused connection rolled a healthy node back; the resumed
// wait, and the rollback's, get the whole timeout.
func TestResumeAfterALongDowntimeWaitsTheWholeTimeout(t *testing.T) {
	for _, step := range []string{StepManifestWritten, StepRollingBack} {
		t.Run(step, func(t *testing.T) {
			tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
			fake := clocktesting.NewFakeClock(time.Now())
			files := tn.files(OSFS{})
			files.Clock = fake
			tg := tn.target()
			tg.HealthTimeout = 2 * time.Minute
			j := changeFiles(t, files, tg)
			want := []time.Duration{2 * time.Minute, 2 * time.Minute} // the new apiserver, the rollback
			if step == StepRollingBack {
				if err := files.Restore(j, "revision 2: not healthy"); err != nil {
					t.Fatal(err)
				}
				want = want[1:]
			}
			fake.Step(3 * time.Hour) // the node was down
			h := &waitsRecorder{}
			r := &Rollout{Files: files, Health: h, Clock: fake}
			res, err := r.Resume(context.Background(), v1alpha1.DefaultHealthTimeout)
			if err != nil || res == nil || res.Phase != v1alpha1.NodeRolledBack {
				t.Fatalf("Resume() = %+v, %v", res, err)
			}
			if !slices.Equal(h.got, want) {
				t.Errorf("health waits of %v, want %v", h.got, want)
			}
		})
	}
}
