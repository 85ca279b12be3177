package logfollow

import (
	"cmp"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// rotatedTimeLayout is the time in the name lumberjack gives a rotated file (its
// backupTimeFormat), in UTC since kube-apiserver does not set LocalTime.
const rotatedTimeLayout = "2006-01-02T15-04-05.000"

// rotatedFile is one rotated file of the log, plain or compressed or, while lumberjack is
// compressing it, both.
type rotatedFile struct {
	// path is the uncompressed name; the compressed one is path + ".gz".
	path string
	// at is the time in the name: when the file stopped being the live log.
	at        time.Time
	plain, gz bool
}

// listRotated lists the rotated files of the log at path, oldest first.
func listRotated(path string) ([]rotatedFile, error) {
	dir, base := filepath.Split(path)
	ext := filepath.Ext(base)
	prefix := strings.TrimSuffix(base, ext) + "-"
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	byPath := map[string]*rotatedFile{}
	for _, e := range entries {
		name, gz := strings.CutSuffix(e.Name(), ".gz")
		if !e.Type().IsRegular() || !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, ext) || len(name) < len(prefix)+len(ext) {
			continue
		}
		at, err := time.Parse(rotatedTimeLayout, name[len(prefix):len(name)-len(ext)])
		if err != nil {
			continue
		}
		p := filepath.Join(dir, name)
		rf := byPath[p]
		if rf == nil {
			rf = &rotatedFile{path: p, at: at}
			byPath[p] = rf
		}
		if gz {
			rf.gz = true
		} else {
			rf.plain = true
		}
	}
	out := make([]rotatedFile, 0, len(byPath))
	for _, rf := range byPath {
		out = append(out, *rf)
	}
	slices.SortFunc(out, func(a, b rotatedFile) int {
		return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.path, b.path))
	})
	return out, nil
}

// rotatedSince keeps the files rotated at or after t. Names hold milliseconds, so t is
// truncated to the millisecond.
func rotatedSince(files []rotatedFile, t time.Time) []rotatedFile {
	t = t.Truncate(time.Millisecond)
	i, _ := slices.BinarySearchFunc(files, t, func(rf rotatedFile, t time.Time) int { return rf.at.Compare(t) })
	return files[i:]
}

// open opens a rotated file: the plain one while it exists (lumberjack removes it only once the
// compressed one is complete), else the compressed one.
func (rf rotatedFile) open() (*source, error) {
	if rf.plain {
		s, err := openSource(rf.path, false)
		if err == nil || !errors.Is(err, fs.ErrNotExist) || !rf.gz {
			return s, err
		}
	}
	return openSource(rf.path+".gz", true)
}

// matches tells whether the rotated file is the one p was taken in: the same plain file (device,
// inode and first bytes), or its compressed copy (the same first bytes once decompressed; the
// offset counts the same bytes).
func (rf rotatedFile) matches(p place) (bool, error) {
	if rf.plain && !p.Gzip {
		fi, err := os.Lstat(rf.path)
		switch {
		case err == nil:
			if dev, ino := fileID(fi); dev == p.Device && ino == p.Inode {
				if ok, err := headMatches(rf.path, false, p); err == nil || !errors.Is(err, fs.ErrNotExist) {
					return ok, err
				}
			}
		case !errors.Is(err, fs.ErrNotExist):
			return false, err
		}
	}
	if rf.gz && p.HeadLen > 0 {
		ok, err := headMatches(rf.path+".gz", true, p)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return ok, err
	}
	return false, nil
}
