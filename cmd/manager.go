package cmd

import (
	"crypto/tls"
	"flag"
	"fmt"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/controllers"
	"github.com/kaudit/kaudit/internal/metricsauth"
	"github.com/kaudit/kaudit/internal/revision"
)

func init() { register(newManagerCommand) }

// ManagerOptions are the manager's command-line settings.
type ManagerOptions struct {
	Namespace      string
	HistoryLimit   int
	MaxPolicyRules int
	MaxPolicyBytes int
	MetricsAddress string
	// MetricsSecure serves the metrics over HTTPS to callers allowed to get /metrics; when false
	// they are plain HTTP, open to anyone who reaches the port.
	MetricsSecure      bool
	HealthProbeAddress string
	// PprofAddress serves net/http/pprof when set; "" or "0" disables it.
	PprofAddress string
}

func newManagerCommand() *cobra.Command {
	opts := ManagerOptions{}
	zapOpts := zap.Options{}
	c := &cobra.Command{
		Use:   "manager",
		Short: "Run the controller that merges AuditPolicyModules into policy revisions",
		Long: `The manager validates every AuditPolicyModule with kube-apiserver's own policy loader,
merges the accepted ones into one audit.k8s.io/v1 Policy and stores each new policy as an
immutable, numbered ConfigMap revision. It reports on every module and on the AuditPolicy
singleton "cluster", which it creates when missing.`,
		Example: `  # Run against the cluster of the current kubeconfig context
  kaudit manager

  # Keep 20 revisions
  kaudit manager --revision-history-limit=20`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
			mgr, err := NewManager(ctrl.GetConfigOrDie(), opts)
			if err != nil {
				return err
			}
			return mgr.Start(ctrl.SetupSignalHandler())
		},
	}
	f := c.Flags()
	f.StringVar(&opts.Namespace, "namespace", "kaudit-system", "namespace of the revision ConfigMaps")
	f.IntVar(&opts.HistoryLimit, "revision-history-limit", 10, "revisions to keep; the desired, pinned and node-applied ones are never deleted, even beyond the limit")
	f.StringVar(&opts.MetricsAddress, "metrics-bind-address", ":8443", "address of the metrics endpoint; 0 disables it")
	f.BoolVar(&opts.MetricsSecure, "metrics-secure", true, "serve the metrics over HTTPS, only to callers allowed to get the non-resource URL /metrics (authenticated with a TokenReview, authorized with a SubjectAccessReview); false serves plain HTTP to anyone")
	f.StringVar(&opts.HealthProbeAddress, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz probes")
	f.StringVar(&opts.PprofAddress, "pprof-bind-address", "0", "address of the net/http/pprof endpoints (CPU and heap profiles, e.g. 127.0.0.1:6060); 0 disables them")
	f.IntVar(&opts.MaxPolicyRules, "max-policy-rules", controllers.DefaultMaxPolicyRules, "most rules of the merged policy; over it no revision is made (kube-apiserver checks the rules one by one on every request)")
	f.IntVar(&opts.MaxPolicyBytes, "max-policy-bytes", controllers.DefaultMaxPolicyBytes, fmt.Sprintf("most bytes of the rendered policy, at most %d; over it no revision is made", revision.MaxPolicyBytes))
	zapFlags := flag.NewFlagSet("zap", flag.ContinueOnError)
	zapOpts.BindFlags(zapFlags)
	f.AddGoFlagSet(zapFlags)
	return c
}

// Scheme holds every type the manager reads or writes.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// NewManager builds a manager running the kaudit controllers. Its cache holds only revision
// ConfigMaps of the kaudit namespace, never the cluster's other ConfigMaps, and no object's
// managedFields (controllers.StripUnusedFields).
func NewManager(cfg *rest.Config, opts ManagerOptions) (ctrl.Manager, error) {
	if opts.HistoryLimit < 1 {
		return nil, fmt.Errorf("--revision-history-limit must be at least 1, got %d", opts.HistoryLimit)
	}
	if opts.MaxPolicyRules < 1 {
		return nil, fmt.Errorf("--max-policy-rules must be at least 1, got %d", opts.MaxPolicyRules)
	}
	if opts.MaxPolicyBytes < 1 || opts.MaxPolicyBytes > revision.MaxPolicyBytes {
		return nil, fmt.Errorf("--max-policy-bytes must be between 1 and %d (what a revision can hold), got %d", revision.MaxPolicyBytes, opts.MaxPolicyBytes)
	}
	// No leader election: see config/manager/manager.yaml.
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 Scheme(),
		Metrics:                metricsOptions(opts),
		HealthProbeBindAddress: opts.HealthProbeAddress,
		PprofBindAddress:       opts.PprofAddress,
		Cache: cache.Options{DefaultTransform: controllers.StripUnusedFields, ByObject: map[client.Object]cache.ByObject{
			&corev1.ConfigMap{}: {
				Namespaces: map[string]cache.Config{opts.Namespace: {}},
				Label:      revision.Selector(),
			},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	if err := controllers.Setup(mgr, controllers.Options{Namespace: opts.Namespace, HistoryLimit: opts.HistoryLimit,
		MaxPolicyRules: opts.MaxPolicyRules, MaxPolicyBytes: opts.MaxPolicyBytes}); err != nil {
		return nil, fmt.Errorf("setting up controllers: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

// metricsOptions serves the metrics as kubebuilder's scaffold does: over HTTPS with a
// self-signed certificate, to callers the apiserver authenticates and authorizes, and over
// HTTP/1.1 only (HTTP/2's rapid reset and stream cancellation attacks, CVE-2023-44487 and
// CVE-2023-39325).
func metricsOptions(opts ManagerOptions) metricsserver.Options {
	if !opts.MetricsSecure {
		return metricsserver.Options{BindAddress: opts.MetricsAddress}
	}
	return metricsserver.Options{
		BindAddress:    opts.MetricsAddress,
		SecureServing:  true,
		FilterProvider: metricsauth.Filter,
		TLSOpts:        []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	}
}
