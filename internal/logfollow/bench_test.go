package logfollow

import (
	"testing"
	"time"
)

// BenchmarkIdlePoll is what the follower costs while the log is quiet: one Poll finding nothing
// new. It reports the share of one core at a Poll every 250 ms.
func BenchmarkIdlePoll(b *testing.B) {
	w := newLogWriter(b)
	newStateDir(b, w)
	w.lines("a")
	f := w.open(0)
	defer f.Close()
	poll(b, f)
	for b.Loop() {
		if batch, err := f.Poll(); err != nil || len(batch.Lines) > 0 {
			b.Fatal(batch, err)
		}
	}
	perPoll := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(100*float64(perPoll)/float64(250*time.Millisecond), "%core@4polls/s")
}
