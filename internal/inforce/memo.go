package inforce

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/guardrail"
	"github.com/kaudit/kaudit/internal/policy"
)

// Memo remembers, between decisions, guardrail checks by policy content, the checks of
// namespaced modules by spec and cluster policy, the cluster policy prepared for those checks,
// and the modules' rendered rules (policy.Merger), so that deciding again over unchanged inputs
// searches nothing, and after one change renders, loads and checks little more than the
// change. A decision is the same with or without it. What one decision did not use is forgotten
// at its end. It is safe for concurrent use.
type Memo struct {
	mu    sync.Mutex
	round uint64
	// checks are guardrail.Check results by policy hash and guardrails.
	checks map[string]memoEntry[[]guardrail.Violation]
	// teams are weakening checks by namespaced module content (policy.ContentKey) and cluster
	// policy hash.
	teams map[string]memoEntry[*problem]
	// clusters are the cluster's policies prepared for the weakening checks, by hash: compiled
	// once for every namespaced module.
	clusters map[string]memoEntry[*guardrail.Prepared]
	merger   *policy.Merger
}

type memoEntry[T any] struct {
	value T
	used  uint64
}

// NewMemo returns an empty memo.
func NewMemo() *Memo {
	return &Memo{checks: map[string]memoEntry[[]guardrail.Violation]{}, teams: map[string]memoEntry[*problem]{},
		clusters: map[string]memoEntry[*guardrail.Prepared]{}, merger: policy.NewMerger()}
}

func (m *Memo) begin() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.round++
}

func (m *Memo) end() {
	m.mu.Lock()
	defer m.mu.Unlock()
	forgetUnused(m.checks, m.round)
	forgetUnused(m.teams, m.round)
	forgetUnused(m.clusters, m.round)
	m.merger.Forget()
}

func forgetUnused[T any](table map[string]memoEntry[T], round uint64) {
	for k, e := range table {
		if e.used != round {
			delete(table, k)
		}
	}
}

// merge is policy.Merge, reusing what the merges of this decision and the last one rendered
// and loaded.
func (m *Memo) merge(modules []policy.Module, settings policy.Settings) (*policy.Merged, error) {
	return m.merger.Merge(modules, settings)
}

func lookup[T any](m *Memo, table map[string]memoEntry[T], key string) (T, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := table[key]
	if ok {
		e.used = m.round
		table[key] = e
	}
	return e.value, ok
}

func store[T any](m *Memo, table map[string]memoEntry[T], key string, v T) {
	m.mu.Lock()
	defer m.mu.Unlock()
	table[key] = memoEntry[T]{value: v, used: m.round}
}

// check is guardrail.Check of a merged policy. Violations name rules by index, which a policy
// of the same hash has in the same place, whatever its modules are called.
func (m *Memo) check(merged *policy.Merged, guardrails []guardrail.Guardrail) ([]guardrail.Violation, error) {
	if len(guardrails) == 0 {
		return nil, nil
	}
	key := merged.Hash() + "/" + digest(guardrails)
	if v, ok := lookup(m, m.checks, key); ok {
		return v, nil
	}
	// A merged policy is one kube-apiserver's loader accepts: it is loaded only if a violation
	// needs confirming.
	v, err := guardrail.Prepare(merged.Policy).Check(guardrails)
	if err != nil {
		return nil, fmt.Errorf("checking the guardrails: %w", err)
	}
	store(m, m.checks, key, v)
	return v, nil
}

// weakening finds a request of the namespaced module's namespace that the module, placed
// before the cluster's policy, logs less than the cluster's policy alone.
func (m *Memo) weakening(mod policy.Module, cluster *policy.Merged, clusterHash string) (*problem, error) {
	// The module's content key stands for its ID and rules, which are encoded only when needed.
	content := policy.ContentKey(mod)
	key := hex.EncodeToString(content[:]) + "/" + clusterHash
	if p, ok := lookup(m, m.teams, key); ok {
		return p, nil
	}
	rules := mod.Rules()
	prepared, ok := lookup(m, m.clusters, clusterHash)
	if !ok {
		prepared = guardrail.Prepare(cluster.Policy)
		store(m, m.clusters, clusterHash, prepared)
	}
	w, err := prepared.FindWeakening(rules, guardrail.Scope{Namespaces: []string{mod.Namespace}})
	if err != nil {
		return nil, fmt.Errorf("namespaced module %s against the cluster's modules: %w", mod.ID(), err)
	}
	var p *problem
	if w != nil {
		details := w.Combined.Level == w.Base.Level // less by stages or managedFields
		p = &problem{v1alpha1.ReasonLowersLogging, fmt.Sprintf("Rule %d would log %s at %s; the cluster's modules log it at %s (%s). A namespaced module may only make logging stricter.",
			w.Combined.Rule, describeRequest(w.Request), describeDecision(w.Combined, details), describeDecision(w.Base, details), describeRule(cluster, w.Base.Rule))}
	}
	store(m, m.teams, key, p)
	return p, nil
}

func digest(v any) string {
	sum := sha256.Sum256(mustJSON(v))
	return hex.EncodeToString(sum[:])
}
