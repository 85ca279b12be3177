package presets

import (
	"testing"

	"github.com/kaudit/kaudit/internal/lint"
)

// `kaudit lint` reports no errors on the shipped module sets. Warnings and infos are logged for
// review, not failed on: they are advice (volume, unknown names) that the module descriptions
// and docs/modules.md answer.
func TestLintReportsNoErrorsOnShippedModules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		paths []string
	}{
		{"baseline", []string{baselineDir}},
		{"baseline+optional", []string{baselineDir, optionalDir}},
		{"managed-cloud-example", []string{managedCloudDir}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			merged, _, err := loadSet(tc.paths...)
			if err != nil {
				t.Fatal(err)
			}
			findings, err := lint.Lint(merged, lint.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range findings {
				if f.Severity == lint.Error {
					t.Errorf("%s: %s: %s [%s]", f.Where(), f.Check, f.Message, f.Fix)
				} else {
					t.Logf("%s %s: %s: %s", f.Severity, f.Where(), f.Check, f.Message)
				}
			}
		})
	}
}
