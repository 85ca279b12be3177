package simulate

import (
	"bytes"
	"context"
	"runtime"
	"sync"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// VisitSummary is what Visit read.
type VisitSummary struct {
	Inputs []InputSummary
	// Events counts the audit.k8s.io/v1 events visited.
	Events int64
	// BadLines are lines that are not JSON objects; OtherLines are JSON of another kind or version.
	BadLines, OtherLines int64
}

// Visit reads inputs as Run does (the same reader, gzip detection and line checks, bounded
// memory) and hands every line that is an audit.k8s.io/v1 Event, scanned, to a visit function.
// newVisit is called once per worker (workers, or GOMAXPROCS when 0), on the caller's goroutine
// before any line is read, and each worker uses only the function it got, so a visit needs no
// locking. The Line is valid during the call only.
func Visit(ctx context.Context, inputs []Input, workers int, newVisit func() func(*Line)) VisitSummary {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rd := newReader(inputs, 1<<20, 2*workers+2)
	counts := make([]VisitSummary, workers)
	visits := make([]func(*Line), workers)
	for i := range visits {
		visits[i] = newVisit()
	}
	var wg sync.WaitGroup
	for i := range counts {
		wg.Add(1)
		go func(c *VisitSummary, visit func(*Line)) {
			defer wg.Done()
			var l Line
			for ch := range rd.chunks {
				c.chunk(ch, &l, visit)
				rd.release(ch)
			}
		}(&counts[i], visits[i])
	}
	rd.run(ctx)
	wg.Wait()

	var out VisitSummary
	for _, c := range counts {
		out.Events, out.BadLines, out.OtherLines = out.Events+c.Events, out.BadLines+c.BadLines, out.OtherLines+c.OtherLines
	}
	for _, in := range rd.inputs {
		s := InputSummary{Name: in.Name, Lines: in.lines, Bytes: in.bytes}
		if in.err != nil {
			s.Error = inputErrorText(in.err)
		}
		out.Inputs = append(out.Inputs, s)
	}
	return out
}

// chunk visits the events of a chunk and counts the lines that are not events.
func (c *VisitSummary) chunk(ch chunk, l *Line, visit func(*Line)) {
	if ch.tooLong {
		c.BadLines++
		return
	}
	for data := ch.data; len(data) > 0; {
		line := data
		if nl := bytes.IndexByte(data, '\n'); nl >= 0 {
			line, data = data[:nl], data[nl+1:]
		} else {
			data = nil
		}
		switch {
		case blank(line):
		case l.Scan(line) != nil:
			c.BadLines++
		case !l.IsEvent():
			c.OtherLines++
		default:
			c.Events++
			visit(l)
		}
	}
}

// Bytes is Run's estimate of what the scanned event takes in a log written at level: the line
// and its newline, less the request body below Request and the response body below
// RequestResponse; 0 at None. Omitted stages are the caller's to leave out.
func (l *Line) Bytes(level auditv1.Level) int64 {
	_, size, _ := keep(level, 0, facts{size: int64(len(l.line) + 1), req: l.ev.requestObject, resp: l.ev.responseObject})
	return size
}
