package logfollow

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// CheckpointFile is the name of the checkpoint in Options.CheckpointDir.
const CheckpointFile = "audit-log-checkpoint.json"

// maxCheckpointBytes bounds the checkpoint read back, the caller's state included.
const maxCheckpointBytes = 32 << 20

// tempPrefix starts the names of temporary files. It is the node agent's prefix, so that the
// agent's clean-up of its state directory also removes what a crash left here.
const tempPrefix = ".kaudit-tmp-"

// place is where the follower stands in the log: a file and an offset in it.
type place struct {
	// Device and Inode identify the file on the node.
	Device uint64 `json:"device"`
	Inode  uint64 `json:"inode"`
	// Gzip is set for a compressed rotated file; Offset then counts decompressed bytes.
	Gzip bool `json:"gzip,omitempty"`
	// HeadLen and HeadSHA256 are the length and sha256 of the file's first bytes (at most
	// 1 KiB). Inodes are reused once a file is removed; the first event of a file, with its
	// auditID, is not.
	HeadLen    int    `json:"headLen"`
	HeadSHA256 string `json:"headSHA256"`
	// Offset is the offset after the last line handed out.
	Offset int64 `json:"offset"`
	// LiveAt is a time at which the file was still the live log at the path (for a rotated
	// file, the time in its name): the files rotated at or after it come after it.
	LiveAt time.Time `json:"liveAt"`
}

// Counters count what the follower did. They are saved in the checkpoint, so they survive
// restarts like the position does.
type Counters struct {
	// Lines and Bytes count the lines handed out, newlines included.
	Lines int64 `json:"lines"`
	Bytes int64 `json:"bytes"`
	// LongLines counts lines skipped because they were longer than Options.MaxLineBytes.
	LongLines int64 `json:"longLines"`
	// IncompleteLines counts last lines of rotated files that had no newline.
	IncompleteLines int64 `json:"incompleteLines"`
	// Rotations counts the times the file at the path was replaced.
	Rotations int64 `json:"rotations"`
	// Truncations counts the times the file became shorter than what had been read, or its
	// first bytes changed; the follower started it over.
	Truncations int64 `json:"truncations"`
	// Gaps counts files that were gone before they were read to their end: their unread lines
	// were never handed out.
	Gaps int64 `json:"gaps"`
}

// checkpoint is what the checkpoint file holds.
type checkpoint struct {
	Position place           `json:"position"`
	Counters Counters        `json:"counters"`
	State    json.RawMessage `json:"state,omitempty"`
}

// loadCheckpoint reads the checkpoint; ok is false when there is none.
func loadCheckpoint(path string) (cp checkpoint, ok bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return cp, false, nil
	}
	if err != nil {
		return cp, false, fmt.Errorf("reading checkpoint %s: %w", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return cp, false, fmt.Errorf("reading checkpoint %s: not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxCheckpointBytes+1))
	if err != nil {
		return cp, false, fmt.Errorf("reading checkpoint %s: %w", path, err)
	}
	if len(b) > maxCheckpointBytes {
		return cp, false, fmt.Errorf("reading checkpoint %s: larger than %d MiB", path, maxCheckpointBytes>>20)
	}
	if err := json.Unmarshal(b, &cp); err != nil {
		return cp, false, fmt.Errorf("reading checkpoint %s: %w", path, err)
	}
	return cp, true, nil
}

// saveCheckpoint replaces the checkpoint atomically: a temporary file in the same directory,
// fsync, rename over the checkpoint, fsync of the directory. A reader or a crash sees the old
// checkpoint or the new one, never a mix.
func saveCheckpoint(path string, cp checkpoint) error {
	b, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("writing checkpoint %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("writing checkpoint %s: not a regular file (%s); the follower replaces only regular files", path, fi.Mode().Type())
	}
	dir := filepath.Dir(path)
	// CreateTemp opens with O_CREATE|O_EXCL under a new random name: nothing placed at the
	// name beforehand, a symbolic link included, is written through.
	tmp, err := os.CreateTemp(dir, tempPrefix+filepath.Base(path)+".")
	if err != nil {
		return fmt.Errorf("writing checkpoint %s: %w", path, err)
	}
	_, werr := tmp.Write(b)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("writing checkpoint %s: %w", path, werr)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("writing checkpoint %s: syncing the directory: %w", path, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing checkpoint %s: syncing the directory: %w", path, err)
	}
	return nil
}
