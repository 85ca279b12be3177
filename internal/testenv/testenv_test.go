package testenv_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/cmd"
	"github.com/kaudit/kaudit/internal/testenv"
)

// The agent's envtest suite simulates kubelets that restart kube-apiserver in a second, below
// the shipped 30s minimum of healthTimeout; RelaxHealthTimeoutMinimum lets it install the CRDs
// with a 1s minimum, and nothing more.
func TestRelaxHealthTimeoutMinimum(t *testing.T) {
	crds, err := testenv.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.RelaxHealthTimeoutMinimum(crds); err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{CRDs: crds}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver and etcd (is KUBEBUILDER_ASSETS set?): %v", err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	}()
	c, err := client.New(cfg, client.Options{Scheme: cmd.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ap := &v1alpha1.AuditPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SingletonName},
		Spec: v1alpha1.AuditPolicySpec{Rollout: v1alpha1.RolloutSpec{HealthTimeout: &metav1.Duration{Duration: 1e9}}}}
	if err := c.Create(ctx, ap); err != nil {
		t.Fatalf("a 1s health timeout with the relaxed CRD: %v", err)
	}
	for _, timeout := range []string{"0s", "2h"} {
		patch := fmt.Sprintf(`{"spec":{"rollout":{"healthTimeout":%q}}}`, timeout)
		err := c.Patch(ctx, &v1alpha1.AuditPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SingletonName}}, client.RawPatch(types.MergePatchType, []byte(patch)))
		if !apierrors.IsInvalid(err) {
			t.Errorf("healthTimeout %s with the relaxed CRD: %v, want Invalid", timeout, err)
		}
	}
}

func TestRelaxHealthTimeoutMinimumFailsWithoutTheRule(t *testing.T) {
	if err := testenv.RelaxHealthTimeoutMinimum(nil); err == nil || !strings.Contains(err.Error(), "healthTimeout") {
		t.Errorf("error = %v", err)
	}
}
