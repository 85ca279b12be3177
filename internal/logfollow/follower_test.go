package logfollow

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// logWriter writes a log as kube-apiserver's lumberjack does, in a test's temporary directory.
type logWriter struct {
	t     testing.TB
	dir   string
	path  string
	f     *os.File // the file written, which a rotation renames
	clock *clocktesting.FakeClock
}

func newLogWriter(t testing.TB) *logWriter {
	dir := t.TempDir()
	w := &logWriter{t: t, dir: dir, path: filepath.Join(dir, "audit.log"), clock: clocktesting.NewFakeClock(time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC))}
	t.Cleanup(func() {
		if w.f != nil {
			w.f.Close()
		}
	})
	return w
}

// write appends to the file the writer holds, created at the path if needed.
func (w *logWriter) write(s string) {
	w.t.Helper()
	if w.f == nil {
		f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			w.t.Fatal(err)
		}
		w.f = f
	}
	if _, err := w.f.WriteString(s); err != nil {
		w.t.Fatal(err)
	}
}

// lines writes whole lines.
func (w *logWriter) lines(names ...string) {
	w.t.Helper()
	for _, n := range names {
		w.write(n + "\n")
	}
}

// rename renames the file at the path as lumberjack names a rotated file, and keeps writing to
// it until reopen; it returns the rotated name.
func (w *logWriter) rename() string {
	w.t.Helper()
	w.clock.Step(time.Second)
	rotated := filepath.Join(w.dir, "audit-"+w.clock.Now().UTC().Format(rotatedTimeLayout)+".log")
	if err := os.Rename(w.path, rotated); err != nil {
		w.t.Fatal(err)
	}
	w.clock.Step(time.Second)
	return rotated
}

// reopen makes the writer write to a new file at the path.
func (w *logWriter) reopen() {
	w.t.Helper()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	w.write("")
}

// rotate is lumberjack's rotation: close, rename, create.
func (w *logWriter) rotate() string {
	w.t.Helper()
	w.f.Close()
	w.f = nil
	rotated := w.rename()
	w.write("")
	return rotated
}

// compress is lumberjack's --audit-log-compress: gzip the rotated file, then remove it.
func (w *logWriter) compress(rotated string) {
	w.t.Helper()
	in, err := os.ReadFile(rotated)
	if err != nil {
		w.t.Fatal(err)
	}
	out, err := os.Create(rotated + ".gz")
	if err != nil {
		w.t.Fatal(err)
	}
	z := gzip.NewWriter(out)
	if _, err := z.Write(in); err != nil {
		w.t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		w.t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		w.t.Fatal(err)
	}
	if err := os.Remove(rotated); err != nil {
		w.t.Fatal(err)
	}
}

func (w *logWriter) open(maxLine int) *Follower {
	w.t.Helper()
	f, err := Open(Options{Path: w.path, CheckpointDir: w.dir + "/state", MaxLineBytes: maxLine, Clock: w.clock})
	if err != nil {
		w.t.Fatal(err)
	}
	return f
}

func newStateDir(t testing.TB, w *logWriter) {
	if err := os.MkdirAll(w.dir+"/state", 0o700); err != nil {
		t.Fatal(err)
	}
}

// poll hands out what there is, as strings.
func poll(t testing.TB, f *Follower) []string {
	t.Helper()
	var out []string
	for {
		b, err := f.Poll()
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Lines) == 0 {
			return out
		}
		for _, l := range b.Lines {
			out = append(out, string(l))
		}
	}
}

func wantLines(t testing.TB, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got lines %q, want %q", what, got, want)
	}
}

func TestFollowerHandsOutAppendedLinesOnceComplete(t *testing.T) {
	w := newLogWriter(t)
	newStateDir(t, w)
	w.lines("a", "b")
	f := w.open(0)
	defer f.Close()
	wantLines(t, "existing lines", poll(t, f), "a", "b")
	wantLines(t, "nothing new", poll(t, f))

	w.write("c1")
	wantLines(t, "partial line", poll(t, f))
	w.write("c2")
	wantLines(t, "still partial", poll(t, f))
	w.write("\nd\ne")
	wantLines(t, "completed line and the next", poll(t, f), "c1c2", "d")
	w.write("\n")
	wantLines(t, "last line completed", poll(t, f), "e")
	if s := f.Stats(); s.Offset != int64(len("a\nb\nc1c2\nd\ne\n")) || s.Unread != 0 {
		t.Fatalf("stats: offset %d, unread %d", s.Offset, s.Unread)
	}
}

