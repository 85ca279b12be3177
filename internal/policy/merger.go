package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sync"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// Merger merges as Merge does, with the same results and errors, but remembers each module's
// rules as the merged policy holds them, their encoding and rendering, and that the loader
// accepts them, by the module's content, so that merging again after a few modules changed
// converts, encodes, renders and loads only those. For 5,000 modules that is tens of
// milliseconds instead of seconds, most of them rendering and loading.
//
// The loader's verdict on a policy is its verdict on the policy-level fields and on each rule
// (kube-apiserver validates rules one by one), so loading each module's rules once, in the
// canonical JSON that Merge's check loads, under the same policy-level fields stands for
// loading the whole. (Loading the rendered YAML instead was most of a cold start's time.) Any
// refusal is reported by checking the whole as Merge does, so errors are Merge's.
//
// Merged policies of a Merger share the remembered rules: like every Merged, they must not be
// changed. A Merger keeps what the merges since the last Forget used. It is safe for concurrent
// use.
type Merger struct {
	mu      sync.Mutex
	modules map[[sha256.Size]byte]*mergerModule
	round   uint64
}

// mergerModule is what a Merger remembers of one module's content.
type mergerModule struct {
	// rules are Module.Rules(); encoded[i] is rules[i] as encode writes it.
	rules   []auditv1.PolicyRule
	encoded [][]byte
	// rendered is the rules with their comments, as Render writes them.
	rendered []byte
	// loadedUnder is the digest of the encoded top (encodeTop) that the loader accepted the
	// encoded rules under; empty until it did.
	loadedUnder string
	used        uint64
}

// NewMerger returns a Merger that remembers nothing yet.
func NewMerger() *Merger { return &Merger{modules: map[[sha256.Size]byte]*mergerModule{}} }

// Merge is Merge, reusing what earlier merges did for the same module contents.
func (mg *Merger) Merge(modules []Module, settings Settings) (*Merged, error) {
	var used []*mergerModule
	m, spans, err := compose(modules, settings, func(mod Module) []auditv1.PolicyRule {
		e := mg.module(mod)
		used = append(used, e)
		return e.rules
	})
	if err != nil {
		return nil, err
	}
	top := encodeTop(m.Policy)
	topKey := digestOf(top)
	parts := make([][]byte, 0, len(spans)+2)
	parts = append(parts, m.renderTop())
	encoded := make([][]byte, 0, len(m.Policy.Rules))
	for i := range spans {
		e := used[i]
		if !mg.loaded(e, topKey) {
			if _, err := Load(encodeWith(top, e.encoded)); err != nil {
				// Merge's check of the whole names the module that fails
				if err := m.check(); err != nil {
					return nil, err
				}
				m.hash = hashOf(m.Policy, nil)
				return m, nil
			}
			mg.setLoaded(e, topKey)
		}
		parts = append(parts, e.rendered)
		encoded = append(encoded, e.encoded...)
	}
	// The catch-all: ValidateSettings loaded it under the same top.
	var catchAll bytes.Buffer
	m.renderRules(&catchAll, len(m.Policy.Rules)-1, len(m.Policy.Rules))
	m.parts = append(parts, catchAll.Bytes())
	m.hash = hashOf(m.Policy, func(i int) []byte {
		if i < len(encoded) {
			return encoded[i]
		}
		return nil
	})
	m.sorted = nil
	return m, nil
}

// module returns what the Merger knows of mod's content, made now if nothing.
func (mg *Merger) module(mod Module) *mergerModule {
	key := ContentKey(mod)
	mg.mu.Lock()
	e, ok := mg.modules[key]
	if ok {
		e.used = mg.round
	}
	mg.mu.Unlock()
	if ok {
		return e
	}
	e = &mergerModule{rules: mod.Rules()}
	for _, r := range e.rules {
		e.encoded = append(e.encoded, encodeRule(r))
	}
	// Rendered as the module's rules alone, the comments name the module and the index of
	// each rule in it, as in the whole policy.
	alone := &Merged{Policy: auditv1.Policy{Rules: e.rules}}
	for j := range e.rules {
		alone.Sources = append(alone.Sources, RuleSource{Namespace: mod.Namespace, Module: mod.Name, Rule: j})
	}
	var b bytes.Buffer
	alone.renderRules(&b, 0, len(e.rules))
	e.rendered = b.Bytes()
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if prev, ok := mg.modules[key]; ok {
		e = prev // made meanwhile by another merge
	}
	e.used = mg.round
	mg.modules[key] = e
	return e
}

