package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/yaml"
)

// HashOf is the hash of a rendered policy (Render's output, or any audit.k8s.io/v1 Policy
// YAML): the same value as Merged.Hash for the Merged that rendered it. Comments do not count.
// It parses strictly, so a field the policy type does not know is an error rather than ignored.
func HashOf(rendered []byte) (string, error) {
	var p auditv1.Policy
	if err := yaml.UnmarshalStrict(rendered, &p); err != nil {
		return "", fmt.Errorf("parsing the policy: %w", err)
	}
	if gv := auditv1.SchemeGroupVersion.String(); p.APIVersion != gv || p.Kind != "Policy" {
		return "", fmt.Errorf("parsing the policy: apiVersion %q, kind %q: want %s Policy", p.APIVersion, p.Kind, gv)
	}
	sum := sha256.Sum256(encode(p))
	return hex.EncodeToString(sum[:]), nil
}
