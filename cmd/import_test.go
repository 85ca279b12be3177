package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// import --output-dir never writes over an existing kustomization unless told to: applying the
// new one (or an Argo CD prune) would delete the modules that only the old one lists.
func TestImportRefusesANonEmptyOutputDirectoryWithoutForce(t *testing.T) {
	dir := t.TempDir()
	old := map[string]string{
		"kustomization.yaml": "resources: [mine.yaml]\n",
		"mine.yaml":          "# a module someone wrote by hand\n",
	}
	for name, data := range old {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, errOut, code := kaudit(t, "", "import", simPolicy, "--output-dir", dir)
	if code == 0 || !strings.Contains(errOut, "not empty") || !strings.Contains(errOut, "kustomization.yaml") || !strings.Contains(errOut, "mine.yaml") || !strings.Contains(errOut, "--force") {
		t.Errorf("exit %d, stderr %q: want a refusal naming what is there and --force", code, errOut)
	}
	for name, data := range old {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != data {
			t.Errorf("%s was changed: %q, %v", name, b, err)
		}
	}

	_, errOut, code = kaudit(t, "", "import", simPolicy, "--output-dir", dir, "--force")
	if code != 0 {
		t.Fatalf("--force: exit %d, %s", code, errOut)
	}
	if !strings.Contains(errOut, "mine.yaml") {
		t.Errorf("--force: stderr %q does not name the file left in place, which the new kustomization does not list", errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "kustomization.yaml")); strings.Contains(string(b), "mine.yaml") {
		t.Errorf("--force: the kustomization was not replaced:\n%s", b)
	}

	// A directory that does not exist yet is created.
	fresh := filepath.Join(t.TempDir(), "new", "modules")
	if _, errOut, code := kaudit(t, "", "import", simPolicy, "--output-dir", fresh); code != 0 {
		t.Errorf("a new directory: exit %d, %s", code, errOut)
	}
}
