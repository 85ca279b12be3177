package simulate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"reflect"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
)

func seedLines(f *testing.F) {
	for _, file := range []string{"testdata/edge.jsonl", "testdata/sample.jsonl"} {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for n := 0; sc.Scan() && n < 20; n++ {
			f.Add(append([]byte(nil), sc.Bytes()...))
		}
	}
	for _, s := range []string{``, `{`, `{}`, `{"a":`, `{"user":{"groups":[1]}}`, `{"objectRef":{"name":"\"}}`, `{"x":"\\"}`, `{"x":[{]}`, `{"requestObject":nul}`, "{\"kind\":\"Event\"}\x00"} {
		f.Add([]byte(s))
	}
}

// The reader of a line never panics, and on any event that encoding/json decodes it sees the
// same request and body sizes as the naive reference.
func FuzzScanEvent(f *testing.F) {
	seedLines(f)
	f.Fuzz(func(t *testing.T, line []byte) {
		var raw rawEvent
		_ = scanEvent(line, &raw) // must not panic

		var ev auditv1.Event
		if json.Unmarshal(line, &ev) != nil {
			return
		}
		canonical, err := json.Marshal(&ev)
		if err != nil {
			return
		}
		if err := scanEvent(canonical, &raw); err != nil {
			t.Fatalf("encoding/json output rejected: %v\n%s", err, canonical)
		}
		want := policy.RequestFromEvent(&ev)
		if len(want.Groups) == 0 {
			want.Groups = nil
		}
		got := requestOf(&raw)
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("request differs:\nwant %+v\ngot  %+v\nline %s", want, got, canonical)
		}
		if ev.RequestObject != nil && len(ev.RequestObject.Raw) != raw.requestObject {
			t.Fatalf("requestObject size %d, want %d", raw.requestObject, len(ev.RequestObject.Raw))
		}
		if ev.ResponseObject != nil && len(ev.ResponseObject.Raw) != raw.responseObject {
			t.Fatalf("responseObject size %d, want %d", raw.responseObject, len(ev.ResponseObject.Raw))
		}
	})
}

// Whole streams of arbitrary bytes, plain or looking like gzip, never crash the pipeline.
func FuzzReader(f *testing.F) {
	seedLines(f)
	f.Add([]byte{0x1f, 0x8b, 0x08, 0x00})
	tgt := target(f, "policy-names.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, engine := range []Engine{EngineFast, EngineNaive} {
			r, err := Run(context.Background(), []Input{bytesInput("fuzz", data)}, Options{Policy: tgt, Engine: engine, Workers: 2, ChunkSize: 16})
			if err != nil {
				t.Fatal(err)
			}
			if r.Events+r.BadLines+r.OtherLines > r.Inputs[0].Lines {
				t.Fatalf("%s: %d events, %d bad and %d other lines in %d lines", engine, r.Events, r.BadLines, r.OtherLines, r.Inputs[0].Lines)
			}
		}
	})
}
