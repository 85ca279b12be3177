package cmd

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// largePolicy writes a one-line JSON policy of about size bytes, rules of a generated policy.
func largePolicy(tb testing.TB, size int) string {
	tb.Helper()
	type gr struct {
		Group     string   `json:"group"`
		Resources []string `json:"resources"`
	}
	type rule struct {
		Level      string   `json:"level"`
		Users      []string `json:"users,omitempty"`
		Verbs      []string `json:"verbs,omitempty"`
		Resources  []gr     `json:"resources,omitempty"`
		Namespaces []string `json:"namespaces,omitempty"`
	}
	levels := []string{"None", "Metadata", "Request", "RequestResponse"}
	var rules []rule
	for n, i := 0, 0; n < size; i++ {
		r := rule{Level: levels[i%4], Verbs: []string{"get", "list", "create"}, Namespaces: []string{fmt.Sprint("ns-", i), fmt.Sprint("team-", i%50)},
			Resources: []gr{{"", []string{"pods", "configmaps", fmt.Sprint("res", i)}}, {"apps", []string{"deployments"}}}}
		for k := range 5 {
			r.Users = append(r.Users, fmt.Sprintf("user-%d-%d", i, k))
		}
		rules = append(rules, r)
		n += 290 // about one rule's JSON
	}
	rules = append(rules, rule{Level: "Metadata"})
	b, err := json.Marshal(map[string]any{"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": []string{"RequestReceived"}, "rules": rules})
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "policy.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// Rendering a large policy costs time and memory in proportion to its size: the metric
// peak-heap/input is the most heap in use during a render per byte of input.
func BenchmarkRenderLargePolicy(b *testing.B) {
	path := largePolicy(b, 8<<20)
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	var peak atomic.Uint64
	done := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	runtime.GC()
	b.ResetTimer()
	for range b.N {
		root := NewRootCommand()
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		root.SetArgs([]string{"render", path})
		if err := root.Execute(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	close(done)
	b.SetBytes(st.Size())
	b.ReportMetric(float64(peak.Load())/float64(st.Size()), "peak-heap/input")
}
