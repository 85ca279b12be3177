package logfollow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// DefaultMaxLineBytes is the longest line handed out. kube-apiserver accepts request bodies
// of up to 3 MiB, so only an event with a larger response body (a large list recorded at
// RequestResponse) is longer.
const DefaultMaxLineBytes = 4 << 20

// bufferBytes is the usual size of the buffer lines are handed out from: one Poll hands out at
// most this much, or one line when it is longer.
const bufferBytes = 256 << 10

// Options says what to follow and where to keep the checkpoint.
type Options struct {
	// Path is the audit log as the follower sees it: kube-apiserver's --audit-log-path under
	// the directory mounted into the caller. Its rotated files are in the same directory.
	Path string
	// CheckpointDir is where CheckpointFile is written. It must exist; never the static pod
	// manifests directory, where kubelet reads every file.
	CheckpointDir string
	// MaxLineBytes is the longest line handed out, newline excluded; longer ones are counted and
	// skipped. 0 means DefaultMaxLineBytes.
	MaxLineBytes int
	// Clock gives the time; nil means the real clock.
	Clock clock.PassiveClock
	// Log receives gaps and rotations; the zero value discards them.
	Log logr.Logger
}

// Batch is lines handed out by Poll: complete lines in the order written, without their
// newlines. They share the follower's buffer and are valid until the next Poll.
type Batch struct {
	Lines [][]byte
}

// Stats is what Stats reports.
type Stats struct {
	// Counters are as of the last Commit, like the caller's state saved with it.
	Counters
	// File is the file being read and Offset the offset after the last line handed out.
	File   string
	Offset int64
	// Unread is the number of bytes written and not yet handed out, in the file being read and
	// the uncompressed rotated files still to read (compressed ones are not counted).
	Unread int64
	// LastGap says what the last gap or truncation was; "" when there was none.
	LastGap string
}

// Follower follows one audit log. Open, Poll, Commit and Close are called from one goroutine;
// Stats from any.
type Follower struct {
	opts           Options
	checkpointPath string
	clock          clock.PassiveClock
	log            logr.Logger

	cur *source
	// queue holds the rotated files to read after cur, oldest first; the file at the path
	// comes after them.
	queue []rotatedFile
	// rotated is set once the file at the path is no longer cur: cur is read until a read finds
	// nothing more.
	rotated bool

	// buf[lo:hi] is read from cur and not handed out; bufOff is the offset of buf[lo].
	buf      []byte
	lo, hi   int
	bufOff   int64
	skipping bool // discarding the rest of a line longer than MaxLineBytes
	// handed is the offset after the last line handed out (or skipped) in cur.
	handed  int64
	lines   [][]byte
	scratch []byte

	// idleSince is when cur became nil: the files rotated since, then the file at the path,
	// are what comes next.
	idleSince time.Time

	counters Counters // up to the last line handed out
	saved    Counters // as of the last Commit
	state    json.RawMessage
	lastGap  string

	mu    sync.Mutex
	stats Stats
}

// Open prepares to follow opts.Path from the checkpoint in opts.CheckpointDir, or from the start
// of the file at the path when there is none. No line is read yet.
func Open(opts Options) (*Follower, error) {
	if opts.Path == "" || opts.CheckpointDir == "" {
		return nil, errors.New("logfollow: Path and CheckpointDir must be set")
	}
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = DefaultMaxLineBytes
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	f := &Follower{
		opts:           opts,
		checkpointPath: filepath.Join(opts.CheckpointDir, CheckpointFile),
		clock:          opts.Clock,
		log:            opts.Log,
		buf:            make([]byte, min(bufferBytes, opts.MaxLineBytes+1)),
		scratch:        make([]byte, headBytes),
	}
	cp, ok, err := loadCheckpoint(f.checkpointPath)
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax) || errors.As(err, &typ):
		// Atomic writes leave no half-written checkpoint; this one was damaged on disk. Start
		// over like a new node rather than never following again.
		f.gap(fmt.Sprintf("checkpoint %s is damaged (%v): starting at the beginning of %s", f.checkpointPath, err, opts.Path))
	case err != nil:
		return nil, err
	case ok:
		f.counters, f.saved, f.state = cp.Counters, cp.Counters, cp.State
		if err := f.resume(cp.Position); err != nil {
			return nil, fmt.Errorf("resuming %s from checkpoint %s: %w", opts.Path, f.checkpointPath, err)
		}
	}
	// Open the first file now, so that a Commit before the first Poll saves where it starts.
	// An error opening it is Poll's to report, again at every call until it is fixed.
	if f.cur == nil {
		f.idleSince = f.clock.Now()
		_ = f.openNext()
	}
	f.publish()
	return f, nil
}

