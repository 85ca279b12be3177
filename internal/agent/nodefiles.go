package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/staticpod"
)

// Host paths the agent uses by default (see docs/design.md, "Node paths and files").
const (
	DefaultManifest   = "/etc/kubernetes/manifests/kube-apiserver.yaml"
	DefaultPolicyFile = "/etc/kubernetes/audit/policy.yaml"
	DefaultStateDir   = "/etc/kubernetes/kaudit"
	// DefaultKubeadmTempDir is where kubeadm keeps the temporary directories of an upgrade.
	DefaultKubeadmTempDir = "/etc/kubernetes/tmp"
)

// Paths are the node's files, as host paths. The agent sees the host's files under Root ("/"
// in the DaemonSet, whose hostPath mounts keep the host's paths; a temporary directory in tests).
type Paths struct {
	// Root is where the host's file system is seen by the agent.
	Root string
	// Manifest is the kube-apiserver static pod manifest.
	Manifest string
	// PolicyFile is where the policy is written when the agent manages the apiserver's flags;
	// otherwise the manifest's --audit-policy-file decides.
	PolicyFile string
	// StateDir holds the journal, the agent's state and the backups. Never the manifests
	// directory: kubelet would run a backup of the manifest as a second static pod.
	StateDir string
	// ManifestTempDir is where the manifest's temporary file is written before it is renamed
	// over the manifest; "" means StateDir. It must be on the same mount as the manifest; when
	// it is not (EXDEV), the agent falls back to a dotfile in the manifests directory, which
	// kubelet ignores.
	ManifestTempDir string
	// KubeadmTempDir is where kubeadm creates its directories during an upgrade; "" never
	// looks for one (see NodeFiles.KubeadmUpgrade).
	KubeadmTempDir string
}

// DefaultPaths are the kubeadm paths seen through root.
func DefaultPaths(root string) Paths {
	return Paths{Root: root, Manifest: DefaultManifest, PolicyFile: DefaultPolicyFile, StateDir: DefaultStateDir, KubeadmTempDir: DefaultKubeadmTempDir}
}

func (p Paths) local(host string) string { return filepath.Join(p.Root, filepath.FromSlash(host)) }

// NodeFiles performs the file steps of a rollout on one node.
type NodeFiles struct {
	Paths Paths
	FS    FS
	Clock clock.PassiveClock

	// crossMount is set once renaming from ManifestTempDir into the manifests directory
	// failed with EXDEV.
	crossMount bool
}

// NewNodeFiles returns the node's files on the real file system and clock.
func NewNodeFiles(p Paths) *NodeFiles {
	return &NodeFiles{Paths: p, FS: OSFS{}, Clock: clock.RealClock{}}
}

// Target is what a node should run.
type Target struct {
	Revision int64
	// Hash is the revision's full policy hash.
	Hash   string
	Policy []byte
	// Flags, when not nil, are the apiserver flags to manage (spec.manageAPIServerFlags).
	Flags *staticpod.FlagSettings
	// Generation is the singleton's spec generation that asked for this target. A failed target
	// is retried once the spec changes (e.g. a longer rollout.healthTimeout).
	Generation int64
	// HealthTimeout is the rollout's health timeout (spec.rollout.healthTimeout), recorded in
	// the journal so that a restarted agent waits as long even when it cannot read the spec.
	HealthTimeout time.Duration
}

// Key identifies what a node runs: the policy hash and the managed flags. A failed key is not
// retried.
func (t Target) Key() string {
	if t.Flags == nil {
		return t.Hash
	}
	f := t.Flags
	// Spelled out as %+v printed it before ShutdownDelay existed, so that failures recorded by
	// earlier agents still match.
	key := fmt.Sprintf("%s flags={PolicyFile:%s LogPath:%s MaxAge:%d MaxBackup:%d MaxSize:%d}", t.Hash, f.PolicyFile, f.LogPath, f.MaxAge, f.MaxBackup, f.MaxSize)
	if f.ShutdownDelay != "" {
		key += " shutdownDelay=" + f.ShutdownDelay
	}
	return key
}

