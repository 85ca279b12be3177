package controllers

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
)

// verdictCache remembers the loader's verdict on each module generation. A generation's spec
// never changes, and running kube-apiserver's loader on every module on every reconcile would
// cost about half a millisecond a module (half a second with 1000 modules).
type verdictCache struct {
	mu       sync.Mutex
	verdicts map[types.UID]cachedVerdict
}

type cachedVerdict struct {
	generation int64
	err        error
}

func newVerdictCache() *verdictCache {
	return &verdictCache{verdicts: map[types.UID]cachedVerdict{}}
}

// validate returns policy.ValidateModule's verdict on the module's current generation.
func (c *verdictCache) validate(m *v1alpha1.AuditPolicyModule) error {
	c.mu.Lock()
	v, ok := c.verdicts[m.UID]
	c.mu.Unlock()
	if ok && v.generation == m.Generation && m.Generation != 0 {
		return v.err
	}
	err := policy.ValidateModule(policy.Module{Name: m.Name, Spec: m.Spec})
	c.mu.Lock()
	c.verdicts[m.UID] = cachedVerdict{generation: m.Generation, err: err}
	c.mu.Unlock()
	return err
}

// judge validates every module.
func (c *verdictCache) judge(modules []v1alpha1.AuditPolicyModule) []moduleVerdict {
	out := make([]moduleVerdict, len(modules))
	present := make(map[types.UID]bool, len(modules))
	for i := range modules {
		present[modules[i].UID] = true
		out[i] = moduleVerdict{Module: modules[i], Err: c.validate(&modules[i])}
	}
	c.mu.Lock()
	for uid := range c.verdicts {
		if !present[uid] {
			delete(c.verdicts, uid)
		}
	}
	c.mu.Unlock()
	return out
}