// State is the caller's state saved by the Commit the follower resumed from; nil when there was
// none.
func (f *Follower) State() json.RawMessage { return f.state }

// Poll hands out the complete lines written since the last call, without waiting; the batch is
// empty when there are none. The caller polls again after a while (250 ms is a good interval).
// An error is an I/O error on the log's files; the next Poll tries again.
func (f *Follower) Poll() (Batch, error) {
	f.lines = f.lines[:0]
	defer f.publish()
	for {
		if f.cur == nil {
			if err := f.openNext(); err != nil || f.cur == nil {
				return Batch{}, err
			}
		}
		f.compact()
		n, eof, err := f.fill()
		if err != nil {
			return Batch{}, fmt.Errorf("reading %s: %w", f.cur.path, err)
		}
		f.split()
		if len(f.lines) > 0 {
			return Batch{Lines: f.lines}, nil
		}
		if !eof {
			continue // one partial line filled the buffer: compact grows it
		}
		switch {
		case !f.cur.live, f.rotated && n == 0:
			if err := f.finish(); err != nil {
				return Batch{}, err
			}
		case f.rotated:
			// Read again: a writer that still holds the file may append after the rename.
		default:
			change, err := f.checkLive()
			if err != nil || change == unchanged {
				return Batch{}, err
			}
			if change == replaced {
				f.rotated = true
				f.counters.Rotations++
				f.log.V(1).Info("audit log rotated", "file", f.cur.path, "offset", f.handed)
			}
		}
	}
}

// Commit acknowledges every line handed out so far and saves the checkpoint, with state, the
// caller's own (for instance what it counted from those lines), which State returns after a
// restart. After a crash the follower resumes after the last committed line, so lines are
// counted exactly once when the caller's counts are part of state.
func (f *Follower) Commit(state json.RawMessage) error {
	cp := checkpoint{Counters: f.counters, State: state}
	switch {
	case f.cur != nil:
		cp.Position = f.cur.placeAt(f.handed)
	case len(f.queue) > 0:
		// The start of the next rotated file, which could not be opened yet.
		cp.Position = place{LiveAt: f.queue[0].at}
	default:
		cp.Position = place{LiveAt: f.idleSince.UTC()}
	}
	if err := saveCheckpoint(f.checkpointPath, cp); err != nil {
		return err
	}
	f.saved = f.counters
	f.publish()
	return nil
}

// Stats reports what the follower did and where it stands.
func (f *Follower) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// Close closes the files the follower holds. It does not commit.
func (f *Follower) Close() error {
	if f.cur != nil {
		f.cur.close()
		f.cur = nil
	}
	return nil
}

// start makes s, read from offset on, the file being read.
func (f *Follower) start(s *source, offset int64) {
	f.cur = s
	f.rotated = false
	f.lo, f.hi = 0, 0
	f.bufOff, f.handed = offset, offset
	f.skipping = false
}

// compact moves unread bytes to the start of the buffer, grows it when one partial line fills
// it, and gives back a buffer a long line grew once it is empty.
func (f *Follower) compact() {
	if f.lo == f.hi && len(f.buf) > bufferBytes {
		f.buf = make([]byte, bufferBytes)
		f.lo, f.hi = 0, 0
	}
	f.hi = copy(f.buf, f.buf[f.lo:f.hi])
	f.lo = 0
	if f.hi == len(f.buf) {
		bigger := make([]byte, min(2*len(f.buf), f.opts.MaxLineBytes+1))
		copy(bigger, f.buf[:f.hi])
		f.buf = bigger
	}
}

