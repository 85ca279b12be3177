// Package revision stores merged policies as immutable, numbered ConfigMaps in kaudit-system and
// reads them back. The manager writes them; the node agent and the CLI read them.
package revision

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
)

// Names of labels, annotations and data keys of a revision ConfigMap.
const (
	// LabelRevision holds the revision number.
	LabelRevision = "audit.kaudit.io/revision"
	// LabelPolicyHash holds the first 16 hex digits of the policy's sha256.
	LabelPolicyHash = "audit.kaudit.io/policy-hash"
	// AnnotationPolicySHA256 holds the full sha256 of the policy.
	AnnotationPolicySHA256 = "audit.kaudit.io/policy-sha256"
	// LabelManagedBy marks the objects kaudit owns.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedBy is the value of LabelManagedBy.
	ManagedBy = "kaudit"

	// KeyPolicy holds the rendered policy YAML when it is small enough to store as text.
	KeyPolicy = "policy.yaml"
	// KeyPolicyGzip holds the rendered policy, gzipped, when it is too large for KeyPolicy.
	KeyPolicyGzip = "policy.yaml.gz"
	// KeyModules holds the gzipped JSON list of module specs in force (last known good).
	KeyModules = "modules.json.gz"

	namePrefix = "kaudit-policy-"
	// inlineLimit keeps policy.yaml readable with kubectl while leaving room under the 1 MiB
	// object limit; larger policies are gzipped.
	inlineLimit = 256 << 10
	// objectLimit is etcd's default request limit, less room for metadata.
	objectLimit = 1<<20 - 16<<10
)

// ModuleRecord is a module as a revision holds it: the spec in force when the revision was made.
type ModuleRecord struct {
	Name       string `json:"name"`
	Generation int64  `json:"generation"`
	// FirstRevision is the first revision that held this generation of the module.
	FirstRevision int64                          `json:"firstRevision"`
	Spec          v1alpha1.AuditPolicyModuleSpec `json:"spec"`
}

// Revision is one merged policy and the module specs it was made from.
type Revision struct {
	Number int64
	// Hash is the full hex sha256 of the policy's canonical form (policy.Merged.Hash).
	Hash string
	// Policy is the rendered YAML, as written to the nodes.
	Policy  []byte
	Modules []ModuleRecord
}

// Name is the ConfigMap name of revision n.
func Name(n int64) string { return namePrefix + strconv.FormatInt(n, 10) }

// Selector finds every revision ConfigMap.
func Selector() labels.Selector {
	s, _ := labels.Parse(LabelRevision + "," + LabelManagedBy + "=" + ManagedBy)
	return s
}

// ToConfigMap encodes a revision as an immutable ConfigMap in namespace.
func ToConfigMap(namespace string, r Revision) (*corev1.ConfigMap, error) {
	modules, err := gzipBytes(mustJSON(r.Modules))
	if err != nil {
		return nil, err
	}
	immutable := true
	cm := &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      Name(r.Number),
			Namespace: namespace,
			Labels: map[string]string{
				LabelRevision:   strconv.FormatInt(r.Number, 10),
				LabelPolicyHash: policy.ShortHash(r.Hash),
				LabelManagedBy:  ManagedBy,
			},
			Annotations: map[string]string{AnnotationPolicySHA256: r.Hash},
		},
		Immutable:  &immutable,
		BinaryData: map[string][]byte{KeyModules: modules},
	}
	if len(r.Policy) <= inlineLimit {
		cm.Data = map[string]string{KeyPolicy: string(r.Policy)}
	} else {
		z, err := gzipBytes(r.Policy)
		if err != nil {
			return nil, err
		}
		cm.BinaryData[KeyPolicyGzip] = z
	}
	size := len(cm.Data[KeyPolicy]) + len(cm.BinaryData[KeyPolicyGzip]) + len(modules)
	if size > objectLimit {
		return nil, fmt.Errorf("revision %d is %d bytes after compression, over the %d byte object limit: split or remove modules", r.Number, size, objectLimit)
	}
	return cm, nil
}

// FromConfigMap decodes a revision ConfigMap.
func FromConfigMap(cm *corev1.ConfigMap) (*Revision, error) {
	n, err := Number(cm)
	if err != nil {
		return nil, err
	}
	r := &Revision{Number: n, Hash: cm.Annotations[AnnotationPolicySHA256]}
	if r.Hash == "" {
		return nil, fmt.Errorf("ConfigMap %s/%s: missing annotation %s", cm.Namespace, cm.Name, AnnotationPolicySHA256)
	}
	switch {
	case cm.Data[KeyPolicy] != "":
		r.Policy = []byte(cm.Data[KeyPolicy])
	case len(cm.BinaryData[KeyPolicyGzip]) > 0:
		if r.Policy, err = gunzip(cm.BinaryData[KeyPolicyGzip]); err != nil {
			return nil, fmt.Errorf("ConfigMap %s/%s: binaryData %s: %w", cm.Namespace, cm.Name, KeyPolicyGzip, err)
		}
	default:
		return nil, fmt.Errorf("ConfigMap %s/%s: neither data %s nor binaryData %s is set", cm.Namespace, cm.Name, KeyPolicy, KeyPolicyGzip)
	}
	if z := cm.BinaryData[KeyModules]; len(z) > 0 {
		raw, err := gunzip(z)
		if err != nil {
			return nil, fmt.Errorf("ConfigMap %s/%s: binaryData %s: %w", cm.Namespace, cm.Name, KeyModules, err)
		}
		if err := json.Unmarshal(raw, &r.Modules); err != nil {
			return nil, fmt.Errorf("ConfigMap %s/%s: binaryData %s: %w", cm.Namespace, cm.Name, KeyModules, err)
		}
	}
	return r, nil
}

// Number reads the revision number from a revision ConfigMap's label.
func Number(cm *corev1.ConfigMap) (int64, error) {
	n, err := strconv.ParseInt(cm.Labels[LabelRevision], 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("ConfigMap %s/%s: label %s=%q is not a revision number", cm.Namespace, cm.Name, LabelRevision, cm.Labels[LabelRevision])
	}
	return n, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encoding module records cannot fail: %v", err))
	}
	return b
}

func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func gunzip(b []byte) ([]byte, error) {
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}
