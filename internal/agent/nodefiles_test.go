package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/staticpod"
)

const (
	oldPolicy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"
	newPolicy = "apiVersion: audit.k8s.io/v1\nkind: Policy\n# module rbac, rule 0\nrules:\n- level: RequestResponse\n  resources:\n  - group: rbac.authorization.k8s.io\n- level: Metadata\n"
	newHash   = "aaaabbbbccccdddd00000000000000000000000000000000000000000000ffff"
)

// managed are the apiserver flags of the tests that manage them, at kubeadm's paths.
var managed = staticpod.FlagSettings{
	PolicyFile: "/etc/kubernetes/audit/policy.yaml",
	LogPath:    "/var/log/kubernetes/audit/audit.log",
	MaxAge:     7, MaxBackup: 10, MaxSize: 100,
}

// readTestManifest reads one of the static pod manifests that internal/staticpod tests its edits
// on.
func readTestManifest(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "staticpod", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testNode lays out a control-plane node's /etc/kubernetes under a temporary root.
type testNode struct {
	root, manifest string
	original       []byte
	policyFile     string // host path
	flags          *staticpod.FlagSettings
}

// newTestNode copies one of staticpod's test manifests. Managed flags use kubeadm's paths; the
// hand-edited manifest brings its own --audit-policy-file.
func newTestNode(t testing.TB, manifestName string, managedFlags bool) *testNode {
	t.Helper()
	root := t.TempDir()
	tn := &testNode{root: root, manifest: filepath.Join(root, "etc/kubernetes/manifests/kube-apiserver.yaml")}
	for _, d := range []string{"etc/kubernetes/manifests", "etc/kubernetes/kaudit", "etc/kubernetes/audit", "etc/kubernetes/policies"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tn.original = readTestManifest(t, manifestName)
	if err := os.WriteFile(tn.manifest, tn.original, 0o600); err != nil {
		t.Fatal(err)
	}
	tn.policyFile = "/etc/kubernetes/policies/audit-policy.yaml"
	if managedFlags {
		f := managed
		tn.flags = &f
		tn.policyFile = managed.PolicyFile
	}
	if err := os.WriteFile(tn.local(tn.policyFile), []byte(oldPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	return tn
}

func (tn *testNode) local(host string) string { return filepath.Join(tn.root, host) }

func (tn *testNode) files(fsys FS) *NodeFiles {
	return &NodeFiles{Paths: DefaultPaths(tn.root), FS: fsys, Clock: clock.RealClock{}}
}

func (tn *testNode) target() Target {
	return Target{Revision: 2, Hash: newHash, Policy: []byte(newPolicy), Flags: tn.flags}
}

func (tn *testNode) read(t *testing.T, host string) string {
	t.Helper()
	b, err := os.ReadFile(tn.local(host))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// fakeKubelet plays kubelet and the apiserver: the mirror pod carries the manifest's current
// annotation and "starts" when the manifest changes; unhealthy annotations never get ready.
type fakeKubelet struct {
	tn *testNode
	// bad returns true for annotation values whose apiserver never becomes ready.
	bad func(annotation string) bool
}

func (k *fakeKubelet) Wait(ctx context.Context, annotation string, since time.Time, timeout time.Duration) error {
	b, err := os.ReadFile(k.tn.manifest)
	if err != nil {
		return err
	}
	got, err := staticpod.Annotation(b, staticpod.AnnotationPolicyHash)
	if err != nil {
		return err
	}
	if got != annotation {
		return fmt.Errorf("mirror pod has %q, want %q", got, annotation)
	}
	if k.bad != nil && k.bad(annotation) {
		return errors.New("/readyz: [-]poststarthook/start-apiserver-admission-initializer failed")
	}
	return nil
}

func badNew(a string) bool { return strings.HasPrefix(a, policy.ShortHash(newHash)) }

func TestApplyWritesPolicyThenBumpsManifestAndKeepsBackups(t *testing.T) {
	for _, tc := range []struct {
		manifest string
		managed  bool
	}{{"kubeadm-v1.33.yaml", true}, {"kind-v1.30.yaml", true}, {"hand-edited-audit.yaml", false}} {
		t.Run(tc.manifest, func(t *testing.T) {
			tn := newTestNode(t, tc.manifest, tc.managed)
			r := &Rollout{Files: tn.files(OSFS{}), Health: &fakeKubelet{tn: tn}, Clock: clock.RealClock{}}
			res, err := r.Apply(context.Background(), tn.target(), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if res.Phase != v1alpha1.NodeApplied || res.Revision != 2 || !res.Restarted {
				t.Fatalf("result = %+v", res)
			}
			if got := tn.read(t, tn.policyFile); got != newPolicy {
				t.Errorf("policy file = %q", got)
			}
			m := []byte(tn.read(t, DefaultManifest))
			if v, _ := staticpod.Annotation(m, staticpod.AnnotationPolicyHash); v != policy.ShortHash(newHash) {
				t.Errorf("annotation = %q", v)
			}
			if got := tn.read(t, "/etc/kubernetes/kaudit/previous-policy.yaml"); got != oldPolicy {
				t.Errorf("policy backup = %q", got)
			}
			if got := tn.read(t, "/etc/kubernetes/kaudit/previous-kube-apiserver.yaml"); got != string(tn.original) {
				t.Error("manifest backup differs from the original manifest")
			}
			assertOnlyManifest(t, tn)
			// Nothing else to do: the node is up to date, and a second rollout is not needed.
			if ok, err := r.Files.UpToDate(tn.target()); err != nil || !ok {
				t.Errorf("UpToDate() = %v, %v", ok, err)
			}
		})
	}
}

func TestApplyRollsBackWhenTheAPIServerNeverGetsReady(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	var phases []string
	r := &Rollout{Files: tn.files(OSFS{}), Health: &fakeKubelet{tn: tn, bad: badNew}, Clock: clock.RealClock{},
		Progress: func(_ context.Context, p v1alpha1.NodePhase, msg string) {
			phases = append(phases, string(p)+": "+msg)
			// The report may block on an unreachable API: the files are restored before it.
			if strings.Contains(msg, "rolling back") && tn.read(t, tn.policyFile) != oldPolicy {
				t.Error("the rollback was reported before the previous policy was restored")
			}
		}}
	res, err := r.Apply(context.Background(), tn.target(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Phase != v1alpha1.NodeRolledBack || !strings.Contains(res.Message, "readyz") {
		t.Fatalf("result = %+v", res)
	}
	if got := tn.read(t, tn.policyFile); got != oldPolicy {
		t.Errorf("policy file after rollback = %q", got)
	}
	m := []byte(tn.read(t, DefaultManifest))
	want, _ := staticpod.SetAnnotation(tn.original, staticpod.AnnotationPolicyHash, "none-rollback-1")
	if !bytes.Equal(m, want) {
		t.Errorf("manifest after rollback must be the original with a new annotation:\n%s", m)
	}
	st, _ := r.Files.LoadState()
	if st.Failed == nil || st.Failed.Hash != newHash || !st.Failed.RolledBack {
		t.Errorf("state.Failed = %+v", st.Failed)
	}
	if len(phases) < 3 || !strings.Contains(phases[len(phases)-1], "rolling back") {
		t.Errorf("progress = %q", phases)
	}
	assertOnlyManifest(t, tn)
}

func TestApplyRejectsAnInvalidPolicyWithoutTouchingTheNode(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	r := &Rollout{Files: tn.files(OSFS{}), Health: &fakeKubelet{tn: tn}, Clock: clock.RealClock{}}
	tg := tn.target()
	tg.Policy = []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n")
	res, _ := r.Apply(context.Background(), tg, time.Second)
	if res.Phase != v1alpha1.NodeFailed || !strings.Contains(res.Message, "loader") || res.Restarted {
		t.Fatalf("result = %+v", res)
	}
	if tn.read(t, DefaultManifest) != string(tn.original) || tn.read(t, tn.policyFile) != oldPolicy {
		t.Error("the node changed")
	}
}

func TestReadOnlyOrFullDiskGivesAClearErrorAndNoChange(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(op, path string) error
		want string
	}{
		{"read-only policy dir", func(op, p string) error {
			if op == "create" && strings.Contains(p, "/etc/kubernetes/audit/") {
				return &fs.PathError{Op: "open", Path: p, Err: syscall.EROFS}
			}
			return nil
		}, "read-only"},
		{"disk full", func(op, p string) error {
			if op == "write" && strings.Contains(p, "/etc/kubernetes/audit/") {
				return &fs.PathError{Op: "write", Path: p, Err: syscall.ENOSPC}
			}
			return nil
		}, "disk is full"},
		{"read-only manifests dir", func(op, p string) error {
			if op == "rename" && strings.Contains(p, "manifests/kube-apiserver.yaml") {
				return &os.LinkError{Op: "rename", Old: p, New: p, Err: syscall.EROFS}
			}
			return nil
		}, "read-only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
			ffs := &faultFS{FS: OSFS{}, fail: tc.fail}
			r := &Rollout{Files: tn.files(ffs), Health: &fakeKubelet{tn: tn}, Clock: clock.RealClock{}}
			res, err := r.Apply(context.Background(), tn.target(), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if res.Phase != v1alpha1.NodeFailed || res.Restarted || !strings.Contains(res.Message, tc.want) || !strings.Contains(res.Message, "nothing was restarted") {
				t.Fatalf("result = %+v", res)
			}
			t.Log(res.Message)
			if tn.read(t, DefaultManifest) != string(tn.original) || tn.read(t, tn.policyFile) != oldPolicy {
				t.Error("the node changed")
			}
			if j, _ := r.Files.LoadJournal(); j != nil {
				t.Error("journal left behind")
			}
			assertOnlyManifest(t, tn)
		})
	}
}

func TestReadOnlyDirectoryWithRealPermissions(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions; covered by the injected EROFS test")
	}
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	dir := tn.local("/etc/kubernetes/audit")
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
	r := &Rollout{Files: tn.files(OSFS{}), Health: &fakeKubelet{tn: tn}, Clock: clock.RealClock{}}
	res, _ := r.Apply(context.Background(), tn.target(), time.Second)
	if res.Phase != v1alpha1.NodeFailed || !strings.Contains(res.Message, "permission denied") {
		t.Fatalf("result = %+v", res)
	}
	if tn.read(t, tn.policyFile) != oldPolicy {
		t.Error("policy changed")
	}
}

// With the layout the Kubernetes documentation shows, kube-apiserver mounts the policy file
// alone, and the agent, which sees only its own directory mounts, found /etc/kubernetes there
// and failed its write with EROFS, blamed on a read-only mount and retried for ever. The layout
// is recognised from the manifest before anything is written, with what to change.
func TestAPolicyFileMountedAloneIsRefusedBeforeAnyWrite(t *testing.T) {
	tn := newTestNode(t, "docs-single-file-audit.yaml", false)
	tn.policyFile = "/etc/kubernetes/audit-policy.yaml"
	if err := os.WriteFile(tn.local(tn.policyFile), []byte(oldPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	etcKubernetes := tn.local("/etc/kubernetes")
	var writes []string
	readOnlyRoot := &faultFS{FS: OSFS{}, fail: func(op, p string) error {
		if op == "create" && filepath.Dir(p) == etcKubernetes {
			writes = append(writes, p)
			return &fs.PathError{Op: "open", Path: p, Err: syscall.EROFS}
		}
		return nil
	}}
	r := &Rollout{Files: tn.files(readOnlyRoot), Health: &fakeKubelet{tn: tn}, Clock: clock.RealClock{}}
	res, err := r.Apply(context.Background(), tn.target(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Phase != v1alpha1.NodeFailed || res.Restarted {
		t.Fatalf("result = %+v", res)
	}
	for _, want := range []string{"as a single file", "mount that directory instead", "manageAPIServerFlags: true"} {
		if !strings.Contains(res.Message, want) {
			t.Errorf("message %q does not say %q", res.Message, want)
		}
	}
	if len(writes) > 0 {
		t.Errorf("the agent tried to write %v", writes)
	}
	if tn.read(t, DefaultManifest) != string(tn.original) || tn.read(t, tn.policyFile) != oldPolicy {
		t.Error("the node changed")
	}
	// The agent checks UpToDate first: a layout error waits for the resync, not the retry.
	_, err = r.Files.UpToDate(tn.target())
	var layout *layoutError
	if !errors.As(err, &layout) {
		t.Errorf("UpToDate() = %v, want a layout error", err)
	}
}

func TestManifestTempFileFallsBackToADotfileAcrossMounts(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	var sawDotfile bool
	ffs := &faultFS{FS: OSFS{}, fail: func(op, p string) error {
		if op == "rename" && strings.Contains(p, "/kaudit/"+TempPrefix+"kube-apiserver.yaml.") && strings.HasSuffix(p, "->"+tn.manifest) {
			return &os.LinkError{Op: "rename", Old: p, New: p, Err: syscall.EXDEV}
		}
		if op == "rename" && strings.Contains(p, "/manifests/"+TempPrefix) {
			sawDotfile = true
		}
		return nil
	}}
	r := &Rollout{Files: tn.files(ffs), Health: &fakeKubelet{tn: tn}, Clock: clock.RealClock{}}
	res, _ := r.Apply(context.Background(), tn.target(), time.Second)
	if res.Phase != v1alpha1.NodeApplied || !sawDotfile {
		t.Fatalf("result = %+v, dotfile used = %v", res, sawDotfile)
	}
	assertOnlyManifest(t, tn)
}

func TestReapplyingTheSameHashUsesANewAnnotationValue(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	r := &Rollout{Files: tn.files(OSFS{}), Health: &fakeKubelet{tn: tn}, Clock: clock.RealClock{}}
	if res, _ := r.Apply(context.Background(), tn.target(), time.Second); res.Phase != v1alpha1.NodeApplied {
		t.Fatal(res)
	}
	// Only the log settings change: the manifest changes, the hash does not.
	tg := tn.target()
	f := *tg.Flags
	f.MaxAge = 30
	tg.Flags = &f
	if ok, _ := r.Files.UpToDate(tg); ok {
		t.Fatal("a flag change must make the node out of date")
	}
	res, _ := r.Apply(context.Background(), tg, time.Second)
	if res.Phase != v1alpha1.NodeApplied {
		t.Fatal(res)
	}
	v, _ := staticpod.Annotation([]byte(tn.read(t, DefaultManifest)), staticpod.AnnotationPolicyHash)
	if v != policy.ShortHash(newHash)+"-r2" {
		t.Errorf("annotation = %q", v)
	}
}

// TestCrashAtEveryStepLeavesOldOrNewPolicy kills the agent at every file-system operation of a
// rollout (a write is cut in half), then starts a new agent, and checks that the node holds
// exactly the old or the new policy, consistent with the manifest, which always parses.
func TestCrashAtEveryStepLeavesOldOrNewPolicy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		manifest string
		managed  bool
		healthy  bool
	}{
		{"kubeadm success", "kubeadm-v1.33.yaml", true, true},
		{"kubeadm rollback", "kubeadm-v1.33.yaml", true, false},
		{"hand-edited success", "hand-edited-audit.yaml", false, true},
		{"hand-edited rollback", "hand-edited-audit.yaml", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bad func(string) bool
			if !tc.healthy {
				bad = badNew
			}
			// Count the operations of an uninterrupted rollout.
			tn := newTestNode(t, tc.manifest, tc.managed)
			counter := &faultFS{FS: OSFS{}}
			r := &Rollout{Files: tn.files(counter), Health: &fakeKubelet{tn: tn, bad: bad}, Clock: clock.RealClock{}}
			if _, err := r.Apply(context.Background(), tn.target(), time.Second); err != nil {
				t.Fatal(err)
			}
			total := counter.count()
			if total < 10 {
				t.Fatalf("only %d operations counted", total)
			}
			for k := 1; k <= total; k++ {
				tn := newTestNode(t, tc.manifest, tc.managed)
				kubelet := &fakeKubelet{tn: tn, bad: bad}
				crasher := &faultFS{FS: OSFS{}, crashAt: k}
				r := &Rollout{Files: tn.files(crasher), Health: kubelet, Clock: clock.RealClock{}}
				op := runUntilCrash(t, func() { _, _ = r.Apply(context.Background(), tn.target(), time.Second) })
				where := fmt.Sprintf("crash at operation %d (%s)", k, op)
				assertNodeConsistent(t, tn, where, false)

				// A new agent starts and finishes or undoes the rollout.
				r2 := &Rollout{Files: tn.files(OSFS{}), Health: kubelet, Clock: clock.RealClock{}}
				if _, err := r2.Resume(context.Background(), time.Second); err != nil {
					t.Fatalf("%s: resume: %v", where, err)
				}
				assertNodeConsistent(t, tn, where, true)
				if j, _ := r2.Files.LoadJournal(); j != nil {
					t.Errorf("%s: journal left after recovery", where)
				}
			}
		})
	}
}

func runUntilCrash(t *testing.T, f func()) (op string) {
	t.Helper()
	defer func() {
		if v := recover(); v != nil {
			c, ok := v.(crash)
			if !ok {
				panic(v)
			}
			op = c.op
		}
	}()
	f()
	return "none: finished"
}

// assertNodeConsistent checks what a kubelet and an apiserver starting now would read.
func assertNodeConsistent(t *testing.T, tn *testNode, where string, recovered bool) {
	t.Helper()
	m := []byte(tn.read(t, DefaultManifest))
	ann, err := staticpod.Annotation(m, staticpod.AnnotationPolicyHash)
	if err != nil {
		t.Fatalf("%s: manifest does not parse: %v", where, err)
	}
	pol := tn.read(t, tn.policyFile)
	if pol != oldPolicy && pol != newPolicy {
		t.Fatalf("%s: policy file is neither old nor new: %q", where, pol)
	}
	entries, _ := os.ReadDir(filepath.Dir(tn.manifest))
	for _, e := range entries {
		if e.Name() != "kube-apiserver.yaml" && !strings.HasPrefix(e.Name(), ".") {
			t.Fatalf("%s: kubelet would run %s from the manifests directory", where, e.Name())
		}
	}
	if !recovered {
		// The apiserver started by the current manifest reads the new policy only if that
		// manifest carries the new annotation; before that, it is the old one or the new one
		// written ahead of the manifest (undone by recovery).
		return
	}
	isNew := staticpod.AnnotationBase(ann) == policy.ShortHash(newHash)
	if isNew != (pol == newPolicy) {
		t.Fatalf("%s: manifest annotation %q does not match the policy file (new=%v)", where, ann, pol == newPolicy)
	}
	assertOnlyManifest(t, tn)
	_ = filepath.WalkDir(tn.root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), TempPrefix) {
			t.Errorf("%s: temporary file left: %s", where, p)
		}
		return nil
	})
}

func assertOnlyManifest(t *testing.T, tn *testNode) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(tn.manifest))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "kube-apiserver.yaml" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("manifests directory holds %v, want only kube-apiserver.yaml", names)
	}
}

// faultFS counts mutating operations, crashes (panics) at operation crashAt, and injects errors.
type faultFS struct {
	FS
	mu      sync.Mutex
	ops     int
	crashAt int
	fail    func(op, path string) error
}

type crash struct{ op string }

func (f *faultFS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ops
}

// hit is called before each mutating operation.
func (f *faultFS) hit(op, path string, partial func()) error {
	f.mu.Lock()
	f.ops++
	n := f.ops
	f.mu.Unlock()
	if n == f.crashAt {
		if partial != nil {
			partial()
		}
		panic(crash{op: op + " " + path})
	}
	if f.fail != nil {
		return f.fail(op, path)
	}
	return nil
}

func (f *faultFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE) == 0 {
		file, err := f.FS.OpenFile(name, flag, perm)
		if err != nil {
			return nil, err
		}
		return &faultFile{File: file, fs: f, op: "syncdir"}, nil
	}
	if err := f.hit("create", name, nil); err != nil {
		return nil, err
	}
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f, op: "sync"}, nil
}

