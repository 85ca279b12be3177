package manifest

import (
	"fmt"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// auditV1beta1 is the audit API version that kube-apiserver no longer serves. Its Policy has
// the fields of audit.k8s.io/v1, so it is read as v1, with a warning.
const auditV1beta1 = "audit.k8s.io/v1beta1"

// isUpstreamPolicy tells whether a document is a plain audit policy of a version kaudit reads.
func isUpstreamPolicy(apiVersion, kind string) bool {
	return kind == "Policy" && (apiVersion == auditv1.SchemeGroupVersion.String() || apiVersion == auditV1beta1)
}

// addUpstream reads a plain audit policy (JSON), a v1beta1 one as v1.
func (s *Set) addUpstream(where, apiVersion string, raw []byte) error {
	var p auditv1.Policy
	unknown, err := decodeJSON(raw, &p)
	if err != nil {
		return fmt.Errorf("%s: %s Policy: %w", where, apiVersion, err)
	}
	s.addUnknownFields(where, apiVersion+" Policy", "", unknown)
	if apiVersion == auditV1beta1 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("%s: read as %s, whose fields are the same: kube-apiserver no longer reads %s and fails to start on it; change the file's apiVersion", where, auditv1.SchemeGroupVersion, auditV1beta1))
		p.APIVersion = auditv1.SchemeGroupVersion.String()
	}
	s.Upstream = append(s.Upstream, UpstreamPolicy{Source: where, Policy: p})
	return nil
}
