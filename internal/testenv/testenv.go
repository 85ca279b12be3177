// Package testenv starts a real kube-apiserver and etcd (envtest) with kaudit's CRDs and
// namespace installed, and the manager on demand. The envtest suites, the benchmarks and the
// demo share it, so they all install exactly the shipped CRDs the same way.
package testenv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/cmd"
	"github.com/kaudit/kaudit/config/crd"
	"github.com/kaudit/kaudit/controllers"
)

// Namespace is kaudit's own namespace, created by Start.
const Namespace = "kaudit-system"

// Env is a running control plane.
type Env struct {
	Config *rest.Config
	Client client.WithWatch
	env    *envtest.Environment
}

// Start runs kube-apiserver and etcd from $KUBEBUILDER_ASSETS, installs the embedded CRDs and
// creates the kaudit namespace.
func Start(ctx context.Context) (*Env, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run `make test`, or export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)")
	}
	crds, err := CRDs()
	if err != nil {
		return nil, err
	}
	e := &Env{env: &envtest.Environment{CRDs: crds}}
	if e.Config, err = e.env.Start(); err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	if e.Client, err = client.NewWithWatch(e.Config, client.Options{Scheme: cmd.Scheme()}); err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	if err := e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}); err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	return e, nil
}

// StartManager runs the kaudit manager, with the default caps, until ctx ends; its result
// arrives on the channel.
func (e *Env) StartManager(ctx context.Context, historyLimit int) (<-chan error, error) {
	mgr, err := cmd.NewManager(e.Config, cmd.ManagerOptions{
		Namespace: Namespace, HistoryLimit: historyLimit,
		MaxPolicyRules: controllers.DefaultMaxPolicyRules, MaxPolicyBytes: controllers.DefaultMaxPolicyBytes,
		MetricsAddress: "0", HealthProbeAddress: "0",
	})
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return done, nil
}

// AddUser returns a kubeconfig for a user of the control plane.
func (e *Env) AddUser(name string, groups ...string) ([]byte, error) {
	u, err := e.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, err
	}
	return u.KubeConfig()
}

// Stop stops kube-apiserver and etcd.
func (e *Env) Stop() error { return e.env.Stop() }

// CRDs returns the shipped CRDs, as Start installs them.
func CRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	files, err := fs.Glob(crd.Bases, "bases/*.yaml")
	if err != nil {
		return nil, err
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		data, err := crd.Bases.ReadFile(f)
		if err != nil {
			return nil, err
		}
		def := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(data, def); err != nil {
			return nil, fmt.Errorf("embedded CRD %s: %w", f, err)
		}
		out = append(out, def)
	}
	if len(out) == 0 {
		return nil, errors.New("no CRDs embedded in config/crd")
	}
	return out, nil
}

// minHealthTimeoutRule is the shipped schema's rule on spec.rollout.healthTimeout that
// RelaxHealthTimeoutMinimum replaces.
const minHealthTimeoutRule = "duration(self) >= duration('30s')"

// RelaxHealthTimeoutMinimum lowers, in crds, the AuditPolicy schema's minimum of
// spec.rollout.healthTimeout from 30s to 1s. It is for tests only: suites whose simulated
// kubelets restart in a second (internal/agent/envtest) install the CRDs with
//
//	crds, err := testenv.CRDs()
//	err = testenv.RelaxHealthTimeoutMinimum(crds)
//	env := &envtest.Environment{CRDs: crds}
//
// A real kube-apiserver takes 30-60 s to restart, so the shipped minimum stands everywhere
// else. It fails when the rule is not found, so that it cannot silently stop relaxing.
func RelaxHealthTimeoutMinimum(crds []*apiextensionsv1.CustomResourceDefinition) error {
	found := false
	for _, def := range crds {
		if def.Spec.Names.Kind != "AuditPolicy" {
			continue
		}
		for _, v := range def.Spec.Versions {
			// Properties holds values, but XValidations is a slice shared with the schema.
			timeout := v.Schema.OpenAPIV3Schema.Properties["spec"].Properties["rollout"].Properties["healthTimeout"]
			for i, rule := range timeout.XValidations {
				if rule.Rule == minHealthTimeoutRule {
					timeout.XValidations[i].Rule = "duration(self) >= duration('1s')"
					found = true
				}
			}
		}
	}
	if !found {
		return fmt.Errorf("the AuditPolicy CRD has no rule %q on spec.rollout.healthTimeout", minHealthTimeoutRule)
	}
	return nil
}

// metricsClient skips the verification of the metrics endpoints' self-signed certificates: the
// tests check authentication and authorization, not the server's identity.
var metricsClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

// GetMetrics gets url with the bearer token when not "": the status code and the body.
func GetMetrics(ctx context.Context, url, token string) (code int, body string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
