package v1alpha1_test

import (
	"strings"
	"testing"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/manifest"
)

// The getters' fallbacks serve objects built in Go without the apiserver's defaulting; they
// must give what the CRD schema's defaults give, or a typed client and kubectl would disagree.
func TestGetterDefaultsEqualTheSchemaDefaults(t *testing.T) {
	set, err := manifest.Read(strings.NewReader("apiVersion: audit.kaudit.io/v1alpha1\nkind: AuditPolicy\nmetadata: {name: cluster}\nspec: {}\n"), manifest.Stdin)
	if err != nil {
		t.Fatal(err)
	}
	defaulted := set.Policy.Spec
	var empty v1alpha1.AuditPolicySpec
	checks := []struct {
		name           string
		schema, getter any
	}{
		{"rollout.healthTimeout", defaulted.Rollout.HealthTimeout.Duration, empty.Rollout.HealthTimeoutOrDefault()},
		{"rollout.minRestartInterval", defaulted.Rollout.MinRestartInterval.Duration, empty.Rollout.MinRestartIntervalOrDefault()},
		{"rollout.debounce", defaulted.Rollout.Debounce.Duration, empty.Rollout.DebounceOrDefault()},
		{"rollout.maxWait", defaulted.Rollout.MaxWait.Duration, empty.Rollout.MaxWaitOrDefault()},
		{"rollout.minReadyTime", defaulted.Rollout.MinReadyTime.Duration, empty.Rollout.MinReadyTimeOrDefault()},
		{"auditLog.path", defaulted.AuditLog.Path, empty.AuditLog.PathOrDefault()},
		{"auditLog.maxAge", *defaulted.AuditLog.MaxAge, empty.AuditLog.MaxAgeOrDefault()},
		{"auditLog.maxBackup", *defaulted.AuditLog.MaxBackup, empty.AuditLog.MaxBackupOrDefault()},
		{"auditLog.maxSize", *defaulted.AuditLog.MaxSize, empty.AuditLog.MaxSizeOrDefault()},
		{"namespacedModules.enabled", *defaulted.NamespacedModules.Enabled, empty.NamespacedModules.EnabledOrDefault()},
		{"namespacedModules.maxLevel", defaulted.NamespacedModules.MaxLevel, empty.NamespacedModules.MaxLevelOrDefault()},
	}
	for _, c := range checks {
		if c.schema != c.getter {
			t.Errorf("spec.%s: the schema defaults to %v, the getter falls back to %v", c.name, c.schema, c.getter)
		}
	}
}
