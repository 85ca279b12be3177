package simulate

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"testing"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
)

// TestLineReadsWhatTheNaiveDecoderReads checks Line against encoding/json on every event of the
// samples: the request, level, stage and time, and that lines sharing a key share a request.
func TestLineReadsWhatTheNaiveDecoderReads(t *testing.T) {
	var l Line
	for _, file := range []string{"testdata/sample.jsonl", "testdata/edge.jsonl"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		byKey := map[string]policy.Request{}
		byKeyNoNames := map[string]policy.Request{}
		for n, raw := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			var ev auditv1.Event
			jerr := json.Unmarshal(raw, &ev)
			err := l.Scan(raw)
			if (jerr != nil) != (err != nil) {
				t.Fatalf("%s:%d: encoding/json says %v, Scan says %v", file, n+1, jerr, err)
			}
			if err != nil || !l.IsEvent() {
				continue
			}
			want := policy.RequestFromEvent(&ev)
			got := l.Request()
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s:%d: request\n got %+v\nwant %+v", file, n+1, got, want)
			}
			if l.Level() != ev.Level || l.Stage() != ev.Stage {
				t.Fatalf("%s:%d: level %q stage %q, want %q %q", file, n+1, l.Level(), l.Stage(), ev.Level, ev.Stage)
			}
			if ts, ok := l.Time(); ok != !ev.StageTimestamp.IsZero() || !ts.Equal(ev.StageTimestamp.Time) {
				t.Fatalf("%s:%d: time %v (%v), want %v", file, n+1, ts, ok, ev.StageTimestamp.Time)
			}
			// Requests under one key differ at most in what no policy matches on: the version,
			// and the path of a resource request.
			want.APIVersion = ""
			if want.ResourceRequest {
				want.Path = ""
			}
			if prev, ok := byKey[string(l.AppendKey(nil, true))]; ok && !reflect.DeepEqual(prev, want) {
				t.Fatalf("%s:%d: key shared by %+v and %+v", file, n+1, prev, want)
			}
			byKey[string(l.AppendKey(nil, true))] = want
			want.Name = ""
			if prev, ok := byKeyNoNames[string(l.AppendKey(nil, false))]; ok && !reflect.DeepEqual(prev, want) {
				t.Fatalf("%s:%d: key without names shared by %+v and %+v", file, n+1, prev, want)
			}
			byKeyNoNames[string(l.AppendKey(nil, false))] = want
		}
	}
}

func TestLineTimeIsTheTopLevelStageTimestamp(t *testing.T) {
	var l Line
	for _, tc := range []struct {
		name, line string
		want       string
	}{
		{"stage timestamp", `{"requestReceivedTimestamp":"2026-01-01T00:00:00.000001Z","stageTimestamp":"2026-01-01T00:00:02.5Z"}`, "2026-01-01T00:00:02.5Z"},
		{"received timestamp when no stage timestamp", `{"requestReceivedTimestamp":"2026-01-01T00:00:00.000001Z"}`, "2026-01-01T00:00:00.000001Z"},
		{"a body's key of the same name", `{"requestObject":{"stageTimestamp":"2020-01-01T00:00:00Z"},"stageTimestamp":"2026-01-01T00:00:03Z","annotations":{"stageTimestamp":"2021-01-01T00:00:00Z"}}`, "2026-01-01T00:00:03Z"},
		{"a body's key of the same name last", `{"stageTimestamp":"2026-01-01T00:00:04Z","responseObject":{"a":1,"stageTimestamp":"2020-01-01T00:00:00Z"}}`, "2026-01-01T00:00:04Z"},
		{"in a string", `{"stageTimestamp":"2026-01-01T00:00:05Z","annotations":{"x":"a,\"stageTimestamp\":\"2020-01-01T00:00:00Z\"}"}}`, "2026-01-01T00:00:05Z"},
		{"written with spaces", `{ "stageTimestamp" : "2026-01-01T00:00:06Z" }`, "2026-01-01T00:00:06Z"},
		{"not a time, then the received timestamp", `{"requestReceivedTimestamp":"2026-01-01T00:00:07Z","stageTimestamp":"soon"}`, "2026-01-01T00:00:07Z"},
		{"none", `{"stage":"ResponseComplete"}`, ""},
		{"not a time", `{"stageTimestamp":"yesterday"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := l.Scan([]byte(tc.line)); err != nil {
				t.Fatal(err)
			}
			got, ok := l.Time()
			if tc.want == "" {
				if ok {
					t.Fatalf("time %v, want none", got)
				}
				return
			}
			want, _ := time.Parse(time.RFC3339Nano, tc.want)
			if !ok || !got.Equal(want) {
				t.Fatalf("time %v (%v), want %v", got, ok, want)
			}
		})
	}
}
