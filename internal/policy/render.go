package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/yaml"
)

// header opens every rendered policy. It carries no revision or time, so that the same modules
// render byte-identical files everywhere.
const header = "# Audit policy rendered by kaudit from AuditPolicyModules.\n" +
	"# Do not edit on the node: the kaudit agent replaces this file. Change the modules instead.\n"

// IsRendered tells whether a policy file was written by Render: it opens with kaudit's header,
// and each rule follows a comment naming the module and rule it came from.
func IsRendered(file []byte) bool { return bytes.HasPrefix(file, []byte(header)) }

// document is the policy as written to disk, without the ObjectMeta that auditv1.Policy carries.
type document struct {
	APIVersion        string               `json:"apiVersion"`
	Kind              string               `json:"kind"`
	OmitStages        []auditv1.Stage      `json:"omitStages,omitempty"`
	OmitManagedFields bool                 `json:"omitManagedFields,omitempty"`
	Rules             []auditv1.PolicyRule `json:"rules"`
}

func toDocument(p auditv1.Policy) document {
	return document{
		APIVersion:        auditv1.SchemeGroupVersion.String(),
		Kind:              "Policy",
		OmitStages:        p.OmitStages,
		OmitManagedFields: p.OmitManagedFields,
		Rules:             p.Rules,
	}
}

// encode is the canonical JSON form of a policy: what the loader validates and what is hashed.
func encode(p auditv1.Policy) []byte {
	b, err := json.Marshal(toDocument(p))
	if err != nil {
		panic(fmt.Sprintf("encoding an audit policy cannot fail: %v", err))
	}
	return b
}

// Render writes the policy as YAML with a comment above each rule naming the module and rule
// index it came from. The same Merged always renders the same bytes. The result is shared:
// callers must not modify it.
//
// A Merger's merge is joined from the pieces the Merger keeps on each call instead: kept joined
// too, the policy would be held twice as long as the Merged lives.
func (m *Merged) Render() []byte {
	if m.parts != nil {
		return bytes.Join(m.parts, nil)
	}
	if m.rendered == nil {
		m.rendered = m.render()
	}
	return m.rendered
}

func (m *Merged) render() []byte {
	b := bytes.NewBuffer(m.renderTop())
	m.renderRules(b, 0, len(m.Policy.Rules))
	return b.Bytes()
}

// renderTop is the rendered policy up to its first rule: the header, the policy-level fields and
// "rules:".
func (m *Merged) renderTop() []byte {
	var b bytes.Buffer
	b.WriteString(header)
	top, err := yaml.Marshal(struct {
		APIVersion        string          `json:"apiVersion"`
		Kind              string          `json:"kind"`
		OmitStages        []auditv1.Stage `json:"omitStages,omitempty"`
		OmitManagedFields bool            `json:"omitManagedFields,omitempty"`
	}{auditv1.SchemeGroupVersion.String(), "Policy", m.Policy.OmitStages, m.Policy.OmitManagedFields})
	if err != nil {
		panic(fmt.Sprintf("rendering an audit policy cannot fail: %v", err))
	}
	b.Write(top)
	b.WriteString("rules:\n")
	return b.Bytes()
}

// renderRules writes rules [from, to) of the policy, each after its comment.
func (m *Merged) renderRules(b *bytes.Buffer, from, to int) {
	for i, rule := range m.Policy.Rules[from:to] {
		b.WriteString(m.sourceComment(from + i))
		y, err := yaml.Marshal(rule)
		if err != nil {
			panic(fmt.Sprintf("rendering an audit policy rule cannot fail: %v", err))
		}
		for j, line := range strings.Split(strings.TrimSuffix(string(y), "\n"), "\n") {
			if j == 0 {
				b.WriteString("- ")
			} else {
				b.WriteString("  ")
			}
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
}

func (m *Merged) sourceComment(i int) string {
	if i >= len(m.Sources) {
		return ""
	}
	src := m.Sources[i]
	if src.IsDefault() {
		return "# default: requests no module matched (AuditPolicy cluster spec.defaultLevel)\n"
	}
	if src.Namespace != "" {
		return fmt.Sprintf("# namespaced module %s, rule %d\n", src.ModuleID(), src.Rule)
	}
	return fmt.Sprintf("# module %s, rule %d\n", src.Module, src.Rule)
}

// Hash is the hex sha256 of the policy's canonical form. Comments, module names and
// descriptions are not part of it: renaming a module changes nothing on a node.
func (m *Merged) Hash() string {
	if m.hash != "" {
		return m.hash
	}
	return hashOf(m.Policy, nil)
}

// hashOf is the hex sha256 of encode(p), written into the hash rule by rule rather than
// encoded whole: with 5,000 modules the canonical form is megabytes, in buffers that double as
// they grow. encoded, when not nil, returns rule i's JSON encoding (a Merger's, kept from an
// earlier merge) or nil to have it encoded.
func hashOf(p auditv1.Policy, encoded func(i int) []byte) string {
	doc := toDocument(p)
	h := sha256.New()
	h.Write(encodeTop(p))
	if doc.Rules == nil {
		h.Write([]byte("null"))
	} else {
		h.Write([]byte("["))
		for i := range doc.Rules {
			if i > 0 {
				h.Write([]byte(","))
			}
			var b []byte
			if encoded != nil {
				b = encoded(i)
			}
			if b == nil {
				b = encodeRule(doc.Rules[i])
			}
			h.Write(b)
		}
		h.Write([]byte("]"))
	}
	h.Write([]byte("}"))
	return hex.EncodeToString(h.Sum(nil))
}

// encodeRule is a rule's JSON encoding, as encode writes it in a policy.
// encodeTop is encode(p) up to its rules: the policy-level fields and `,"rules":`, without the
// closing brace.
func encodeTop(p auditv1.Policy) []byte {
	doc := toDocument(p)
	top, err := json.Marshal(struct {
		APIVersion        string          `json:"apiVersion"`
		Kind              string          `json:"kind"`
		OmitStages        []auditv1.Stage `json:"omitStages,omitempty"`
		OmitManagedFields bool            `json:"omitManagedFields,omitempty"`
	}{doc.APIVersion, doc.Kind, doc.OmitStages, doc.OmitManagedFields})
	if err != nil {
		panic(fmt.Sprintf("encoding an audit policy cannot fail: %v", err))
	}
	return append(top[:len(top)-1], `,"rules":`...) // without the closing brace
}

func encodeRule(r auditv1.PolicyRule) []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("encoding an audit policy rule cannot fail: %v", err))
	}
	return b
}

// ShortHash is the first 16 hex digits of Hash, short enough for a label value.
func ShortHash(hash string) string {
	if len(hash) > 16 {
		return hash[:16]
	}
	return hash
}
