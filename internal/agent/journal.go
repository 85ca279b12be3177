package agent

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/kaudit/kaudit/internal/staticpod"
)

// Journal steps, in order.
const (
	StepBegun           = "Begun"
	StepPolicyWritten   = "PolicyWritten"
	StepManifestWriting = "ManifestWriting"
	StepManifestWritten = "ManifestWritten"
	StepRollingBack     = "RollingBack"
)

// Journal records a rollout in progress on the node.
type Journal struct {
	Step     string `json:"step"`
	Revision int64  `json:"revision"`
	Hash     string `json:"hash"`
	// Key is the target's Key.
	Key        string `json:"key"`
	Generation int64  `json:"generation,omitempty"`
	// HealthTimeout is the health timeout the rollout started with; Resume uses it.
	HealthTimeout time.Duration `json:"healthTimeout,omitempty"`
	// Annotation is the value of the policy-hash annotation that starts the new apiserver.
	Annotation string `json:"annotation"`
	// PolicyFile is the host path of the policy file being replaced.
	PolicyFile string `json:"policyFile"`
	// HadPolicy says whether a policy file existed before (backed up in the state directory).
	HadPolicy bool `json:"hadPolicy"`
	// Flags are the managed apiserver flags the rollout sets, if any; a rollback undoes them.
	Flags *staticpod.FlagSettings `json:"flags,omitempty"`
	// Policy is the revision's policy, which Commit records as applied (see appliedRevision);
	// "" in the journal of an older agent.
	Policy string `json:"policy,omitempty"`
	// PreviousManifestSHA256 is the sha256 of the manifest backed up at Begin: the manifest is
	// changed only while it still is that one.
	PreviousManifestSHA256 string `json:"previousManifestSHA256"`
	// ManifestSHA256 is the sha256 of the manifest the rollout wrote. A rollback puts the backup
	// back whole only while the manifest is still exactly that; otherwise someone else changed
	// it too, and only kaudit's own changes are undone (see NodeFiles.Restore).
	ManifestSHA256     string `json:"manifestSHA256,omitempty"`
	PreviousRevision   int64  `json:"previousRevision,omitempty"`
	PreviousHash       string `json:"previousHash,omitempty"`
	PreviousAnnotation string `json:"previousAnnotation,omitempty"`
	// RollbackAnnotation is the annotation value that restarts the apiserver on the old files.
	RollbackAnnotation string    `json:"rollbackAnnotation"`
	StartedAt          time.Time `json:"startedAt"`
	// ChangedAt is when the manifest was (about to be) changed: the apiserver container must
	// have started after it.
	ChangedAt time.Time `json:"changedAt,omitzero"`
	// RollbackAt is when the manifest was (about to be) restored.
	RollbackAt time.Time `json:"rollbackAt,omitzero"`
	// Reason is why the rollout is being rolled back.
	Reason string `json:"reason,omitempty"`
}

// LoadJournal reads the journal of an unfinished rollout, or nil.
func (f *NodeFiles) LoadJournal() (*Journal, error) {
	var j Journal
	if ok, err := f.readJSON(journalFile, &j); err != nil || !ok {
		return nil, err
	}
	return &j, nil
}

func (f *NodeFiles) saveJournal(j *Journal) error { return f.writeJSON(journalFile, j) }

func (f *NodeFiles) removeJournal() error {
	if err := f.FS.Remove(f.inStateDir(journalFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing journal: %w", err)
	}
	return SyncDir(f.FS, f.Paths.local(f.Paths.StateDir))
}