func (f *NodeFiles) manifestFile() string { return f.Paths.local(f.Paths.Manifest) }

// ReadManifest reads the apiserver's static pod manifest.
func (f *NodeFiles) ReadManifest() ([]byte, error) {
	b, err := f.FS.ReadFile(f.manifestFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("static pod manifest %s not found: is this a kubeadm-style control-plane node, and is %s mounted into the agent pod?", f.Paths.Manifest, path.Dir(f.Paths.Manifest))
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Paths.Manifest, explain(err))
	}
	return b, nil
}

// layoutError is a layout of the node's files that the agent cannot work with (the manifest's
// flags and mounts, the agent's own mounts). It lasts until someone changes the node, so the
// agent reports it and looks again at its resync, not in a tight loop.
type layoutError struct{ err error }

func (e *layoutError) Error() string { return e.err.Error() }
func (e *layoutError) Unwrap() error { return e.err }

// desiredManifest is the current manifest with the managed flags applied, and the host path of
// the policy file that manifest makes the apiserver read, whose directory must be mounted into
// the agent.
func (f *NodeFiles) desiredManifest(t Target) (manifest []byte, policyFile string, err error) {
	cur, err := f.ReadManifest()
	if err != nil {
		return nil, "", err
	}
	manifest = cur
	if t.Flags != nil {
		if manifest, err = staticpod.EnsureFlags(cur, *t.Flags); err != nil {
			return nil, "", &layoutError{fmt.Errorf("%s: %w", f.Paths.Manifest, err)}
		}
	}
	_, host, err := staticpod.PolicyFileInManifest(manifest)
	if err != nil {
		return nil, "", &layoutError{fmt.Errorf("%s: %w", f.Paths.Manifest, err)}
	}
	if fi, err := f.FS.Stat(f.Paths.local(path.Dir(host))); err != nil || !fi.IsDir() {
		return nil, "", &layoutError{fmt.Errorf("the policy's directory %s is not mounted into the agent pod: add a hostPath directory mount for it", path.Dir(host))}
	}
	return manifest, host, nil
}

// kubeadmUpgradePrefix starts the name of the directory in which kubeadm writes the new static
// pod manifests of an upgrade. kubeadm removes it when the upgrade succeeds, and keeps it after
// a failed one for the user to inspect.
const kubeadmUpgradePrefix = "kubeadm-upgraded-manifests"

// KubeadmUpgrade is the host path of the directory of a kubeadm upgrade in progress on the
// node, or "". While kubeadm upgrades the node, it replaces the manifest and rolls it back on
// failure; a rollout at the same time would race it.
func (f *NodeFiles) KubeadmUpgrade() (string, error) {
	if f.Paths.KubeadmTempDir == "" {
		return "", nil
	}
	entries, err := f.FS.ReadDir(f.Paths.local(f.Paths.KubeadmTempDir))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("looking for a kubeadm upgrade in %s: %w", f.Paths.KubeadmTempDir, err)
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), kubeadmUpgradePrefix) {
			return path.Join(f.Paths.KubeadmTempDir, e.Name()), nil
		}
	}
	return "", nil
}