// fill reads into the buffer until it is full or the file ends for now; n is the bytes read.
func (f *Follower) fill() (n int, eof bool, err error) {
	for f.hi < len(f.buf) {
		m, err := f.cur.readAt(f.buf[f.hi:])
		f.hi += m
		n += m
		var damaged *damagedError
		switch {
		case err == io.EOF || (err == nil && m == 0):
			return n, true, nil
		case errors.As(err, &damaged):
			// What follows the damage is lost; what came before it is handed out.
			f.gap(damaged.Error())
			return n, true, nil
		case err != nil:
			return n, false, err
		}
	}
	return n, false, nil
}

// split hands out the complete lines of the buffer and drops the part of a line that is already
// longer than MaxLineBytes.
func (f *Follower) split() {
	for {
		i := bytes.IndexByte(f.buf[f.lo:f.hi], '\n')
		if i < 0 {
			break
		}
		end := f.lo + i + 1
		if f.skipping {
			f.skipping = false
			f.counters.LongLines++
		} else {
			f.lines = append(f.lines, f.buf[f.lo:end-1])
			f.counters.Lines++
			f.counters.Bytes += int64(end - f.lo)
		}
		f.bufOff += int64(end - f.lo)
		f.lo = end
		f.handed = f.bufOff
	}
	if rest := f.hi - f.lo; rest > f.opts.MaxLineBytes || (f.skipping && rest > 0) {
		// The checkpoint stays before the line, which a restart skips again.
		f.skipping = true
		f.bufOff += int64(rest)
		f.lo = f.hi
	}
}

// liveChange is what checkLive found.
type liveChange int

const (
	unchanged liveChange = iota
	// replaced: the file at the path is another one, or there is none.
	replaced
	// truncated: the file became shorter than what was read, or its first bytes changed; it is
	// read again from the start.
	truncated
)

// checkLive looks at the file at the path once the live file being read has no more to read.
func (f *Follower) checkLive() (liveChange, error) {
	fi, err := os.Lstat(f.opts.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return replaced, nil
	}
	if err != nil {
		return unchanged, err
	}
	if dev, ino := fileID(fi); dev != f.cur.dev || ino != f.cur.ino {
		return replaced, nil
	}
	f.cur.liveAt = f.clock.Now()
	cfi, err := f.cur.f.Stat()
	if err != nil {
		return unchanged, err
	}
	same, err := f.cur.sameHead(f.scratch)
	if err != nil {
		return unchanged, err
	}
	if cfi.Size() < f.cur.read || !same {
		f.counters.Truncations++
		f.lastGap = fmt.Sprintf("%s was truncated at offset %d: reading it again from the start", f.cur.path, f.cur.read)
		f.log.Info("audit log truncated: reading it again from the start", "file", f.cur.path, "offset", f.cur.read, "size", cfi.Size())
		f.cur.read, f.cur.head = 0, nil
		f.start(f.cur, 0)
		return truncated, nil
	}
	return unchanged, nil
}

// finish closes the file being read, which has no more to give, and queues the rotated files
// written after it. They are listed now rather than when the file was opened: the log may have
// been rotated again meanwhile.
func (f *Follower) finish() error {
	switch {
	case f.skipping:
		f.counters.LongLines++
	case f.hi > f.lo:
		f.counters.IncompleteLines++
		f.log.Info("audit log file ended with an incomplete line, skipped", "file", f.cur.path, "offset", f.handed, "bytes", f.hi-f.lo)
	}
	next, err := f.successors()
	if err != nil {
		return fmt.Errorf("listing the rotated files of %s: %w", f.opts.Path, err)
	}
	f.queue = next
	f.cur.close()
	f.cur = nil
	f.idleSince = f.clock.Now()
	return nil
}

// successors are the rotated files written after cur: those after its own rotated name, or,
// when it was compressed or removed meanwhile and cannot be found, those rotated since it was
// last seen at the path (or since the time in its rotated name).
func (f *Follower) successors() ([]rotatedFile, error) {
	files, err := listRotated(f.opts.Path)
	if err != nil {
		return nil, err
	}
	p := f.cur.placeAt(0)
	for i, rf := range files {
		ok, err := rf.matches(p)
		if err != nil {
			return nil, err
		}
		if ok {
			return files[i+1:], nil
		}
	}
	return rotatedSince(files, f.cur.liveAt), nil
}

