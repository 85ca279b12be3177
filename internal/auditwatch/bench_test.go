package auditwatch

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kaudit/kaudit/internal/attribution"
	"github.com/kaudit/kaudit/internal/logfollow"
	"github.com/kaudit/kaudit/internal/manifest"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/simulate"
)

// benchLogBytes is the size of the log the benchmark builds from the recorded shop log.
const benchLogBytes = 32 << 20

// benchLog is the log the benchmarks read: $KAUDIT_BENCH_LOG (for instance
// `go run ./hack/genauditlog -size 256MiB -o /tmp/audit.log`), else the recorded shop log
// repeated to benchLogBytes.
func benchLog(b *testing.B) (path string, events int64) {
	b.Helper()
	path = os.Getenv("KAUDIT_BENCH_LOG")
	if path == "" {
		f, err := os.Open("../../test/presets/testdata/auditlogs/shop.jsonl.gz")
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		z, err := gzip.NewReader(f)
		if err != nil {
			b.Fatal(err)
		}
		shop, err := io.ReadAll(z)
		if err != nil {
			b.Fatal(err)
		}
		log := bytes.Repeat(shop, benchLogBytes/len(shop)+1)
		path = filepath.Join(b.TempDir(), "audit.log")
		if err := os.WriteFile(path, log, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return path, int64(bytes.Count(data, []byte("\n")))
}

func benchPolicy(b *testing.B) *policy.Merged {
	b.Helper()
	set, err := manifest.Read(nil, "../../config/modules/baseline")
	if err != nil {
		b.Fatal(err)
	}
	var mods []policy.Module
	for _, m := range set.Modules {
		mods = append(mods, policy.Module{Name: m.Name, Spec: m.Spec})
	}
	m, err := policy.Merge(mods, policy.SettingsFrom(set.Policy.Spec))
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report adds what the agent's goals are stated in: CPU per 1,000 events/s, as a share of one
// core (process CPU time, garbage collection included), and the heap the reader holds once it
// has read the whole log (live heap after a collection, less the live heap before it started).
func report(b *testing.B, events int64, cpu time.Duration, held uint64) {
	perEvent := float64(cpu.Nanoseconds()) / float64(events) / float64(b.N)
	b.ReportMetric(perEvent, "cpu-ns/event")
	b.ReportMetric(perEvent*1000/1e9*100, "%core@1000ev/s")
	b.ReportMetric(float64(held)/(1<<20), "heap-held-MiB")
}

// liveHeap is the live heap after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkAuditLog measures the agent's work per audit event, next to its baselines:
//
//   - read: the follower alone, reading the file into lines (the floor);
//   - watch: the follower, the attribution of every event under the baseline modules and a
//     commit, as the agent runs them;
//   - simulate: `kaudit simulate` of the same file and policy on one worker.
func BenchmarkAuditLog(b *testing.B) {
	path, events := benchLog(b)
	m := benchPolicy(b)
	history := []attribution.Revision{{Number: 1, Policy: m.Render()}}
	b.Logf("%s: %d events", path, events)

	b.Run("read", func(b *testing.B) {
		var held uint64
		cpu := time.Duration(0)
		for b.Loop() {
			before := liveHeap()
			start := cpuTime()
			f, err := logfollow.Open(logfollow.Options{Path: path, CheckpointDir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			var n int64
			for {
				batch, err := f.Poll()
				if err != nil {
					b.Fatal(err)
				}
				if len(batch.Lines) == 0 {
					break
				}
				n += int64(len(batch.Lines))
			}
			cpu += cpuTime() - start
			held = max(liveHeap(), before) - before
			runtime.KeepAlive(f)
			if n != events {
				b.Fatalf("%d lines read, want %d", n, events)
			}
			f.Close()
		}
		report(b, events, cpu, held)
	})

	b.Run("watch", func(b *testing.B) {
		var held uint64
		cpu := time.Duration(0)
		for b.Loop() {
			before := liveHeap()
			start := cpuTime()
			w, err := New(Options{
				Follow: logfollow.Options{Path: path, CheckpointDir: b.TempDir()},
				Clock:  clocktesting.NewFakeClock(time.Now()),
			}, history)
			if err != nil {
				b.Fatal(err)
			}
			for w.readOnce() {
			}
			if err := w.commit(); err != nil {
				b.Fatal(err)
			}
			cpu += cpuTime() - start
			held = max(liveHeap(), before) - before
			runtime.KeepAlive(w)
			var n int64
			for _, r := range w.published.Load().Rules {
				n += r.Events
			}
			if n != events {
				b.Fatalf("%d events counted, want %d", n, events)
			}
			w.follower.Close()
		}
		report(b, events, cpu, held)
	})

	b.Run("simulate", func(b *testing.B) {
		cpu := time.Duration(0)
		for b.Loop() {
			start := cpuTime()
			r, err := simulate.Run(context.Background(), []simulate.Input{{Name: path, Open: func() (io.ReadCloser, error) { return os.Open(path) }}},
				simulate.Options{Policy: simulate.Target{Policy: m.Policy, Sources: m.Sources}, Workers: 1})
			if err != nil {
				b.Fatal(err)
			}
			cpu += cpuTime() - start
			if r.Events != events {
				b.Fatalf("%d events simulated, want %d", r.Events, events)
			}
		}
		report(b, events, cpu, 0)
	})
}
