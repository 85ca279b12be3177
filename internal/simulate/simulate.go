// Package simulate replays recorded audit logs through audit policies: it decides every event
// with kube-apiserver's own evaluator (through internal/policy) and reports events and
// estimated bytes per level, per rule and per user, verb and resource, what a policy would drop
// or add, and how many security-relevant requests (internal/relevance) it records as required.
//
// Logs are read as a stream of JSON lines (plain or gzip) by a pipeline of one reader and one
// worker per core; memory stays bounded whatever the size of the log. Workers read only the
// fields the policy needs from each line and remember the decision for each distinct request
// (decisions depend on nothing else), so the evaluator runs once per distinct request.
package simulate

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
)

// Target is a policy to simulate.
type Target struct {
	// Name says where the policy came from, for the report.
	Name string
	// Policy is the policy as kube-apiserver reads it.
	Policy auditv1.Policy
	// Sources names the module and rule of each rule, when known (same length as Policy.Rules).
	Sources []policy.RuleSource
}

// Engine selects how lines are decoded.
type Engine string

const (
	// EngineFast reads only the needed fields and caches decisions per distinct request.
	EngineFast Engine = "fast"
	// EngineNaive decodes every line with encoding/json into an audit.k8s.io/v1 Event and
	// evaluates it with no cache: the independent reference that tests and the benchmark use.
	EngineNaive Engine = "naive"
)

// Options controls a simulation.
type Options struct {
	// Policy is the candidate policy.
	Policy Target
	// Against, when set, is the baseline policy; otherwise the baseline is the recorded log.
	Against *Target
	// Workers is the number of decoding goroutines; 0 means GOMAXPROCS.
	Workers int
	// Engine is EngineFast unless set.
	Engine Engine
	// Examples is how many bad lines and missed security-relevant requests are shown; 0 means 5.
	Examples int
	// Progress, when set, receives a progress line (with \r) a few times a second.
	Progress io.Writer
	// ChunkSize is the read size; 0 means 1 MiB.
	ChunkSize int
	// CacheSize bounds the number of distinct requests remembered per worker; 0 means 1<<18.
	CacheSize int
}

// Input is one audit log.
type Input struct {
	// Name is shown in the report ("-" or "<stdin>" for standard input).
	Name string
	// Open opens the log. Gzip is detected from the content.
	Open func() (io.ReadCloser, error)
	// Size is the size of the file, if known, for progress.
	Size int64
}

// compiled is a Target ready for evaluation.
type compiled struct {
	target   Target
	eval     *policy.Evaluator
	labels   []string
	useNames bool
}

func compile(t Target) (*compiled, error) {
	eval, err := policy.NewEvaluator(t.Policy)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", t.Name, err)
	}
	c := &compiled{target: t, eval: eval}
	for i, r := range t.Policy.Rules {
		c.labels = append(c.labels, RuleLabel(t.Sources, i))
		for _, gr := range r.Resources {
			if len(gr.ResourceNames) > 0 {
				c.useNames = true
			}
		}
	}
	return c, nil
}

// RuleLabel names rule i: "module rbac rule 2", "default" or "rule 7".
func RuleLabel(sources []policy.RuleSource, i int) string {
	if i < 0 {
		return "no rule (None)"
	}
	if i < len(sources) {
		if sources[i].IsDefault() {
			return "default"
		}
		return fmt.Sprintf("%s/%d", sources[i].ModuleID(), sources[i].Rule)
	}
	return fmt.Sprintf("rule %d", i)
}

// Run simulates the policy on the inputs.
func Run(ctx context.Context, inputs []Input, opts Options) (*Report, error) {
	cand, err := compile(opts.Policy)
	if err != nil {
		return nil, err
	}
	var base *compiled
	if opts.Against != nil {
		if base, err = compile(*opts.Against); err != nil {
			return nil, err
		}
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if opts.Engine == "" {
		opts.Engine = EngineFast
	}
	if opts.Examples <= 0 {
		opts.Examples = 5
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 1 << 20
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 1 << 18
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rd := newReader(inputs, opts.ChunkSize, 2*workers+2)
	var wg sync.WaitGroup
	ws := make([]*worker, workers)
	for i := range ws {
		ws[i] = newWorker(cand, base, opts)
		ws[i].logStart = &rd.start
		wg.Add(1)
		go func(w *worker) {
			defer wg.Done()
			for c := range rd.chunks {
				w.chunk(c)
				rd.release(c)
			}
		}(ws[i])
	}
	stopProgress := startProgress(opts.Progress, inputs, rd, ws)
	rd.run(ctx)
	wg.Wait()
	stopProgress()

	agg := newAggregate(cand, base, opts.Examples)
	for _, w := range ws {
		w.flush()
		agg.merge(w.agg)
	}
	return agg.report(rd.inputs), nil
}

// startProgress prints a progress line to w until the returned function is called.
func startProgress(w io.Writer, inputs []Input, rd *reader, ws []*worker) func() {
	if w == nil {
		return func() {}
	}
	var total int64
	for _, in := range inputs {
		if in.Size <= 0 {
			total = 0
			break
		}
		total += in.Size
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
				var events int64
				for _, wk := range ws {
					events += wk.events.Load()
				}
				read := rd.read.Load()
				secs := time.Since(start).Seconds()
				line := fmt.Sprintf("simulate: %s read, %d events, %.0f MB/s", human(read), events, float64(read)/1e6/secs)
				if total > 0 {
					line += fmt.Sprintf(", %.0f%% of input", 100*float64(rd.compressed.Load())/float64(total))
				}
				fmt.Fprintf(w, "\r\033[K%s", line)
			}
		}
	}()
	return func() { close(done); <-finished }
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// location is a line of an input.
type location struct {
	File int
	Line int64
}

// levelOf parses a recorded level; unknown levels are ranked as RequestResponse (nothing is
// known to be missing).
func levelOf(s string) auditv1.Level {
	switch auditv1.Level(s) {
	case auditv1.LevelNone, auditv1.LevelMetadata, auditv1.LevelRequest, auditv1.LevelRequestResponse:
		return auditv1.Level(s)
	}
	return auditv1.LevelRequestResponse
}