// UpToDate reports whether the node already runs t: the manifest carries t's hash and the
// managed flags, and the policy file holds t's policy, or one with the same hash that differs
// only in comments (then Adopt refreshes the file without a restart).
func (f *NodeFiles) UpToDate(t Target) (bool, error) {
	cur, err := f.ReadManifest()
	if err != nil {
		return false, err
	}
	want, file, err := f.desiredManifest(t)
	if err != nil {
		return false, err
	}
	if string(want) != string(cur) {
		return false, nil
	}
	ann, err := staticpod.Annotation(cur, staticpod.AnnotationPolicyHash)
	if err != nil {
		return false, err
	}
	if staticpod.AnnotationBase(ann) != policy.ShortHash(t.Hash) {
		return false, nil
	}
	b, ok, err := readOptional(f.FS, f.Paths.local(file))
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", file, err)
	}
	if !ok {
		return false, nil
	}
	if string(b) == string(t.Policy) {
		return true, nil
	}
	// Only the file's own content counts: state.json says what the agent last wrote, not what
	// the file holds now (edited by hand, restored from a backup).
	h, err := policy.HashOf(b)
	return err == nil && h == t.Hash, nil
}

// Adopt records an up-to-date node as running t's revision (see appliedRevision), and rewrites
// the policy file when only its comments differ (a renamed module), which needs no restart.
func (f *NodeFiles) Adopt(t Target) error {
	_, file, err := f.desiredManifest(t)
	if err != nil {
		return err
	}
	if b, _, err := readOptional(f.FS, f.Paths.local(file)); err != nil {
		return err
	} else if string(b) != string(t.Policy) {
		if _, err := policy.Load(t.Policy); err != nil {
			return fmt.Errorf("policy rejected by the apiserver's loader: %w", err)
		}
		if h, err := policy.HashOf(t.Policy); err != nil || h != t.Hash {
			return fmt.Errorf("the policy's hash %s differs from the revision's %s (%v): not written", h, t.Hash, err)
		}
		if h, err := policy.HashOf(b); err != nil || h != t.Hash {
			return fmt.Errorf("%s differs from the revision's policy in more than comments: it needs a rollout, not a rewrite", file)
		}
		if err := WriteAtomic(f.FS, f.Paths.local(file), "", t.Policy, 0o644); err != nil {
			return err
		}
	}
	st, err := f.LoadState()
	if err != nil {
		return err
	}
	if r, err := f.loadApplied(State{Revision: t.Revision, Hash: t.Hash}); err != nil || r == nil || r.Policy != string(t.Policy) || !ptr.Equal(r.Flags, t.Flags) {
		if err := f.saveApplied(t); err != nil {
			return err
		}
	}
	if st.Revision == t.Revision && st.Hash == t.Hash {
		return nil
	}
	cur, err := f.ReadManifest()
	if err != nil {
		return err
	}
	st.Revision, st.Hash = t.Revision, t.Hash
	if st.Annotation, err = staticpod.Annotation(cur, staticpod.AnnotationPolicyHash); err != nil {
		return err
	}
	return f.saveState(st)
}

// rollbackAnnotation is the annotation value of a rollback: never the value the manifest had
// before the rollout, since a byte-identical manifest may keep the old static pod's UID and never
// start again.
func rollbackAnnotation(base, previous string, n int64) string {
	for {
		v := fmt.Sprintf("%s-rollback-%d", base, n)
		if v != previous {
			return v
		}
		n++
	}
}