func (f *faultFS) Rename(oldpath, newpath string) error {
	if err := f.hit("rename", oldpath+"->"+newpath, nil); err != nil {
		return err
	}
	return f.FS.Rename(oldpath, newpath)
}

func (f *faultFS) Remove(name string) error {
	if err := f.hit("remove", name, nil); err != nil {
		return err
	}
	return f.FS.Remove(name)
}

type faultFile struct {
	File
	fs *faultFS
	op string
}

func (w *faultFile) Write(p []byte) (int, error) {
	if err := w.fs.hit("write", w.Name(), func() { _, _ = w.File.Write(p[:len(p)/2]) }); err != nil {
		return 0, err
	}
	return w.File.Write(p)
}

func (w *faultFile) Sync() error {
	if err := w.fs.hit(w.op, w.Name(), nil); err != nil {
		return err
	}
	return w.File.Sync()
}

// TestNothingButTheManifestIsEverCreatedInTheManifestsDirectory records every file operation
// of a rollout, a rollback and a recovery: kubelet must never see another file there, not even
// for an instant.
func TestNothingButTheManifestIsEverCreatedInTheManifestsDirectory(t *testing.T) {
	for _, healthy := range []bool{true, false} {
		tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
		manifestsDir := filepath.Dir(tn.manifest) + "/"
		var bad []string
		record := &faultFS{FS: OSFS{}, fail: func(op, p string) error {
			target := p
			if i := strings.Index(p, "->"); i >= 0 {
				target = p[i+2:]
			}
			if strings.HasPrefix(target, manifestsDir) && (op != "rename" || target != tn.manifest) {
				bad = append(bad, op+" "+p)
			}
			return nil
		}}
		var kubelet Health = &fakeKubelet{tn: tn}
		if !healthy {
			kubelet = &fakeKubelet{tn: tn, bad: badNew}
		}
		r := &Rollout{Files: tn.files(record), Health: kubelet, Clock: clock.RealClock{}}
		if _, err := r.Apply(context.Background(), tn.target(), time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Resume(context.Background(), time.Second); err != nil {
			t.Fatal(err)
		}
		if len(bad) > 0 {
			t.Errorf("healthy=%v: operations in the manifests directory other than replacing the manifest: %q", healthy, bad)
		}
	}
}

// BenchmarkRolloutOverhead is the agent's own share of one node's rollout: everything but the
// apiserver's restart (the health wait returns at once), fsyncs included.
func BenchmarkRolloutOverhead(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		tn := newTestNode(b, "kubeadm-v1.33.yaml", true)
		r := &Rollout{Files: tn.files(OSFS{}), Health: &fakeKubelet{tn: tn}, Clock: clock.RealClock{}}
		b.StartTimer()
		res, err := r.Apply(context.Background(), tn.target(), time.Second)
		if err != nil || res.Phase != v1alpha1.NodeApplied {
			b.Fatal(err, res.Message)
		}
	}
}

