package staticpod

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var manifests = []string{"kubeadm-v1.33.yaml", "kind-v1.30.yaml", "hand-edited-audit.yaml"}

var managed = FlagSettings{
	PolicyFile: "/etc/kubernetes/audit/policy.yaml",
	LogPath:    "/var/log/kubernetes/audit/audit.log",
	MaxAge:     7, MaxBackup: 10, MaxSize: 100,
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test -update and review the diff):\n%s", name, got)
	}
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// changedLines returns the lines of b that are not in a, in order.
func changedLines(a, b []byte) []string {
	old := map[string]int{}
	for _, l := range strings.Split(string(a), "\n") {
		old[l]++
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if old[l] > 0 {
			old[l]--
			continue
		}
		out = append(out, l)
	}
	return out
}

func isSubsequence(a, b []byte) bool {
	bl := strings.Split(string(b), "\n")
	j := 0
	for _, l := range strings.Split(string(a), "\n") {
		for j < len(bl) && bl[j] != l {
			j++
		}
		if j == len(bl) {
			return false
		}
		j++
	}
	return true
}

// removeReplaced drops the lines of a that are not in b (values edited in place).
func removeReplaced(a, b []byte) []byte {
	inB := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		inB[l] = true
	}
	var keep []string
	for _, l := range strings.Split(string(a), "\n") {
		if inB[l] {
			keep = append(keep, l)
		}
	}
	return []byte(strings.Join(keep, "\n"))
}
