package simulate

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// Visit sees the events Run counts, and Line.Bytes adds up to Run's estimate at every level.
func TestVisitSeesWhatRunCounts(t *testing.T) {
	inputs := []Input{fileInput(filepath.Join("testdata", "edge.jsonl")), fileInput(filepath.Join("testdata", "sample-rotated.jsonl.gz"))}
	levels := []auditv1.Level{auditv1.LevelNone, auditv1.LevelMetadata, auditv1.LevelRequest, auditv1.LevelRequestResponse}
	var mu sync.Mutex
	var sums [4]int64
	got := Visit(context.Background(), inputs, 2, func() func(*Line) {
		return func(l *Line) {
			mu.Lock()
			defer mu.Unlock()
			for i, level := range levels {
				sums[i] += l.Bytes(level)
			}
		}
	})
	for i, level := range levels {
		p := auditv1.Policy{Rules: []auditv1.PolicyRule{{Level: level}}}
		want, err := Run(context.Background(), inputs, Options{Policy: Target{Name: string(level), Policy: p}, Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		if got.Events != want.Events || got.BadLines != want.BadLines || got.OtherLines != want.OtherLines {
			t.Fatalf("visited %d events, %d bad and %d other lines; Run counts %d, %d, %d",
				got.Events, got.BadLines, got.OtherLines, want.Events, want.BadLines, want.OtherLines)
		}
		if sums[i] != want.Policy.Bytes {
			t.Errorf("%s: Line.Bytes adds up to %d, Run estimates %d", level, sums[i], want.Policy.Bytes)
		}
		for j, in := range got.Inputs {
			if in != want.Inputs[j] {
				t.Errorf("input %d: %+v, Run: %+v", j, in, want.Inputs[j])
			}
		}
	}
	if got.BadLines == 0 || got.OtherLines == 0 {
		t.Errorf("the inputs have no bad or other lines (%d, %d): the counts are not tested", got.BadLines, got.OtherLines)
	}
}
