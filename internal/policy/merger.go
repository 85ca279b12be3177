package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
)

// Merger merges as Merge does, with the same results and errors, but remembers each module's
// rendered rules and that the loader accepts them, by content, so that merging again after a
// few modules changed renders and loads only those. Rendering and loading are most of a merge:
// for 5,000 modules, seconds where the rest takes tens of milliseconds.
//
// The loader's verdict on a policy is its verdict on each rule and on the policy-level fields
// (kube-apiserver validates rules one by one, and the rendered rules are YAML list items that
// parse alone), so loading each module's rules under the same top once stands for loading the
// whole. Any refusal is reported by merging again as Merge does, so errors are Merge's.
//
// A Merger keeps what the merges since the last Forget used. It is safe for concurrent use.
type Merger struct {
	mu    sync.Mutex
	parts map[string]*mergerPart
	round uint64
}

type mergerPart struct {
	rendered []byte
	used     uint64
}

// NewMerger returns a Merger that remembers nothing yet.
func NewMerger() *Merger { return &Merger{parts: map[string]*mergerPart{}} }

// Merge is Merge, remembering and reusing the modules' rendered rules.
func (mg *Merger) Merge(modules []Module, settings Settings) (*Merged, error) {
	m, spans, err := compose(modules, settings)
	if err != nil {
		return nil, err
	}
	top := m.renderTop()
	topKey := digestOf(top)
	parts := make([][]byte, 0, len(spans)+2)
	parts = append(parts, top)
	for _, s := range spans {
		key := topKey + "/" + s.module.ID() + "/" + digestOf(mustEncode(m.Policy.Rules[s.from:s.to]))
		rendered, ok := mg.lookup(key)
		if !ok {
			var b bytes.Buffer
			m.renderRules(&b, s.from, s.to)
			rendered = b.Bytes()
			if _, err := Load(append(append([]byte{}, top...), rendered...)); err != nil {
				// Merge's check of the whole names the module that fails
				if err := m.check(); err != nil {
					return nil, err
				}
				return m, nil
			}
			mg.store(key, rendered)
		}
		parts = append(parts, rendered)
	}
	// The catch-all: ValidateSettings loaded it with the same top.
	var catchAll bytes.Buffer
	m.renderRules(&catchAll, len(m.Policy.Rules)-1, len(m.Policy.Rules))
	m.parts = append(parts, catchAll.Bytes())
	m.sorted = nil
	return m, nil
}

// Forget drops what no merge used since the previous Forget.
func (mg *Merger) Forget() {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	for k, p := range mg.parts {
		if p.used != mg.round {
			delete(mg.parts, k)
		}
	}
	mg.round++
}

func (mg *Merger) lookup(key string) ([]byte, bool) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	p, ok := mg.parts[key]
	if !ok {
		return nil, false
	}
	p.used = mg.round
	return p.rendered, true
}

func (mg *Merger) store(key string, rendered []byte) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	mg.parts[key] = &mergerPart{rendered: rendered, used: mg.round}
}

func mustEncode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encoding audit policy rules cannot fail: %v", err))
	}
	return b
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
