package agent

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// TempPrefix starts the name of every temporary file the agent creates. It is a dotfile prefix,
// so that kubelet, which ignores hidden files in its manifests directory, could never run one,
// and recovery removes whatever a crash left behind.
const TempPrefix = ".kaudit-tmp-"

// MaxFileBytes bounds every node file the agent reads: half the 128 MiB memory limit of the
// agent's container (config/agent/daemonset.yaml), which a single read of a larger file placed
// on the node would otherwise exhaust.
const MaxFileBytes = 64 << 20

// FS is the part of the file system the agent uses. Tests wrap it to inject errors (a read-only
// directory, a full disk, a crash between two calls).
type FS interface {
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	// ReadFile reads a regular file of at most MaxFileBytes, never through a symbolic link.
	ReadFile(name string) ([]byte, error)
	ReadDir(name string) ([]os.DirEntry, error)
	Stat(name string) (os.FileInfo, error)
	Lstat(name string) (os.FileInfo, error)
	MkdirAll(path string, perm os.FileMode) error
}

// File is an open file of an FS.
type File interface {
	Write(p []byte) (int, error)
	Sync() error
	Close() error
	Name() string
}

// OSFS is the real file system.
type OSFS struct{}

// OpenFile opens a file with os.OpenFile.
func (OSFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	return os.OpenFile(name, flag, perm)
}

// Rename renames with os.Rename.
func (OSFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

// Remove removes with os.Remove.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// ReadFile implements FS. O_NOFOLLOW makes opening a symbolic link fail (ELOOP), and
// O_NONBLOCK keeps a FIFO planted at name from blocking the open.
func (OSFS) ReadFile(name string) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, symlinkError(name)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s): the agent reads only regular files", name, fi.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("%s is larger than %d MiB, the most the agent reads", name, MaxFileBytes>>20)
	}
	return b, nil
}

// ReadDir lists with os.ReadDir.
func (OSFS) ReadDir(name string) ([]os.DirEntry, error) { return os.ReadDir(name) }

// Stat stats with os.Stat.
func (OSFS) Stat(name string) (os.FileInfo, error) { return os.Stat(name) }

// Lstat stats with os.Lstat, which describes a symbolic link rather than its target.
func (OSFS) Lstat(name string) (os.FileInfo, error) { return os.Lstat(name) }

// MkdirAll creates directories with os.MkdirAll.
func (OSFS) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }

// symlinkError says that the agent found a symbolic link where it reads or writes a file. It
// never follows one: a link planted there would make it copy or overwrite another file of the
// host (the apiserver's manifest, a key) with root's rights.
func symlinkError(path string) error {
	return fmt.Errorf("%s is a symbolic link, which the agent never follows: replace it with a regular file", path)
}

// tempName is the name of a new temporary file for target: TempPrefix, target's name and a
// random suffix, so that no two writers (two agents on one node) share one, and nobody can
// place a file or a link at the name beforehand.
func tempName(target string) string {
	return TempPrefix + filepath.Base(target) + "." + rand.Text()
}

// WriteAtomic replaces path with data so that a reader (or a crash) sees either the old file or
// the new one, never a mix: it writes a temporary file in tempDir, fsyncs it, renames it over
// path and fsyncs path's directory. tempDir must be on the same mount as path; pass "" for
// path's own directory. The temporary file is created exclusively (O_EXCL, O_NOFOLLOW) under a
// new random name, and a symbolic link at path is refused rather than replaced.
func WriteAtomic(fsys FS, path, tempDir string, data []byte, perm os.FileMode) error {
	if tempDir == "" {
		tempDir = filepath.Dir(path)
	}
	if fi, err := fsys.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("writing %s: %w", path, symlinkError(path))
	}
	tmp := filepath.Join(tempDir, tempName(path))
	f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, explain(err))
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = fsys.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, explain(werr))
	}
	if err := fsys.Rename(tmp, path); err != nil {
		_ = fsys.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, explain(err))
	}
	if err := SyncDir(fsys, filepath.Dir(path)); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if tempDir != filepath.Dir(path) {
		if err := SyncDir(fsys, tempDir); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return nil
}

// SyncDir fsyncs a directory, making renames and new names in it durable.
func SyncDir(fsys FS, dir string) error {
	d, err := fsys.OpenFile(dir, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, explain(err))
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, explain(err))
	}
	return nil
}

// RemoveTemps deletes temporary files a crash left in dir. A missing dir is not an error.
func RemoveTemps(fsys FS, dir string) error {
	entries, err := fsys.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	removed := false
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), TempPrefix) {
			if err := fsys.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			removed = true
		}
	}
	if removed {
		return SyncDir(fsys, dir)
	}
	return nil
}

// readOptional reads a file, returning nil and no error when it does not exist.
func readOptional(fsys FS, path string) ([]byte, bool, error) {
	b, err := fsys.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}

func isEXDEV(err error) bool { return errors.Is(err, syscall.EXDEV) }

// explain adds what to do about the errors a node's file system commonly gives.
func explain(err error) error {
	switch {
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%w (the directory is mounted read-only: the agent needs a writable hostPath mount)", err)
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("%w (the disk is full)", err)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("%w (the agent must run as root with a writable hostPath mount)", err)
	case errors.Is(err, syscall.EXDEV):
		return fmt.Errorf("%w (the temporary file and the target are on different mounts)", err)
	}
	return err
}
