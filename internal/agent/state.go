package agent

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/kaudit/kaudit/internal/staticpod"
)

// Files in the state directory.
const (
	journalFile        = "journal.json"
	stateFile          = "state.json"
	backupPolicyFile   = "previous-policy.yaml"
	backupManifestFile = "previous-kube-apiserver.yaml"
	appliedFile        = "applied-revision.json"
)

// State is what the node runs, kept in the state directory across agent restarts.
type State struct {
	Revision           int64     `json:"revision,omitempty"`
	Hash               string    `json:"hash,omitempty"`
	Annotation         string    `json:"annotation,omitempty"`
	LastRestartTime    time.Time `json:"lastRestartTime,omitzero"`
	LastRolloutSeconds int64     `json:"lastRolloutSeconds,omitempty"`
	// Restarts and Rollbacks count manifest changes; they make annotation values unique.
	Restarts  int64 `json:"restarts,omitempty"`
	Rollbacks int64 `json:"rollbacks,omitempty"`
	// Failed is the last revision that could not be applied; the agent does not retry it.
	Failed *Failure `json:"failed,omitempty"`
}

// Failure records a revision the node could not apply.
type Failure struct {
	Revision int64  `json:"revision"`
	Hash     string `json:"hash"`
	// Key is the failed target's Key, and Generation the spec generation it was tried under.
	Key        string `json:"key"`
	Generation int64  `json:"generation,omitempty"`
	// RolledBack says whether the node returned to its previous policy and is healthy on it.
	RolledBack bool   `json:"rolledBack"`
	Message    string `json:"message"`
}

// appliedRevision is the revision the node runs as the agent applied it: its policy as written
// and the managed flags. Drift is checked against it while a newer revision waits, and the
// history of revisions in force takes its policy rather than the node's file, which may have
// drifted.
type appliedRevision struct {
	appliedKey
	Policy string `json:"policy"`
}

// appliedKey is the record of the applied revision without its policy, which is megabytes at
// 5,000 modules and which NodeFiles.runs does not need.
type appliedKey struct {
	Revision int64                   `json:"revision"`
	Hash     string                  `json:"hash"`
	Flags    *staticpod.FlagSettings `json:"flags,omitempty"`
}

// of says whether the record is of the revision st says the node runs: a record of another
// one is stale (Commit writes the record before the state).
func (k appliedKey) of(st State) bool { return k.Revision == st.Revision && k.Hash == st.Hash }

func (r appliedRevision) target() Target {
	return Target{Revision: r.Revision, Hash: r.Hash, Policy: []byte(r.Policy), Flags: r.Flags}
}

// loadApplied reads the record of the revision the node runs (st's); nil when there is none
// for it (a node whose revision an older agent applied).
func (f *NodeFiles) loadApplied(st State) (*appliedRevision, error) {
	var r appliedRevision
	if ok, err := f.readJSON(appliedFile, &r); err != nil || !ok || !r.of(st) {
		return nil, err
	}
	return &r, nil
}

// runs says whether the node runs t, as st and the record of the applied revision say: the same
// revision and policy and, where the record says which, the same managed flags. A change of
// spec.auditLog or spec.shutdownDelayDuration is a new rollout of the same revision, so the
// node's flags differing from the new ones are not drift. Without a readable record (a
// revision an older agent applied) revision and policy decide.
func (f *NodeFiles) runs(st State, t Target) bool {
	if st.Revision != t.Revision || st.Hash != t.Hash {
		return false
	}
	var applied appliedKey
	ok, err := f.readJSON(appliedFile, &applied)
	if err != nil || !ok || !applied.of(st) {
		return true
	}
	return Target{Hash: applied.Hash, Flags: applied.Flags}.Key() == t.Key()
}

func (f *NodeFiles) saveApplied(t Target) error {
	return f.writeJSON(appliedFile, appliedRevision{appliedKey: appliedKey{Revision: t.Revision, Hash: t.Hash, Flags: t.Flags}, Policy: string(t.Policy)})
}

// LoadState reads the node's state; a node the agent never touched has an empty state.
func (f *NodeFiles) LoadState() (State, error) {
	var s State
	_, err := f.readJSON(stateFile, &s)
	return s, err
}

func (f *NodeFiles) saveState(s State) error {
	return f.writeJSON(stateFile, s)
}

// readJSON decodes the state directory's file name into v; false when there is no such file.
func (f *NodeFiles) readJSON(name string, v any) (bool, error) {
	b, ok, err := readOptional(f.FS, f.inStateDir(name))
	if err != nil || !ok {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s: %w", f.inStateDir(name), err)
	}
	return true, nil
}

// writeJSON writes v as the state directory's file name.
func (f *NodeFiles) writeJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteAtomic(f.FS, f.inStateDir(name), "", append(b, '\n'), 0o600)
}

// inStateDir is the agent's path of the state directory's file name.
func (f *NodeFiles) inStateDir(name string) string {
	return filepath.Join(f.Paths.local(f.Paths.StateDir), name)
}
