package presets

import "testing"

// Optional modules are applied next to the baseline; their cases run on the combination.
func TestOptionalLeaseRenewalModuleWithBaseline(t *testing.T) {
	merged, _, err := loadSet(baselineDir, optionalDir)
	if err != nil {
		t.Fatal(err)
	}
	e, err := evaluate(merged)
	if err != nil {
		t.Fatal(err)
	}
	operator := sa("cert-manager", "cert-manager")
	for _, c := range []baselineCase{
		{"operator renewing its leader-election lease", res(operator, "update", "coordination.k8s.io", "leases", "cert-manager"), None, "noise-serviceaccount-lease-renewals"},
		{"operator creating its lease is kept", res(operator, "create", "coordination.k8s.io", "leases", "cert-manager"), Metadata, defaultSource},
		{"operator deleting a lease is kept", res(operator, "delete", "coordination.k8s.io", "leases", "cert-manager"), Metadata, defaultSource},
		{"a person editing a lease is kept", res(alice, "update", "coordination.k8s.io", "leases", "cert-manager"), Metadata, defaultSource},
		{"an operator's other writes are kept", res(operator, "update", "cert-manager.io", "certificates", "prod"), Metadata, defaultSource},
		{"admin's lease update is kept by system-masters first", res(admin, "update", "coordination.k8s.io", "leases", "kube-system"), RequestResponse, "system-masters"},
		{"controller manager renewal is still its own module's", res(kcm, "update", "coordination.k8s.io", "leases", "kube-system"), None, "noise-kube-controller-manager"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := e.decide(c.req); got.level != c.level || got.source != c.by {
				t.Errorf("%s: got %s by %s, want %s by %s", c.req, got.level, got.source, c.level, c.by)
			}
		})
	}
}
