package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"k8s.io/utils/clock"
)

// lockFile, in the state directory, is locked by the one agent that acts on the node.
const lockFile = "agent.lock"

// StateLock is an agent's exclusive lock (flock) on its node's state directory. The rollout
// Lease tells nodes apart by name only, so without it two agents on one node (a force-deleted
// pod whose process still runs, a DaemonSet update with maxSurge, a manual run) would both act
// on the same files. The kernel releases the lock when its holder exits, however it exits.
type StateLock struct{ f *os.File }

// LockStateDir takes the node's state directory lock, waiting as long as another agent holds
// it: a new agent started while the old one still runs (maxSurge) then takes over the moment
// the old one exits, where exiting would leave it to kubelet's restart back-off of up to five
// minutes. waiting is called once, with what the holder wrote in the lock file, if it must
// wait. It returns ctx's error when ctx ends first.
func (f *NodeFiles) LockStateDir(ctx context.Context, c clock.Clock, waiting func(lock, holder string)) (*StateLock, error) {
	dir := f.Paths.local(f.Paths.StateDir)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("state directory %s is missing: mount it into the agent pod as a hostPath directory", f.Paths.StateDir)
	}
	name := f.inStateDir(lockFile)
	file, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return nil, symlinkError(name)
	}
	if err != nil {
		return nil, fmt.Errorf("opening the lock %s: %w", name, explain(err))
	}
	for told := false; ; told = true {
		err := syscall.Flock(int(file.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = file.Close()
			return nil, fmt.Errorf("locking %s: %w", name, err)
		}
		if !told && waiting != nil {
			waiting(name, lockHolder(file))
		}
		select {
		case <-ctx.Done():
			_ = file.Close()
			return nil, ctx.Err()
		case <-c.After(time.Second):
		}
	}
	// Say who holds it, for whoever waits next.
	holder := fmt.Sprintf("pid %d, locked at %s\n", os.Getpid(), c.Now().UTC().Format(time.RFC3339))
	if err := file.Truncate(0); err == nil {
		_, _ = file.WriteAt([]byte(holder), 0)
	}
	return &StateLock{f: file}, nil
}

// lockHolder is what the holder of the lock wrote in it.
func lockHolder(file *os.File) string {
	b := make([]byte, 256)
	n, _ := file.ReadAt(b, 0)
	return strings.TrimSpace(string(b[:n]))
}

// Unlock releases the lock.
func (l *StateLock) Unlock() error { return l.f.Close() }
