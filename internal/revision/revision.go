// Package revision stores merged policies as immutable, numbered ConfigMaps in kaudit-system and
// reads them back. The manager writes them; the node agent and the CLI read them.
package revision

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
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

// The decompression caps. A ConfigMap holds at most 1 MiB, but gzip can expand that a
// thousandfold: without a cap one crafted revision would exhaust the memory of the manager and of
// every agent that reads it, on every restart. 5,000 modules of 3 rules render to about 4 MiB of
// policy and 4 MiB of module records, so the caps leave eight times that. Encode refuses a
// revision over them, so the manager never writes what it cannot read back.
const (
	MaxPolicyBytes  = 32 << 20
	MaxModulesBytes = 32 << 20
)

// ModuleRecord is a module as a revision holds it: the spec in force when the revision was made.
type ModuleRecord struct {
	Name string `json:"name"`
	// Namespace is the namespace of a NamespacedAuditPolicyModule, whose spec is recorded as
	// policy.NamespacedModule converts it; empty for an AuditPolicyModule.
	Namespace  string `json:"namespace,omitempty"`
	Generation int64  `json:"generation"`
	// FirstRevision is the first revision that held this generation of the module.
	FirstRevision int64                          `json:"firstRevision"`
	Spec          v1alpha1.AuditPolicyModuleSpec `json:"spec"`
}

// Module is the record as the merge sees it.
func (r ModuleRecord) Module() policy.Module {
	return policy.Module{Namespace: r.Namespace, Name: r.Name, Spec: r.Spec}
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

// Digest is the hex sha256 of everything a revision holds: its number, policy hash, rendered
// policy and module records (last known good is content too, see docs/design.md, "Last known
// good"). The parts are length-prefixed after a domain tag, so no two different revisions share
// a digest by moving bytes from one part to another. The manager records it in
// status.revisions and trusts a revision ConfigMap only while its content still has the digest
// recorded for its number (see docs/design.md, "Revisions").
func Digest(r Revision) string { return digest(r, encodeRecords(r.Modules)) }

// digest is Digest with the module records already encoded.
func digest(r Revision, records []byte) string {
	h := sha256.New()
	for _, part := range [][]byte{
		[]byte("kaudit.io/revision-digest/v1"),
		[]byte(strconv.FormatInt(r.Number, 10)),
		[]byte(r.Hash),
		r.Policy,
		records,
	} {
		_ = binary.Write(h, binary.BigEndian, uint64(len(part)))
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Verify decodes cm and checks that it is exactly what Encode writes for a revision whose
// digest is digest: named after its number, immutable, labelled with its policy hash, and
// holding content with that digest. The error says what differs.
func Verify(cm *corev1.ConfigMap, digest string) (*Revision, error) {
	r, err := FromConfigMap(cm)
	if err != nil {
		return nil, err
	}
	where := fmt.Sprintf("ConfigMap %s/%s", cm.Namespace, cm.Name)
	switch {
	case cm.Name != Name(r.Number):
		return nil, fmt.Errorf("%s: label %s=%d, but revision %d is named %s", where, LabelRevision, r.Number, r.Number, Name(r.Number))
	case cm.Immutable == nil || !*cm.Immutable:
		return nil, fmt.Errorf("%s: not immutable", where)
	case cm.Labels[LabelPolicyHash] != policy.ShortHash(r.Hash) || cm.Labels[LabelManagedBy] != ManagedBy:
		return nil, fmt.Errorf("%s: labels %s and %s do not match its content", where, LabelPolicyHash, LabelManagedBy)
	case Digest(*r) != digest:
		return nil, fmt.Errorf("%s: content does not match the sha256 recorded for revision %d", where, r.Number)
	}
	return r, nil
}

// Encode encodes a revision as an immutable ConfigMap in namespace, and returns its Digest with
// it: the module records are encoded once for both (at 5,000 modules they are megabytes of
// JSON).
func Encode(namespace string, r Revision) (*corev1.ConfigMap, string, error) {
	records := encodeRecords(r.Modules)
	cm, err := toConfigMap(namespace, r, records)
	if err != nil {
		return nil, "", err
	}
	return cm, digest(r, records), nil
}

func toConfigMap(namespace string, r Revision, records []byte) (*corev1.ConfigMap, error) {
	if len(r.Policy) > MaxPolicyBytes || len(records) > MaxModulesBytes {
		return nil, fmt.Errorf("revision %d: policy of %d bytes and module records of %d bytes, over the caps of %d and %d bytes: split or remove modules", r.Number, len(r.Policy), len(records), MaxPolicyBytes, MaxModulesBytes)
	}
	modules, err := gzipBytes(records)
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
		if r.Policy, err = gunzip(cm.BinaryData[KeyPolicyGzip], MaxPolicyBytes); err != nil {
			return nil, fmt.Errorf("ConfigMap %s/%s: binaryData %s: %w", cm.Namespace, cm.Name, KeyPolicyGzip, err)
		}
	default:
		return nil, fmt.Errorf("ConfigMap %s/%s: neither data %s nor binaryData %s is set", cm.Namespace, cm.Name, KeyPolicy, KeyPolicyGzip)
	}
	if z := cm.BinaryData[KeyModules]; len(z) > 0 {
		raw, err := gunzip(z, MaxModulesBytes)
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

// encodeRecords is json.Marshal(records), written one record at a time: encoding/json keeps
// the buffer of each Marshal for reuse, so marshalling the whole list (megabytes at 5,000
// modules) left a second copy of it on the heap until later collections.
func encodeRecords(records []ModuleRecord) []byte {
	if records == nil {
		return []byte("null")
	}
	b := []byte{'['}
	for i := range records {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, mustJSON(&records[i])...)
	}
	return append(b, ']')
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

// gunzip decompresses b, refusing to produce more than limit bytes.
func gunzip(b []byte, limit int) ([]byte, error) {
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(out) > limit {
		return nil, fmt.Errorf("decompresses to more than %d MiB, the cap", limit>>20)
	}
	return out, nil
}
