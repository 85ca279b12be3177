package agent

import (
	"errors"
	"fmt"
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

// FS is the part of the file system the agent uses. Tests wrap it to inject errors (a read-only
// directory, a full disk, a crash between two calls).
type FS interface {
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	ReadFile(name string) ([]byte, error)
	ReadDir(name string) ([]os.DirEntry, error)
	Stat(name string) (os.FileInfo, error)
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

// ReadFile reads with os.ReadFile.
func (OSFS) ReadFile(name string) ([]byte, error) { return os.ReadFile(name) }

// ReadDir lists with os.ReadDir.
func (OSFS) ReadDir(name string) ([]os.DirEntry, error) { return os.ReadDir(name) }

// Stat stats with os.Stat.
func (OSFS) Stat(name string) (os.FileInfo, error) { return os.Stat(name) }

// MkdirAll creates directories with os.MkdirAll.
func (OSFS) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }

// WriteAtomic replaces path with data so that a reader (or a crash) sees either the old file or
// the new one, never a mix: it writes a temporary file in tempDir, fsyncs it, renames it over
// path and fsyncs path's directory. tempDir must be on the same mount as path; pass "" for
// path's own directory.
func WriteAtomic(fsys FS, path, tempDir string, data []byte, perm os.FileMode) error {
	if tempDir == "" {
		tempDir = filepath.Dir(path)
	}
	tmp := filepath.Join(tempDir, TempPrefix+filepath.Base(path))
	f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
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