// Begin validates t, resolves the policy file, backs up the policy and the manifest into the
// state directory and writes the journal. It changes nothing the apiserver reads.
func (f *NodeFiles) Begin(t Target) (*Journal, error) {
	if _, err := policy.Load(t.Policy); err != nil {
		return nil, fmt.Errorf("revision %d: policy rejected by the apiserver's loader: %w", t.Revision, err)
	}
	stateDir := f.Paths.local(f.Paths.StateDir)
	if fi, err := f.FS.Stat(stateDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("state directory %s is missing: mount it into the agent pod as a hostPath directory", f.Paths.StateDir)
	}
	if j, err := f.LoadJournal(); err != nil {
		return nil, err
	} else if j != nil {
		return nil, fmt.Errorf("a rollout of revision %d is unfinished on this node: recover it first", j.Revision)
	}
	st, err := f.LoadState()
	if err != nil {
		return nil, err
	}
	cur, err := f.ReadManifest()
	if err != nil {
		return nil, err
	}
	if _, err := staticpod.ParsePod(cur); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Paths.Manifest, err)
	}
	_, file, err := f.desiredManifest(t)
	if err != nil {
		return nil, err
	}
	prevAnn, err := staticpod.Annotation(cur, staticpod.AnnotationPolicyHash)
	if err != nil {
		return nil, err
	}
	ann := policy.ShortHash(t.Hash)
	for n := st.Restarts + 1; ann == prevAnn || ann == staticpod.AnnotationBase(prevAnn); n++ {
		ann = fmt.Sprintf("%s-r%d", policy.ShortHash(t.Hash), n)
	}
	prevBase := staticpod.AnnotationBase(prevAnn)
	if prevBase == "" {
		prevBase = "none"
	}
	j := &Journal{
		Step:                   StepBegun,
		Revision:               t.Revision,
		Hash:                   t.Hash,
		Key:                    t.Key(),
		Generation:             t.Generation,
		HealthTimeout:          t.HealthTimeout,
		Annotation:             ann,
		PolicyFile:             file,
		Flags:                  t.Flags,
		Policy:                 string(t.Policy),
		PreviousManifestSHA256: sha256Hex(cur),
		PreviousRevision:       st.Revision,
		PreviousHash:           st.Hash,
		PreviousAnnotation:     prevAnn,
		RollbackAnnotation:     rollbackAnnotation(prevBase, prevAnn, st.Rollbacks+1),
		StartedAt:              f.Clock.Now().UTC(),
	}
	old, had, err := readOptional(f.FS, f.Paths.local(file))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, explain(err))
	}
	j.HadPolicy = had
	if had {
		if err := WriteAtomic(f.FS, f.inStateDir(backupPolicyFile), "", old, 0o600); err != nil {
			return nil, fmt.Errorf("backing up the policy: %w", err)
		}
	}
	if err := WriteAtomic(f.FS, f.inStateDir(backupManifestFile), "", cur, 0o600); err != nil {
		return nil, fmt.Errorf("backing up the manifest: %w", err)
	}
	if err := f.saveJournal(j); err != nil {
		return nil, fmt.Errorf("writing the journal: %w", err)
	}
	return j, nil
}

// WritePolicy writes the new policy file atomically.
func (f *NodeFiles) WritePolicy(j *Journal, t Target) error {
	if err := WriteAtomic(f.FS, f.Paths.local(j.PolicyFile), "", t.Policy, 0o644); err != nil {
		return err
	}
	j.Step = StepPolicyWritten
	return f.saveJournal(j)
}

// BumpManifest writes the manifest with the managed flags and the new policy-hash annotation,
// which makes kubelet restart the apiserver. It refuses when the manifest changed since Begin
// backed it up: a rollback must know exactly what kaudit changed.
func (f *NodeFiles) BumpManifest(j *Journal) error {
	cur, err := f.ReadManifest()
	if err != nil {
		return err
	}
	if sha256Hex(cur) != j.PreviousManifestSHA256 {
		return fmt.Errorf("%s changed since the rollout began (another tool edits it)", f.Paths.Manifest)
	}
	manifest, err := kauditManifest(cur, j)
	if err != nil {
		return fmt.Errorf("%s: %w", f.Paths.Manifest, err)
	}
	j.Step, j.ChangedAt, j.ManifestSHA256 = StepManifestWriting, f.Clock.Now().UTC(), sha256Hex(manifest)
	if err := f.saveJournal(j); err != nil {
		return err
	}
	if err := f.writeManifest(manifest); err != nil {
		return err
	}
	j.Step = StepManifestWritten
	return f.saveJournal(j)
}