func TestFollowerWaitsForAMissingFile(t *testing.T) {
	w := newLogWriter(t)
	newStateDir(t, w)
	f := w.open(0)
	defer f.Close()
	wantLines(t, "no file", poll(t, f))
	w.lines("a")
	wantLines(t, "file created", poll(t, f), "a")
}

func TestFollowerFinishesARenamedFileBeforeTheNewOne(t *testing.T) {
	w := newLogWriter(t)
	newStateDir(t, w)
	w.lines("a1", "a2")
	f := w.open(0)
	defer f.Close()
	wantLines(t, "first file", poll(t, f), "a1", "a2")

	// Renamed, then written through the handle the writer still holds, then a new file.
	w.write("a3")
	w.rename()
	w.write("\na4\n")
	w.reopen()
	w.lines("b1")
	w.f.Close()
	w.f = nil
	wantLines(t, "rest of the renamed file, then the new one", poll(t, f), "a3", "a4", "b1")
	if s := f.Stats(); s.Rotations != 0 {
		t.Fatalf("counters before a commit: %+v", s.Counters)
	}
	if err := f.Commit(nil); err != nil {
		t.Fatal(err)
	}
	if s := f.Stats(); s.Rotations != 1 || s.Lines != 5 || s.Gaps != 0 || s.IncompleteLines != 0 {
		t.Fatalf("counters: %+v", s.Counters)
	}
}

func TestFollowerReadsARotatedFileCompressedWhileItWasRead(t *testing.T) {
	w := newLogWriter(t)
	newStateDir(t, w)
	w.lines("a1")
	f := w.open(0)
	defer f.Close()
	wantLines(t, "first line", poll(t, f), "a1")
	w.lines("a2", "a3")
	rotated := w.rotate()
	w.compress(rotated)
	w.lines("b1")
	wantLines(t, "open file read to its end", poll(t, f), "a2", "a3", "b1")
}

func TestFollowerReadsEveryFileOfQuickRotations(t *testing.T) {
	w := newLogWriter(t)
	newStateDir(t, w)
	w.lines("a1")
	f := w.open(0)
	defer f.Close()
	wantLines(t, "first line", poll(t, f), "a1")
	w.lines("a2")
	w.rotate()
	w.lines("b1")
	w.compress(w.rotate())
	w.lines("c1")
	w.rotate()
	w.lines("d1")
	wantLines(t, "every file in order", poll(t, f), "a2", "b1", "c1", "d1")
}

func TestFollowerSkipsAnIncompleteLastLineOfARotatedFile(t *testing.T) {
	w := newLogWriter(t)
	newStateDir(t, w)
	w.lines("a1")
	w.write("a2-cut")
	f := w.open(0)
	defer f.Close()
	wantLines(t, "first line", poll(t, f), "a1")
	w.rotate()
	w.lines("b1")
	wantLines(t, "new file", poll(t, f), "b1")
	if err := f.Commit(nil); err != nil {
		t.Fatal(err)
	}
	if s := f.Stats(); s.IncompleteLines != 1 || s.Lines != 2 {
		t.Fatalf("counters: %+v", s.Counters)
	}
}

func TestFollowerStartsATruncatedFileOver(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after string
		want  []string
	}{
		{"shorter", "n1\n", []string{"n1"}},
		// Written again beyond the old offset before the follower looked: the bytes past the
		// old offset are read as they are, then the changed first bytes show the truncation.
		{"longer", "n1-longer-than-before\nn2\n", []string{"than-before", "n2", "n1-longer-than-before", "n2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newLogWriter(t)
			newStateDir(t, w)
			w.lines("old1", "old2")
			f := w.open(0)
			defer f.Close()
			wantLines(t, "before", poll(t, f), "old1", "old2")
			if err := w.f.Truncate(0); err != nil {
				t.Fatal(err)
			}
			w.write(tc.after) // O_APPEND: at the new end
			wantLines(t, "after truncation", poll(t, f), tc.want...)
			if err := f.Commit(nil); err != nil {
				t.Fatal(err)
			}
			if s := f.Stats(); s.Truncations != 1 || !strings.Contains(s.LastGap, "truncated") {
				t.Fatalf("stats: %+v", s)
			}
		})
	}
}

