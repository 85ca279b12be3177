package cmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The suggestions are manifests that render accepts next to the starting policy, and the JSON
// form carries the same modules.
func TestAdviseWritesModulesThatRenderAccepts(t *testing.T) {
	out, errOut, code := kaudit(t, "", "advise", "--policy", simPolicy, simSample)
	if code != 0 || !strings.Contains(out, "kind: AuditPolicyModule") {
		t.Fatalf("exit %d, %s, output %.300s", code, errOut, out)
	}
	advised := filepath.Join(t.TempDir(), "advised.yaml")
	if err := os.WriteFile(advised, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	rendered, errOut, code := kaudit(t, "", "render", simPolicy, advised)
	if code != 0 || !strings.Contains(rendered, "# module advise-") {
		t.Errorf("render of the starting policy with the suggestions: exit %d, %s, output %.300s", code, errOut, rendered)
	}

	out, errOut, code = kaudit(t, "", "advise", "-p", simPolicy, "-o", "json", "--max-rules", "2", simSample)
	var advice struct {
		Modules []struct {
			Rules []struct{ BytesSaved int64 }
		}
		Summary struct{ BytesBefore, BytesAfter int64 }
	}
	if err := json.Unmarshal([]byte(out), &advice); code != 0 || err != nil {
		t.Fatalf("json: exit %d, %v, %s", code, err, errOut)
	}
	rules := 0
	for _, m := range advice.Modules {
		rules += len(m.Rules)
	}
	if rules != 2 || advice.Summary.BytesAfter >= advice.Summary.BytesBefore {
		t.Errorf("json: %d rules, summary %+v", rules, advice.Summary)
	}
}

func TestAdviseRefusesWhatItCannotRead(t *testing.T) {
	for _, args := range [][]string{
		{"advise", "--policy", simPolicy, simSample, "missing.jsonl"},
		{"advise", "--policy", simPolicy, "testdata/modules/noise.yaml"}, // no audit event
		{"advise", simSample},
		{"advise", "--policy", simPolicy, "--max-rules", "-1", simSample},
	} {
		if _, errOut, code := kaudit(t, "", args...); code == 0 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}