// kauditManifest is the manifest that j's rollout writes over previous: the managed flags and
// their mounts, and the new policy-hash annotation.
func kauditManifest(previous []byte, j *Journal) ([]byte, error) {
	out := previous
	if j.Flags != nil {
		var err error
		if out, err = staticpod.EnsureFlags(out, *j.Flags); err != nil {
			return nil, err
		}
	}
	return staticpod.SetAnnotation(out, staticpod.AnnotationPolicyHash, j.Annotation)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// writeManifest replaces the manifest atomically with its temporary file outside the manifests
// directory, so kubelet never reads a partial manifest nor a second one.
func (f *NodeFiles) writeManifest(b []byte) error {
	tmp := f.Paths.ManifestTempDir
	if tmp == "" {
		tmp = f.Paths.StateDir
	}
	perm := os.FileMode(0o600) // kubeadm's
	if fi, err := f.FS.Stat(f.manifestFile()); err == nil {
		perm = fi.Mode().Perm()
	}
	if !f.crossMount {
		err := WriteAtomic(f.FS, f.manifestFile(), f.Paths.local(tmp), b, perm)
		if err == nil || !isEXDEV(err) {
			return err
		}
		// Different mounts (the DaemonSet mounts each directory separately): from now on, a
		// dotfile next to the manifest, which kubelet skips.
		f.crossMount = true
	}
	return WriteAtomic(f.FS, f.manifestFile(), "", b, perm)
}

// Commit records the node as running j's revision and ends the rollout.
func (f *NodeFiles) Commit(j *Journal) error {
	st, err := f.LoadState()
	if err != nil {
		return err
	}
	now := f.Clock.Now().UTC()
	st.Revision, st.Hash, st.Annotation = j.Revision, j.Hash, j.Annotation
	st.LastRestartTime = j.ChangedAt
	st.LastRolloutSeconds = int64(now.Sub(j.StartedAt).Round(time.Second) / time.Second)
	st.Restarts++
	st.Failed = nil
	// kube-apiserver restarted on the files this rollout wrote: no restore waits for a verdict.
	if err := f.removeDriftRestore(); err != nil {
		return err
	}
	// Before the state: a record of another revision than the state's is ignored.
	if j.Policy != "" {
		if err := f.saveApplied(Target{Revision: j.Revision, Hash: j.Hash, Policy: []byte(j.Policy), Flags: j.Flags}); err != nil {
			return err
		}
	}
	if err := f.saveState(st); err != nil {
		return err
	}
	return f.removeJournal()
}

// Abort undoes a rollout whose manifest was not changed: the old policy file comes back and the
// apiserver was never restarted. Nothing is recorded as failed: such errors come from the node
// (a read-only or full disk), not from the revision, so the agent tries again later.
func (f *NodeFiles) Abort(j *Journal) error {
	if err := f.restorePolicy(j); err != nil {
		return err
	}
	return f.removeJournal()
}

func (f *NodeFiles) restorePolicy(j *Journal) error {
	file := f.Paths.local(j.PolicyFile)
	if !j.HadPolicy {
		if err := f.FS.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", j.PolicyFile, explain(err))
		}
		return SyncDir(f.FS, filepath.Dir(file))
	}
	old, err := f.FS.ReadFile(f.inStateDir(backupPolicyFile))
	if err != nil {
		return fmt.Errorf("reading the policy backup: %w", err)
	}
	if cur, ok, err := readOptional(f.FS, file); err == nil && ok && string(cur) == string(old) {
		return nil // never changed, or already restored
	}
	if err := WriteAtomic(f.FS, file, "", old, 0o644); err != nil {
		return fmt.Errorf("restoring the policy: %w", err)
	}
	return nil
}

// ManifestChangedError says that a rollback left the manifest alone: someone else changed it
// during the rollout, in a way that kaudit's own changes cannot safely be undone on.
type ManifestChangedError struct {
	// Manifest is the manifest's host path.
	Manifest string
	Err      error
}

func (e *ManifestChangedError) Error() string {
	return fmt.Sprintf("not rolled back: %s was changed by someone else during the rollout, and kaudit's own changes cannot be undone on it safely (%v), so it is left as it is", e.Manifest, e.Err)
}