func TestRollbackAnnotationNeverRepeatsThePreviousValue(t *testing.T) {
	if got := rollbackAnnotation("abc", "abc-rollback-1", 1); got != "abc-rollback-2" {
		t.Errorf("got %q", got)
	}
	if got := rollbackAnnotation("abc", "abc", 1); got != "abc-rollback-1" {
		t.Errorf("got %q", got)
	}
}

func TestKubeadmUpgradeIsSeenFromItsManifestsDirectoryOnly(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	files := tn.files(OSFS{})
	tmp := tn.local(DefaultKubeadmTempDir)
	if dir, err := files.KubeadmUpgrade(); err != nil || dir != "" {
		t.Errorf("without %s: KubeadmUpgrade() = %q, %v", DefaultKubeadmTempDir, dir, err)
	}
	// kubeadm keeps these after every upgrade.
	for _, d := range []string{"kubeadm-backup-manifests-2025-01-01-00-00-00", "kubeadm-backup-etcd-2025-01-01-00-00-00"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if dir, err := files.KubeadmUpgrade(); err != nil || dir != "" {
		t.Errorf("with backups only: KubeadmUpgrade() = %q, %v", dir, err)
	}
	if err := os.MkdirAll(filepath.Join(tmp, "kubeadm-upgraded-manifests4021"), 0o700); err != nil {
		t.Fatal(err)
	}
	if dir, err := files.KubeadmUpgrade(); err != nil || dir != DefaultKubeadmTempDir+"/kubeadm-upgraded-manifests4021" {
		t.Errorf("during an upgrade: KubeadmUpgrade() = %q, %v", dir, err)
	}
}

// A failure recorded by an agent from before shutdownDelay existed must still hold back the
// same target, so the key of a target without it is what %+v printed then.
func TestTargetKeyWithoutAShutdownDelayIsTheEarlierAgentsKey(t *testing.T) {
	earlier := struct {
		PolicyFile, LogPath        string
		MaxAge, MaxBackup, MaxSize int32
	}{managed.PolicyFile, managed.LogPath, managed.MaxAge, managed.MaxBackup, managed.MaxSize}
	flags := managed
	target := Target{Hash: newHash, Flags: &flags}
	if got, want := target.Key(), fmt.Sprintf("%s flags=%+v", newHash, earlier); got != want {
		t.Errorf("Key() = %q, want %q", got, want)
	}
	withDelay := managed
	withDelay.ShutdownDelay = "15s"
	if got := (Target{Hash: newHash, Flags: &withDelay}).Key(); got == target.Key() || !strings.HasSuffix(got, " shutdownDelay=15s") {
		t.Errorf("Key() with a shutdown delay = %q", got)
	}
}
