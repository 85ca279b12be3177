package controllers

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/inforce"
	"github.com/kaudit/kaudit/internal/policy"
)

// verdictCache remembers the loader's verdict on each module generation, of both kinds. A
// generation's spec never changes, and running kube-apiserver's loader on every module on every
// reconcile would cost about half a millisecond a module (half a second with 1000 modules).
type verdictCache struct {
	mu       sync.Mutex
	verdicts map[types.UID]cachedVerdict
	// converted holds each namespaced module generation converted for the merge: converting
	// 2,500 of them on every reconcile allocated megabytes for the same result.
	converted map[types.UID]liveModule
}

type cachedVerdict struct {
	generation int64
	err        error
}

func newVerdictCache() *verdictCache {
	return &verdictCache{verdicts: map[types.UID]cachedVerdict{}, converted: map[types.UID]liveModule{}}
}

// liveModule is a module object of either kind, as the manager reads it.
type liveModule struct {
	UID        types.UID
	Generation int64
	Module     policy.Module
}

func clusterModule(m *v1alpha1.AuditPolicyModule) liveModule {
	return liveModule{UID: m.UID, Generation: m.Generation, Module: policy.Module{Name: m.Name, Spec: m.Spec}}
}

func namespacedModule(m *v1alpha1.NamespacedAuditPolicyModule) liveModule {
	return liveModule{UID: m.UID, Generation: m.Generation, Module: policy.NamespacedModule(m.Namespace, m.Name, m.Spec)}
}

// namespaced is namespacedModule(m), converted once per generation.
func (c *verdictCache) namespaced(m *v1alpha1.NamespacedAuditPolicyModule) liveModule {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.converted[m.UID]; ok && l.Generation == m.Generation && m.Generation != 0 {
		return l
	}
	l := namespacedModule(m)
	c.converted[m.UID] = l
	return l
}

// validate returns policy.ValidateModule's verdict on the module's current generation.
func (c *verdictCache) validate(m liveModule) error {
	c.mu.Lock()
	v, ok := c.verdicts[m.UID]
	c.mu.Unlock()
	if ok && v.generation == m.Generation && m.Generation != 0 {
		return v.err
	}
	err := policy.ValidateModule(m.Module)
	c.mu.Lock()
	c.verdicts[m.UID] = cachedVerdict{generation: m.Generation, err: err}
	c.mu.Unlock()
	return err
}

// judge validates every module, and forgets the verdicts on modules that are gone.
func (c *verdictCache) judge(modules []liveModule) []inforce.Module {
	out := make([]inforce.Module, len(modules))
	present := make(map[types.UID]bool, len(modules))
	for i, m := range modules {
		present[m.UID] = true
		out[i] = inforce.Module{Module: m.Module, Generation: m.Generation, Invalid: c.validate(m)}
	}
	c.mu.Lock()
	for uid := range c.verdicts {
		if !present[uid] {
			delete(c.verdicts, uid)
		}
	}
	for uid := range c.converted {
		if !present[uid] {
			delete(c.converted, uid)
		}
	}
	c.mu.Unlock()
	return out
}