func (e *ManifestChangedError) Unwrap() error { return e.Err }

// Restore puts the previous policy back, and the manifest, with a new annotation value so that
// kubelet restarts the apiserver on them even if it never restarted for the new one. The
// manifest comes back whole only while it is exactly what the rollout wrote. Otherwise
// someone else changed it meanwhile (a kubeadm upgrade), and a whole restore would undo that
// change too: only kaudit's own changes are undone on the current manifest (the managed flags
// and mounts, see staticpod.RevertFlags), or, where they cannot be, the manifest is left as it
// is and Restore returns a *ManifestChangedError, with the policy file restored all the same.
func (f *NodeFiles) Restore(j *Journal, reason string) error {
	if j.Step != StepRollingBack {
		j.Step, j.Reason, j.RollbackAt = StepRollingBack, reason, f.Clock.Now().UTC()
		if err := f.saveJournal(j); err != nil {
			return err
		}
	}
	manifest, err := f.rollbackManifest(j)
	var changed *ManifestChangedError
	if err != nil && !errors.As(err, &changed) {
		return err
	}
	if err := f.restorePolicy(j); err != nil {
		return err
	}
	if changed != nil {
		return changed
	}
	if manifest == nil {
		return nil
	}
	return f.writeManifest(manifest)
}

// rollbackManifest is the manifest a rollback of j writes, or nil when the manifest already
// carries the rollback annotation (a rollback interrupted after writing it).
func (f *NodeFiles) rollbackManifest(j *Journal) ([]byte, error) {
	cur, err := f.ReadManifest()
	if err != nil {
		return nil, err
	}
	previous, err := f.FS.ReadFile(f.inStateDir(backupManifestFile))
	if err != nil {
		return nil, fmt.Errorf("reading the manifest backup: %w", err)
	}
	// A journal of an agent older than these hashes records neither them nor the flags it set:
	// its rollback is the one that agent would have made, the whole backup.
	if sha256Hex(cur) == j.ManifestSHA256 || j.PreviousManifestSHA256 == "" {
		out, err := staticpod.SetAnnotation(previous, staticpod.AnnotationPolicyHash, j.RollbackAnnotation)
		if err != nil {
			return nil, fmt.Errorf("manifest backup: %w", err)
		}
		return out, nil
	}
	if ann, err := staticpod.Annotation(cur, staticpod.AnnotationPolicyHash); err == nil && ann == j.RollbackAnnotation {
		return nil, nil
	}
	changed := func(err error) error { return &ManifestChangedError{Manifest: f.Paths.Manifest, Err: err} }
	written, err := kauditManifest(previous, j)
	if err != nil {
		return nil, changed(err)
	}
	if j.ManifestSHA256 != "" && sha256Hex(written) != j.ManifestSHA256 {
		return nil, changed(errors.New("what kaudit wrote cannot be rebuilt from the backup"))
	}
	out, err := staticpod.RevertFlags(cur, previous, written)
	if err != nil {
		return nil, changed(err)
	}
	if out, err = staticpod.SetAnnotation(out, staticpod.AnnotationPolicyHash, j.RollbackAnnotation); err != nil {
		return nil, changed(err)
	}
	return out, nil
}

// FinishRollback records the failure after a rollback and ends the rollout. healthy says
// whether the apiserver came back on the old files.
func (f *NodeFiles) FinishRollback(j *Journal, message string, healthy bool) error {
	st, err := f.LoadState()
	if err != nil {
		return err
	}
	// The node runs the previous revision again, whatever an interrupted Commit recorded.
	st.Revision, st.Hash = j.PreviousRevision, j.PreviousHash
	st.Annotation = j.RollbackAnnotation
	st.LastRestartTime = j.RollbackAt
	st.Restarts++
	st.Rollbacks++
	st.Failed = &Failure{Revision: j.Revision, Hash: j.Hash, Key: j.Key, Generation: j.Generation, RolledBack: healthy, Message: message}
	// kube-apiserver restarted on the files the rollback wrote: no restore waits for a verdict.
	if err := f.removeDriftRestore(); err != nil {
		return err
	}
	if err := f.saveState(st); err != nil {
		return err
	}
	return f.removeJournal()
}