func TestFollowerSkipsLinesLongerThanTheLimit(t *testing.T) {
	w := newLogWriter(t)
	newStateDir(t, w)
	w.lines("short", strings.Repeat("x", 40))
	f := w.open(16)
	defer f.Close()
	wantLines(t, "long line skipped", poll(t, f), "short")
	// A long line written in pieces, across polls.
	w.write(strings.Repeat("y", 10))
	wantLines(t, "piece", poll(t, f))
	w.write(strings.Repeat("y", 10))
	wantLines(t, "piece", poll(t, f))
	w.write(strings.Repeat("y", 10) + "\n" + strings.Repeat("z", 16) + "\n")
	wantLines(t, "line of exactly the limit", poll(t, f), strings.Repeat("z", 16))
	if err := f.Commit(nil); err != nil {
		t.Fatal(err)
	}
	if s := f.Stats(); s.LongLines != 2 || s.Lines != 2 {
		t.Fatalf("counters: %+v", s.Counters)
	}

	// A restart while skipping skips the line again rather than handing out its tail.
	w.write(strings.Repeat("w", 20))
	wantLines(t, "long line begun", poll(t, f))
	if err := f.Commit(nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	w.write("w\nafter\n")
	f = w.open(16)
	defer f.Close()
	wantLines(t, "after a restart", poll(t, f), "after")
}

func TestFollowerGrowsItsBufferForALongLineAndGivesItBack(t *testing.T) {
	w := newLogWriter(t)
	newStateDir(t, w)
	long := strings.Repeat("y", 3*bufferBytes)
	w.lines("a", long, "b")
	w.write(strings.Repeat("x", DefaultMaxLineBytes+1) + "\nc\n")
	f := w.open(0)
	defer f.Close()
	wantLines(t, "lines around a long one", poll(t, f), "a", long, "b", "c")
	if len(f.buf) != bufferBytes {
		t.Fatalf("buffer of %d bytes kept, want %d", len(f.buf), bufferBytes)
	}
	if err := f.Commit(nil); err != nil {
		t.Fatal(err)
	}
	if s := f.Stats(); s.LongLines != 1 || s.Lines != 4 {
		t.Fatalf("counters: %+v", s.Counters)
	}
}

func TestFollowerReportsAGapWhenTheFileReadIsGone(t *testing.T) {
	w := newLogWriter(t)
	newStateDir(t, w)
	w.lines("a1", "a2")
	f := w.open(0)
	wantLines(t, "first", poll(t, f), "a1", "a2")
	if err := f.Commit(json.RawMessage(`"state"`)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	// While the follower is down: more lines, rotated, removed (--audit-log-maxbackup).
	w.lines("a3")
	rotated := w.rotate()
	if err := os.Remove(rotated); err != nil {
		t.Fatal(err)
	}
	w.lines("b1")
	w.rotate()
	w.lines("c1")

	f = w.open(0)
	defer f.Close()
	if string(f.State()) != `"state"` {
		t.Fatalf("state: %s", f.State())
	}
	wantLines(t, "the files after the gap", poll(t, f), "b1", "c1")
	if err := f.Commit(nil); err != nil {
		t.Fatal(err)
	}
	if s := f.Stats(); s.Gaps != 1 || !strings.Contains(s.LastGap, "gone") {
		t.Fatalf("stats: %+v", s)
	}
}

func TestFollowerStartsOverOnADamagedCheckpoint(t *testing.T) {
	w := newLogWriter(t)
	newStateDir(t, w)
	w.lines("a1")
	if err := os.WriteFile(filepath.Join(w.dir, "state", CheckpointFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := w.open(0)
	defer f.Close()
	wantLines(t, "from the start", poll(t, f), "a1")
	if s := f.Stats(); !strings.Contains(s.LastGap, "damaged") {
		t.Fatalf("stats: %+v", s)
	}
}

func TestFollowerRefusesASymbolicLink(t *testing.T) {
	w := newLogWriter(t)
	newStateDir(t, w)
	target := filepath.Join(w.dir, "elsewhere")
	if err := os.WriteFile(target, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, w.path); err != nil {
		t.Fatal(err)
	}
	f := w.open(0)
	defer f.Close()
	if _, err := f.Poll(); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("error: %v", err)
	}
}

// run is a follower driven by a test: what it committed is its state, so a restart shows
// whether a line was lost or handed out twice.
type run struct {
	t         testing.TB
	w         *logWriter
	f         *Follower
	committed []string
	pending   []string
}

func (r *run) start() {
	r.f = r.w.open(16)
	r.committed, r.pending = nil, nil
	if st := r.f.State(); st != nil {
		if err := json.Unmarshal(st, &r.committed); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *run) poll() { r.pending = append(r.pending, poll(r.t, r.f)...) }

func (r *run) commit() {
	r.t.Helper()
	all := append(slices.Clone(r.committed), r.pending...)
	b, err := json.Marshal(all)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.f.Commit(b); err != nil {
		r.t.Fatal(err)
	}
	r.committed, r.pending = all, nil
}

// crash stops the follower without a commit, and starts a new one.
func (r *run) crash() {
	r.f.Close()
	r.start()
}

// TestFollowerRestartsAtEveryPointWithoutLosingOrRepeatingALine drives one history of writes,
// rotations, compressions, reads and commits, and restarts the follower without a commit after
// each step in turn (also between a read and its commit): the lines committed are always every
// line written, in order, once.
func TestFollowerRestartsAtEveryPointWithoutLosingOrRepeatingALine(t *testing.T) {
	var rotated string
	steps := []struct {
		name string
		do   func(r *run)
	}{
		{"write", func(r *run) { r.w.lines("l1", "l2", "l3") }},
		{"poll", (*run).poll},
		{"write partial", func(r *run) { r.w.write("l4-") }},
		{"poll", (*run).poll},
		{"commit", (*run).commit},
		{"complete", func(r *run) { r.w.write("end\nl5\n") }},
		{"poll", (*run).poll},
		{"rename", func(r *run) { r.w.write("l6"); r.w.rename() }},
		{"write after rename", func(r *run) { r.w.write("\nl7\n"); r.w.reopen(); r.w.lines("l8") }},
		{"poll", (*run).poll},
		{"commit", (*run).commit},
		{"write", func(r *run) { r.w.lines("l9") }},
		{"rotate", func(r *run) { rotated = r.w.rotate(); r.w.lines("l10") }},
		{"compress", func(r *run) { r.w.compress(rotated) }},
		{"poll", (*run).poll},
		{"two rotations", func(r *run) {
			r.w.lines("l11")
			r.w.rotate()
			r.w.lines("l12")
			rotated = r.w.rotate()
			r.w.lines("l13")
		}},
		{"compress", func(r *run) { r.w.compress(rotated) }},
		{"poll", (*run).poll},
		{"commit", (*run).commit},
		{"long line", func(r *run) { r.w.write(strings.Repeat("x", 20)) }},
		{"poll", (*run).poll},
		{"commit", (*run).commit},
		{"end of long line", func(r *run) { r.w.write(strings.Repeat("x", 20) + "\nl14\n") }},
		{"poll", (*run).poll},
	}
	want := []string{"l1", "l2", "l3", "l4-end", "l5", "l6", "l7", "l8", "l9", "l10", "l11", "l12", "l13", "l14"}
	check := func(t *testing.T, r *run) {
		t.Helper()
		r.poll()
		r.commit()
		wantLines(t, "committed", r.committed, want...)
		if s := r.f.Stats(); s.Gaps != 0 || s.Truncations != 0 || s.Lines != int64(len(want)) {
			t.Fatalf("stats: %+v", s)
		}
		entries, err := os.ReadDir(filepath.Join(r.w.dir, "state"))
		if err != nil || len(entries) != 1 || entries[0].Name() != CheckpointFile {
			t.Fatalf("state directory holds %v (%v), want only the checkpoint", entries, err)
		}
	}
	for crashAfter := range len(steps) {
		t.Run(fmt.Sprintf("after step %d %s", crashAfter, steps[crashAfter].name), func(t *testing.T) {
			w := newLogWriter(t)
			newStateDir(t, w)
			r := &run{t: t, w: w}
			r.start()
			defer func() { r.f.Close() }()
			for i, s := range steps {
				s.do(r)
				if i == crashAfter {
					r.crash()
				}
			}
			check(t, r)
		})
	}
	t.Run("after every step", func(t *testing.T) {
		w := newLogWriter(t)
		newStateDir(t, w)
		r := &run{t: t, w: w}
		r.start()
		defer func() { r.f.Close() }()
		for _, s := range steps {
			s.do(r)
			r.crash()
		}
		check(t, r)
	})
}

func TestCheckpointIsReplacedAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, CheckpointFile)
	for i := range 3 {
		if err := saveCheckpoint(path, checkpoint{Position: place{Offset: int64(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	cp, ok, err := loadCheckpoint(path)
	if err != nil || !ok || cp.Position.Offset != 2 {
		t.Fatalf("checkpoint %+v, %v, %v", cp, ok, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d files, want the checkpoint alone", len(entries))
	}
	// A symbolic link at the checkpoint's name is refused, not written through.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "target")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if err := saveCheckpoint(path, checkpoint{}); err == nil {
		t.Fatal("saved through a symbolic link")
	}
	if _, err := os.Stat(target); err == nil {
		t.Fatal("the link's target was written")
	}
	if _, _, err := loadCheckpoint(path); err == nil {
		t.Fatal("read through a symbolic link")
	}
}
