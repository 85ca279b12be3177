package logfollow

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// headBytes is how much of a file's start identifies it (see place).
const headBytes = 1 << 10

// source is one open file of the log.
type source struct {
	path string
	f    *os.File
	// gz reads a compressed rotated file; such a file is complete and read once, in order.
	gz *gzip.Reader
	// dev and ino identify the file.
	dev, ino uint64
	// live is set for the file opened at the path, which may be rotated since.
	live bool
	// liveAt is the last time the file was seen at the path, or the time in its rotated name.
	liveAt time.Time
	// read is the offset of the next byte to read (in decompressed content for gz).
	read int64
	// head holds the first bytes of the content, up to headBytes.
	head []byte
	// damaged is set once a compressed file could not be decompressed further.
	damaged bool
}

// damagedError says that a compressed rotated file cannot be read past some point.
type damagedError struct {
	path   string
	offset int64
	err    error
}

func (e *damagedError) Error() string {
	return fmt.Sprintf("%s cannot be decompressed past offset %d: %v", e.path, e.offset, e.err)
}

func (e *damagedError) Unwrap() error { return e.err }

// openFile opens a regular file for reading without following a symbolic link, and without
// blocking on a FIFO placed at the name.
func openFile(path string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, nil, fmt.Errorf("%s is a symbolic link, which the follower never follows", path)
		}
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	return f, fi, nil
}

// openSource opens path, a gzip-compressed file when gz is set.
func openSource(path string, gz bool) (*source, error) {
	f, fi, err := openFile(path)
	if err != nil {
		return nil, err
	}
	s := &source{path: path, f: f}
	s.dev, s.ino = fileID(fi)
	if gz {
		if s.gz, err = gzip.NewReader(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return s, nil
}

func (s *source) close() {
	if s.gz != nil {
		s.gz.Close()
	}
	s.f.Close()
}

// readAt reads content at s.read into p; io.EOF means the end of what is written so far.
func (s *source) readAt(p []byte) (int, error) {
	var n int
	var err error
	switch {
	case s.damaged:
		return 0, io.EOF
	case s.gz != nil:
		n, err = s.gz.Read(p)
		if err != nil && err != io.EOF {
			s.damaged = true
			err = &damagedError{path: s.path, offset: s.read + int64(n), err: err}
		}
	default:
		n, err = s.f.ReadAt(p, s.read)
	}
	if h := int64(len(s.head)); h < headBytes && s.read <= h && h < s.read+int64(n) {
		s.head = append(s.head, p[h-s.read:min(int64(n), headBytes-s.read)]...)
	}
	s.read += int64(n)
	if n > 0 && err == io.EOF {
		err = nil
	}
	return n, err
}

// resume makes the source read from offset on, a restart's checkpoint. It reports false when
// the content is shorter than offset.
func (s *source) resume(offset int64) (bool, error) {
	if s.gz != nil {
		buf := make([]byte, 32<<10)
		for s.read < offset {
			n, err := s.readAt(buf[:min(int64(len(buf)), offset-s.read)])
			if err == io.EOF || (err == nil && n == 0) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
		}
		return true, nil
	}
	fi, err := s.f.Stat()
	if err != nil {
		return false, err
	}
	if fi.Size() < offset {
		return false, nil
	}
	s.head = make([]byte, min(fi.Size(), headBytes))
	n, err := s.f.ReadAt(s.head, 0)
	s.head = s.head[:n]
	if err != nil && err != io.EOF {
		return false, err
	}
	s.read = offset
	return true, nil
}

// placeAt is offset in the source, as a place.
func (s *source) placeAt(offset int64) place {
	sum := sha256.Sum256(s.head)
	return place{
		Device: s.dev, Inode: s.ino, Gzip: s.gz != nil,
		HeadLen: len(s.head), HeadSHA256: hex.EncodeToString(sum[:]),
		Offset: offset, LiveAt: s.liveAt.UTC(),
	}
}

// headMatches tells whether the file starts with the bytes whose length and hash p holds. It
// reads from the start of a separate handle, so the source's own reading is not disturbed.
func headMatches(path string, gz bool, p place) (bool, error) {
	f, _, err := openFile(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var r io.Reader = f
	if gz {
		z, err := gzip.NewReader(f)
		if err != nil {
			return false, nil
		}
		defer z.Close()
		r = z
	}
	head := make([]byte, p.HeadLen)
	if _, err := io.ReadFull(r, head); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) {
			return false, nil
		}
		return false, err
	}
	sum := sha256.Sum256(head)
	return hex.EncodeToString(sum[:]) == p.HeadSHA256, nil
}

// sameHead tells whether the live file still starts with the bytes read from it: a file
// truncated and written again is as short as before only for a moment.
func (s *source) sameHead(scratch []byte) (bool, error) {
	if len(s.head) == 0 {
		return true, nil
	}
	now := scratch[:len(s.head)]
	n, err := s.f.ReadAt(now, 0)
	if err != nil && err != io.EOF {
		return false, err
	}
	return bytes.Equal(now[:n], s.head), nil
}