// FinishStopped records a failed rollout whose rollback left the manifest alone (see
// ManifestChangedError), and ends the rollout. The policy file holds the previous policy again.
func (f *NodeFiles) FinishStopped(j *Journal, message string) error {
	st, err := f.LoadState()
	if err != nil {
		return err
	}
	st.Revision, st.Hash = j.PreviousRevision, j.PreviousHash
	st.Annotation = j.Annotation
	st.LastRestartTime = j.ChangedAt
	st.Restarts++
	st.Failed = &Failure{Revision: j.Revision, Hash: j.Hash, Key: j.Key, Generation: j.Generation, Message: message}
	if err := f.saveState(st); err != nil {
		return err
	}
	return f.removeJournal()
}

// Recovery is what Recover found and did.
type Recovery int

// What Recover found.
const (
	// RecoveredNothing: no rollout was in progress.
	RecoveredNothing Recovery = iota
	// RecoveredUndone: the manifest was never changed; the old policy file is back.
	RecoveredUndone
	// RecoveredWaitNew: the new manifest is in place; the caller waits for health as usual.
	RecoveredWaitNew
	// RecoveredWaitRollback: a rollback was in progress and has been redone; the caller waits
	// for the old apiserver's health.
	RecoveredWaitRollback
)

// Recover finishes what a killed agent left: it removes temporary files and, from the journal
// and the files themselves, either undoes a rollout whose manifest never changed, or redoes an
// interrupted rollback, or reports that the new manifest is in place.
func (f *NodeFiles) Recover() (*Journal, Recovery, error) {
	tmpDir := f.Paths.ManifestTempDir
	if tmpDir == "" {
		tmpDir = f.Paths.StateDir
	}
	for _, d := range []string{f.Paths.StateDir, path.Dir(f.Paths.Manifest), tmpDir, path.Dir(f.Paths.PolicyFile)} {
		if err := RemoveTemps(f.FS, f.Paths.local(d)); err != nil {
			return nil, RecoveredNothing, fmt.Errorf("removing temporary files from %s: %w", d, err)
		}
	}
	j, err := f.LoadJournal()
	if err != nil || j == nil {
		return nil, RecoveredNothing, err
	}
	if err := RemoveTemps(f.FS, f.Paths.local(path.Dir(j.PolicyFile))); err != nil {
		return nil, RecoveredNothing, err
	}
	cur, err := f.ReadManifest()
	if err != nil {
		return j, RecoveredNothing, err
	}
	ann, err := staticpod.Annotation(cur, staticpod.AnnotationPolicyHash)
	if err != nil {
		return j, RecoveredNothing, err
	}
	switch {
	case j.Step == StepRollingBack || ann == j.RollbackAnnotation:
		if j.Step != StepRollingBack {
			j.Step = StepRollingBack
		}
		if j.RollbackAt.IsZero() {
			j.RollbackAt = f.Clock.Now().UTC()
		}
		if err := f.Restore(j, j.Reason); err != nil {
			return j, RecoveredNothing, err
		}
		return j, RecoveredWaitRollback, nil
	case ann == j.Annotation:
		if j.Step != StepManifestWritten {
			j.Step = StepManifestWritten
			if err := f.saveJournal(j); err != nil {
				return j, RecoveredNothing, err
			}
		}
		return j, RecoveredWaitNew, nil
	default:
		if err := f.restorePolicy(j); err != nil {
			return j, RecoveredNothing, err
		}
		return j, RecoveredUndone, f.removeJournal()
	}
}