// encodeWith is the canonical JSON of a policy whose encodeTop is top and whose rules have the
// given encodings.
func encodeWith(top []byte, rules [][]byte) []byte {
	b := append(append([]byte{}, top...), '[')
	for i, r := range rules {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	return append(b, "]}"...)
}

func (mg *Merger) loaded(e *mergerModule, topKey string) bool {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	return e.loadedUnder == topKey
}

func (mg *Merger) setLoaded(e *mergerModule, topKey string) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	e.loadedUnder = topKey
}

// Forget drops what no merge used since the previous Forget.
func (mg *Merger) Forget() {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	for k, e := range mg.modules {
		if e.used != mg.round {
			delete(mg.modules, k)
		}
	}
	mg.round++
}

// ContentKey identifies everything of a module that Module.Rules and the rendered comments
// depend on: its namespace and name, rules, omitStages and omitManagedFields. It is the
// SHA-256 of a length-prefixed encoding written field by field: a merge keys every module,
// and encoding/json's reflection made that a third of a merge's time at 5,000 modules. Like
// the JSON encoding with omitempty it replaces, it does not tell a nil list from an empty one
// (TestContentKey; TestContentKeyCoversEveryField fails when the API adds a field).
func ContentKey(mod Module) [sha256.Size]byte {
	k := keyWriters.Get().(*keyWriter)
	defer keyWriters.Put(k)
	k.b = k.b[:0]
	k.str(mod.Namespace)
	k.str(mod.Name)
	k.n(len(mod.Spec.OmitStages))
	for _, s := range mod.Spec.OmitStages {
		k.str(string(s))
	}
	k.flag(mod.Spec.OmitManagedFields)
	k.n(len(mod.Spec.Rules))
	for i := range mod.Spec.Rules {
		r := &mod.Spec.Rules[i]
		k.str(string(r.Level))
		k.strs(r.Users)
		k.strs(r.UserGroups)
		k.strs(r.Verbs)
		k.n(len(r.Resources))
		for _, g := range r.Resources {
			k.str(g.Group)
			k.strs(g.Resources)
			k.strs(g.ResourceNames)
		}
		k.strs(r.Namespaces)
		k.strs(r.NonResourceURLs)
		k.n(len(r.OmitStages))
		for _, s := range r.OmitStages {
			k.str(string(s))
		}
		k.flag(r.OmitManagedFields)
	}
	return sha256.Sum256(k.b)
}

// keyWriters hold the buffers of ContentKey: a decision keys every module three times, and a
// buffer each was over 5% of all the manager allocated at 5,000 modules.
var keyWriters = sync.Pool{New: func() any { return &keyWriter{b: make([]byte, 0, 1024)} }}

// keyWriter encodes values, each prefixed by its length, so that no two sequences of values
// write the same bytes. They are hashed at once: a hash written to piece by piece spends most
// of its time per call.
type keyWriter struct{ b []byte }

func (k *keyWriter) n(n int) { k.b = binary.AppendUvarint(k.b, uint64(n)) }

func (k *keyWriter) str(s string) {
	k.n(len(s))
	k.b = append(k.b, s...)
}

func (k *keyWriter) strs(ss []string) {
	k.n(len(ss))
	for _, s := range ss {
		k.str(s)
	}
}

// flag writes an optional boolean: unset, false or true.
func (k *keyWriter) flag(b *bool) {
	switch {
	case b == nil:
		k.n(0)
	case !*b:
		k.n(1)
	default:
		k.n(2)
	}
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