// openNext opens the next file: the next rotated file queued, else the file at the path; none
// when there is no file at the path yet.
func (f *Follower) openNext() error {
	for len(f.queue) > 0 {
		rf := f.queue[0]
		s, err := rf.open()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err // kept in the queue: the next Poll tries again
		}
		f.queue = f.queue[1:]
		if err != nil {
			f.gap(fmt.Sprintf("rotated file %s was removed before it was read", rf.path))
			continue
		}
		s.liveAt = rf.at
		f.start(s, 0)
		return nil
	}
	s, err := openSource(f.opts.Path, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	s.live, s.liveAt = true, f.clock.Now()
	f.start(s, 0)
	return nil
}

// resume finds the file of a checkpoint's position, at the path or among the rotated files, and
// makes the follower read it from the position's offset, then the files after it.
func (f *Follower) resume(p place) error {
	fi, err := os.Lstat(f.opts.Path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err == nil && !p.Gzip {
		if dev, ino := fileID(fi); dev == p.Device && ino == p.Inode {
			ok, err := headMatches(f.opts.Path, false, p)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if ok {
				s, err := openSource(f.opts.Path, false)
				if err != nil {
					return err
				}
				s.live, s.liveAt = true, f.clock.Now()
				return f.resumeIn(s, p)
			}
		}
	}
	files, err := listRotated(f.opts.Path)
	if err != nil {
		return err
	}
	for i, rf := range files {
		ok, err := rf.matches(p)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		s, err := rf.open()
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return err
		}
		s.liveAt = rf.at
		f.queue = files[i+1:]
		return f.resumeIn(s, p)
	}
	if p.Offset > 0 {
		f.gap(fmt.Sprintf("the file read last (inode %d, %d bytes read) is gone: going on with the files rotated since %s", p.Inode, p.Offset, p.LiveAt.Format(time.RFC3339)))
	}
	f.queue = rotatedSince(files, p.LiveAt)
	return nil
}

// resumeIn makes s the file being read, from p.Offset; a file now shorter than that is read from
// the start again.
func (f *Follower) resumeIn(s *source, p place) error {
	reached, err := s.resume(p.Offset)
	var damaged *damagedError
	if errors.As(err, &damaged) {
		s.close()
		f.gap(damaged.Error())
		return nil
	}
	if err != nil {
		s.close()
		return err
	}
	if reached {
		f.start(s, p.Offset)
		return nil
	}
	f.counters.Truncations++
	f.lastGap = fmt.Sprintf("%s is shorter than the %d bytes read before the restart: reading it again from the start", s.path, p.Offset)
	f.log.Info("audit log file shorter than at the checkpoint: reading it again from the start", "file", s.path, "offset", p.Offset)
	s.close()
	s, err = reopen(s)
	if err != nil {
		return err
	}
	f.start(s, 0)
	return nil
}

// reopen opens s's file again, to read it from the start.
func reopen(s *source) (*source, error) {
	n, err := openSource(s.path, s.gz != nil)
	if err != nil {
		return nil, err
	}
	n.live, n.liveAt = s.live, s.liveAt
	return n, nil
}

// gap counts and reports lines that were never handed out.
func (f *Follower) gap(msg string) {
	f.counters.Gaps++
	f.lastGap = msg
	f.log.Info("audit log gap: some lines were never read", "reason", msg)
}

// publish updates what Stats returns.
func (f *Follower) publish() {
	s := Stats{Counters: f.saved, LastGap: f.lastGap}
	if f.cur != nil {
		s.File, s.Offset = f.cur.path, f.handed
		if f.cur.gz == nil {
			if fi, err := f.cur.f.Stat(); err == nil {
				s.Unread = max(0, fi.Size()-f.handed)
			}
		}
	}
	for _, rf := range f.queue {
		if !rf.plain {
			continue
		}
		if fi, err := os.Lstat(rf.path); err == nil {
			s.Unread += fi.Size()
		}
	}
	f.mu.Lock()
	f.stats = s
	f.mu.Unlock()
}
