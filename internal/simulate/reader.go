package simulate

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// maxLine bounds a single event; longer lines are counted as bad and skipped.
const maxLine = 256 << 20

// chunk is a run of whole lines of one input.
type chunk struct {
	file      int
	startLine int64 // number of the first line, from 1
	data      []byte
	buf       *[]byte
	// tooLong, when set, is a line that exceeded maxLine at startLine (data is empty).
	tooLong bool
}

// inputState is what the reader learned about an input.
type inputState struct {
	Input
	lines int64
	bytes int64
	err   error
}

// reader splits inputs into chunks of whole lines and hands them to workers through a bounded
// channel; buffers are recycled, so memory stays bounded.
type reader struct {
	inputs     []*inputState
	chunks     chan chunk
	free       chan *[]byte
	chunkSize  int
	allocated  int
	maxBuffers int
	read       atomic.Int64 // uncompressed bytes read
	compressed atomic.Int64 // bytes read from the files
	// start is the stageTimestamp of the first event of the first input, when the log begins. It
	// is set before the first chunk is sent, and never changes after.
	start time.Time
}

func newReader(inputs []Input, chunkSize, buffers int) *reader {
	r := &reader{chunks: make(chan chunk, buffers), free: make(chan *[]byte, buffers), chunkSize: chunkSize, maxBuffers: buffers}
	for _, in := range inputs {
		r.inputs = append(r.inputs, &inputState{Input: in})
	}
	return r
}

func (r *reader) buffer() *[]byte {
	select {
	case b := <-r.free:
		return b
	default:
	}
	if r.allocated < r.maxBuffers {
		r.allocated++
		b := make([]byte, r.chunkSize)
		return &b
	}
	return <-r.free
}

func (r *reader) release(c chunk) {
	if c.buf != nil {
		r.free <- c.buf
	}
}

// run reads every input in turn and closes the chunk channel at the end.
func (r *reader) run(ctx context.Context) {
	defer close(r.chunks)
	for i, in := range r.inputs {
		if ctx.Err() != nil {
			in.err = ctx.Err()
			return
		}
		in.err = r.readInput(i, in)
	}
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (r *reader) readInput(idx int, in *inputState) error {
	f, err := in.Open()
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(countingReader{f, &r.compressed}, 256<<10)
	var src io.Reader = br
	magic, err := br.Peek(2)
	if err != nil && len(magic) == 0 {
		// Empty input: stop here, or a terminal would need a second Ctrl-D.
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer gz.Close()
		src = gz
	}

	line := int64(1)
	buf := r.buffer()
	fill := 0         // bytes of *buf in use
	skipping := false // discarding the rest of a line longer than maxLine
	finish := func(rerr error) error {
		r.free <- buf
		in.lines = line - 1
		if rerr != nil {
			return fmt.Errorf("%w (input truncated after line %d)", rerr, line-1)
		}
		return nil
	}
	for {
		n, rerr := readFull(src, (*buf)[fill:])
		r.read.Add(int64(n))
		in.bytes += int64(n)
		fill += n
		eof := rerr != nil
		if rerr == io.EOF {
			rerr = nil
		}
		data := (*buf)[:fill]
		if skipping {
			nl := bytes.IndexByte(data, '\n')
			if nl < 0 {
				fill = 0
				if eof {
					r.chunks <- chunk{file: idx, startLine: line, tooLong: true}
					line++
					return finish(rerr)
				}
				continue
			}
			r.chunks <- chunk{file: idx, startLine: line, tooLong: true}
			line++
			skipping = false
			fill = copy(*buf, data[nl+1:])
			data = (*buf)[:fill]
		}
		if eof && len(data) == 0 {
			return finish(rerr)
		}
		last := bytes.LastIndexByte(data, '\n')
		if eof {
			last = len(data) - 1
		}
		if last < 0 {
			// No complete line in a full buffer: grow it, up to maxLine.
			if len(*buf) >= maxLine {
				skipping = true
				fill = 0
				continue
			}
			bigger := make([]byte, 2*len(*buf))
			copy(bigger, data)
			*buf = bigger
			continue
		}
		whole := data[:last+1]
		next := r.buffer()
		*next = (*next)[:cap(*next)]
		rest := len(data) - last - 1
		if rest > len(*next) {
			*next = make([]byte, max(len(*buf), 2*rest))
		}
		copy(*next, data[last+1:])
		if idx == 0 && line == 1 {
			r.start = firstTimestamp(whole)
		}
		r.chunks <- chunk{file: idx, startLine: line, data: whole, buf: buf}
		line += int64(bytes.Count(whole, []byte{'\n'}))
		if whole[len(whole)-1] != '\n' {
			line++
		}
		buf, fill = next, rest
		if eof {
			return finish(rerr)
		}
	}
}

// readFull reads until p is full or the reader fails; io.EOF means a clean end.
func readFull(r io.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// inputErrorText makes read errors readable: a truncated gzip stream is the common case.
func inputErrorText(err error) string {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "truncated input (unexpected end of gzip stream): " + err.Error()
	}
	return err.Error()
}

// firstTimestamp returns the stageTimestamp of the first event among the first lines of data,
// or the zero time.
func firstTimestamp(data []byte) time.Time {
	for range 100 {
		line, rest, _ := bytes.Cut(data, []byte{'\n'})
		var ev struct {
			StageTimestamp time.Time `json:"stageTimestamp"`
		}
		if json.Unmarshal(line, &ev) == nil && !ev.StageTimestamp.IsZero() {
			return ev.StageTimestamp
		}
		if len(rest) == 0 {
			break
		}
		data = rest
	}
	return time.Time{}
}
