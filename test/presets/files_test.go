package presets

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/manifest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.policy.yaml from the modules")

// The rendered baseline is kept as a golden file, so a review sees the policy a node gets.
func TestBaselineRendersToGoldenPolicyTheLoaderAccepts(t *testing.T) {
	for _, tc := range []struct{ dir, golden string }{
		{baselineDir, "baseline.policy.yaml"},
		{managedCloudDir, "managed-cloud-example.policy.yaml"},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			merged, _, err := loadSet(tc.dir)
			if err != nil {
				t.Fatal(err)
			}
			rendered := merged.Render()
			if _, err := evaluate(merged); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(golden, rendered, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./test/presets -update)", err)
			}
			if !bytes.Equal(rendered, want) {
				t.Errorf("%s renders differently from %s; if intended, run go test ./test/presets -update and review the diff", tc.dir, golden)
			}
		})
	}
}

func TestBaselineSettingsComeFromItsAuditPolicy(t *testing.T) {
	merged, set, err := loadSet(baselineDir)
	if err != nil {
		t.Fatal(err)
	}
	if set.Policy == nil {
		t.Fatal("the baseline has no AuditPolicy manifest")
	}
	if set.Policy.Spec.DefaultLevel != v1alpha1.LevelMetadata {
		t.Errorf("defaultLevel %q, want Metadata", set.Policy.Spec.DefaultLevel)
	}
	if !slices.Equal(set.Policy.Spec.OmitStages, []v1alpha1.Stage{v1alpha1.StageRequestReceived}) {
		t.Errorf("omitStages %v, want [RequestReceived]", set.Policy.Spec.OmitStages)
	}
	last := merged.Policy.Rules[len(merged.Policy.Rules)-1]
	if !merged.Sources[len(merged.Sources)-1].IsDefault() || string(last.Level) != string(auditinternal.LevelMetadata) {
		t.Errorf("the last rule is %+v from %+v, want the Metadata catch-all from defaultLevel", last, merged.Sources[len(merged.Sources)-1])
	}
	// No preset module has a catch-all (docs/design.md, "Modules and merge"): only the default rule
	// may match every request.
	for i, r := range merged.Policy.Rules[:len(merged.Policy.Rules)-1] {
		if len(r.Users) == 0 && len(r.UserGroups) == 0 && len(r.Verbs) == 0 && len(r.Resources) == 0 &&
			len(r.Namespaces) == 0 && len(r.NonResourceURLs) == 0 {
			t.Errorf("module %s rule %d is a catch-all", merged.Sources[i].Module, merged.Sources[i].Rule)
		}
	}
}

// The module order is the design: secrets first (nothing after it can log a secret body),
// privilege changes and interactive pod access before the noise modules (no noise rule can
// hide them), the apiserver's
// noise before system-masters (its loopback user is in that group), system-masters before
// every other noise module (a component's name minted with the group system:masters, an
// admin's health checks and event reads are kept).
func TestBaselineModuleOrder(t *testing.T) {
	want := []string{
		"secrets-metadata-only",
		"rbac-changes", "admission-changes", "pod-interactive-access",
		"noise-kube-apiserver",
		"system-masters",
		"noise-kube-controller-manager", "noise-kube-scheduler", "noise-nodes", "noise-kube-proxy",
		"noise-nonresource-reads", "noise-event-reads",
		"workloads",
	}
	if got := baseline(t).merged.Modules; !slices.Equal(got, want) {
		t.Errorf("module order\n got %v\nwant %v", got, want)
	}
}

// Every YAML file in the baseline directory is listed in its kustomization (none is silently
// left out of `kubectl apply -k`), holds exactly one object, and a module's file is named
// after it and says what it keeps and drops.
func TestBaselineFilesAreOneModuleEachAndAllListed(t *testing.T) {
	for _, tc := range []struct {
		dir      string
		policies int
	}{{baselineDir, 1}, {managedCloudDir, 1}, {optionalDir, 0}} {
		dir := tc.dir
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var kz struct {
				Resources []string `json:"resources"`
			}
			data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal(data, &kz); err != nil {
				t.Fatal(err)
			}
			files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			var listed []string
			for _, f := range files {
				if filepath.Base(f) != "kustomization.yaml" {
					listed = append(listed, filepath.Base(f))
				}
			}
			slices.Sort(listed)
			resources := slices.Sorted(slices.Values(kz.Resources))
			if !slices.Equal(resources, listed) {
				t.Errorf("kustomization resources %v, files %v", resources, listed)
			}
			policies := 0
			for _, f := range listed {
				set, err := manifest.Read(nil, filepath.Join(dir, f))
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case set.Policy != nil && len(set.Modules) == 0:
					policies++
				case set.Policy == nil && len(set.Modules) == 1:
					m := set.Modules[0]
					if m.Name+".yaml" != f {
						t.Errorf("%s holds module %q: name the file after the module", f, m.Name)
					}
					d := strings.ToLower(m.Spec.Description)
					if !strings.Contains(d, "keep") && !strings.Contains(d, "drop") || !strings.Contains(d, "do not use it") {
						t.Errorf("%s: the description must say what the module keeps or drops, and when not to use it (\"Do not use it ...\")", f)
					}
				default:
					t.Errorf("%s: holds %d modules and %v policy; one object per file", f, len(set.Modules), set.Policy != nil)
				}
			}
			if policies != tc.policies {
				t.Errorf("%d AuditPolicy manifests, want %d", policies, tc.policies)
			}
		})
	}
}

// Every manifest under config/modules passes the CRD's OpenAPI schema and CEL rules, as
// `kubectl apply` would check them: internal/manifest validates with the apiserver's code.
func TestModuleManifestsPassCRDValidation(t *testing.T) {
	err := filepath.WalkDir(modulesDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".yaml" || d.Name() == "kustomization.yaml" {
			return err
		}
		if _, err := manifest.Read(nil, path); err != nil {
			t.Error(err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// config/modules as a whole is the baseline, so `kaudit render config/modules` gives the same
// policy as `kaudit render config/modules/baseline`.
func TestModulesDirectoryRendersTheBaseline(t *testing.T) {
	all, _, err := loadSet(modulesDir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(all.Render(), baseline(t).merged.Render()) {
		t.Error("config/modules renders differently from config/modules/baseline")
	}
}
