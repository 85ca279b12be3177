package cmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/agent"
	"github.com/kaudit/kaudit/internal/staticpod"
)

func init() { register(newAgentCommand) }

type agentOptions struct {
	nodeName, namespace, kubeconfig string
	paths                           agent.Paths
	readyz                          agent.ReadyzOptions
	mirrorPodNamespace, mirrorPod   string
	pollInterval, resync, retry     time.Duration
	verbose                         bool
	// metricsBindAddress is where the metrics are served over HTTPS; "0" serves none.
	metricsBindAddress, metricsCertDir string
	// localAPIServer is "auto", "none" or the URL of this node's apiserver.
	localAPIServer string
}

func newAgentCommand() *cobra.Command {
	o := agentOptions{
		paths: agent.DefaultPaths("/"),
		readyz: agent.ReadyzOptions{
			URL:        "https://127.0.0.1:6443/readyz",
			CAFile:     "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
			ServerName: "kubernetes",
			Timeout:    5 * time.Second,
		},
		namespace:          agent.DefaultNamespace,
		localAPIServer:     localAPIServerAuto,
		mirrorPodNamespace: "kube-system",
		pollInterval:       500 * time.Millisecond,
		resync:             time.Minute,
		retry:              10 * time.Second,
		metricsBindAddress: fmt.Sprintf(":%d", agent.DefaultMetricsPort),
	}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Roll the desired audit policy revision out to this control-plane node",
		Long: `agent runs on every control-plane node (a DaemonSet, see config/agent). It watches the
AuditPolicy "cluster" for the desired revision, writes that revision's policy to the file the
kube-apiserver static pod reads, bumps the audit.kaudit.io/policy-hash annotation in the static pod
manifest so that kubelet restarts kube-apiserver, and waits until the mirror pod shows the new
annotation, its container started after the change and the local /readyz answers ok. On timeout it
restores the previous policy and manifest and halts the rollout. Only one node restarts at a time
(Lease kaudit-system/kaudit-rollout).

Paths are host paths seen under --root; the DaemonSet mounts /etc/kubernetes/audit,
/etc/kubernetes/manifests and /etc/kubernetes/kaudit at the same paths, and /etc/kubernetes/tmp
read-only to see a kubeadm upgrade in progress. One agent acts on a node at a time: it holds a
lock in --state-dir for its whole life, and a second one waits for it. /readyz is reached on the
host network; kubeadm's serving certificate is verified against the service account's ca.crt for
the name "kubernetes" (--readyz-server-name), or --readyz-insecure-skip-verify skips the check. It
is readable anonymously by default; set --readyz-token-file to the service account token where
anonymous auth is off.

Every API request but the rollout Lease's goes first to the apiserver on this node
(--local-apiserver; in the cluster, kubeadm's advertise-address endpoint from the manifest, with
the same token and CA), and to the configured address (the kubernetes Service) when that one does
not answer: right after its restart the node's own apiserver answers tens of seconds before the
Service address reaches it. The Lease goes to the Service first, so that renewing it never
depends on the apiserver that is restarting.

It also follows the audit log that the manifest's --audit-log-path names (the DaemonSet mounts
/var/log/kubernetes/audit read-only) and counts its events by revision, module and rule, as
kaudit simulate would, with the checkpoint in --state-dir. The metrics are served over HTTPS at
--metrics-bind-address to callers allowed to get the non-resource URL /metrics (a TokenReview and
a SubjectAccessReview through the API); see docs/metrics.md. Without a log to follow the agent
works as before and says so.`,
		Example: `  # In the DaemonSet (NODE_NAME from the downward API):
  kaudit agent

  # Against a kind node's files copied to /tmp/node, with a local kubeconfig:
  NODE_NAME=kind-control-plane kaudit agent --root /tmp/node --kubeconfig ~/.kube/config \
    --readyz-url https://127.0.0.1:6443/readyz --readyz-insecure-skip-verify`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runAgent(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.nodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default: $NODE_NAME, set from the downward API's spec.nodeName)")
	f.StringVar(&o.namespace, "namespace", o.namespace, "namespace of the revision ConfigMaps and the rollout Lease")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster config, then $KUBECONFIG and ~/.kube/config)")
	f.StringVar(&o.localAPIServer, "local-apiserver", o.localAPIServer, `this node's apiserver, tried before the configured address: "auto" (with the in-cluster config, https:// and the manifest's `+
		staticpod.AnnotationKubeadmEndpoint+` annotation; otherwise none), "none", or a URL such as https://10.0.0.10:6443`)
	f.StringVar(&o.paths.Root, "root", o.paths.Root, "where the host's file system is seen; every path below is a host path under it")
	f.StringVar(&o.paths.Manifest, "manifest", o.paths.Manifest, "kube-apiserver static pod manifest")
	f.StringVar(&o.paths.PolicyFile, "policy-file", o.paths.PolicyFile, "policy file when spec.manageAPIServerFlags is true; otherwise the manifest's --audit-policy-file is used")
	f.StringVar(&o.paths.StateDir, "state-dir", o.paths.StateDir, "journal, state and backups (never the manifests directory)")
	f.StringVar(&o.paths.ManifestTempDir, "manifest-temp-dir", "", "directory for the manifest's temporary file, on the manifest's mount (default: --state-dir; falls back to a dotfile next to the manifest across mounts)")
	f.StringVar(&o.paths.KubeadmTempDir, "kubeadm-temp-dir", o.paths.KubeadmTempDir, "kubeadm's directory of upgrade files: no rollout starts while it holds an upgrade in progress (\"\" never looks)")
	f.StringVar(&o.readyz.URL, "readyz-url", o.readyz.URL, "the local kube-apiserver's /readyz")
	f.StringVar(&o.readyz.CAFile, "readyz-ca-file", o.readyz.CAFile, "CA bundle that signed the apiserver's serving certificate")
	f.StringVar(&o.readyz.ServerName, "readyz-server-name", o.readyz.ServerName, "name verified in the serving certificate")
	f.BoolVar(&o.readyz.InsecureSkipVerify, "readyz-insecure-skip-verify", false, "do not verify the serving certificate of /readyz")
	f.StringVar(&o.readyz.TokenFile, "readyz-token-file", "", "bearer token file for /readyz, e.g. /var/run/secrets/kubernetes.io/serviceaccount/token")
	f.StringVar(&o.mirrorPodNamespace, "mirror-pod-namespace", o.mirrorPodNamespace, "namespace of the kube-apiserver mirror pod")
	f.StringVar(&o.mirrorPod, "mirror-pod-name", "", "name of this node's kube-apiserver mirror pod (default: kube-apiserver-<node-name>)")
	f.DurationVar(&o.pollInterval, "poll-interval", o.pollInterval, "interval of health checks during a rollout")
	f.DurationVar(&o.resync, "resync", o.resync, "re-check the node at least this often")
	f.DurationVar(&o.retry, "retry", o.retry, "delay after an error or while another node rolls out")
	f.StringVar(&o.metricsBindAddress, "metrics-bind-address", o.metricsBindAddress, "address of the metrics endpoint, served over HTTPS to callers allowed to get the non-resource URL /metrics (a TokenReview and a SubjectAccessReview per caller); on the host network, so on every address of the node; \"0\" serves none")
	f.StringVar(&o.metricsCertDir, "metrics-cert-dir", "", "directory with tls.crt and tls.key for the metrics endpoint (default: a self-signed certificate made at start)")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "debug logging")
	return cmd
}

// apiTimeout bounds every API request of the agent but its watch.
const apiTimeout = 30 * time.Second

// localAPITimeout bounds a request to the node's own apiserver, and localDialTimeout its
// connection, so that the Service is tried well within apiTimeout when the node's apiserver
// hangs.
const (
	localAPITimeout  = 10 * time.Second
	localDialTimeout = 3 * time.Second
)

// agentGCPercent is the agent's GOGC unless $GOGC sets one. Its live heap is 5-8 MiB, a third of
// what the Go runtime holds at the default of 100 (the rest of its RSS is the binary's pages, see
// docs/metrics.md, "Cost"): collecting at half that growth keeps about 3 MiB less resident, for
// twice as many collections of a small heap.
const agentGCPercent = 50

func setAgentGCPercent() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(agentGCPercent)
	}
}

// localAPIServerAuto is --local-apiserver's default.
const localAPIServerAuto = "auto"

// splitClient sends watches through a client without a request timeout, and everything else
// through one with it.
type splitClient struct {
	client.WithWatch
	watcher client.WithWatch
}

func (s splitClient) Watch(ctx context.Context, list client.ObjectList, opts ...client.ListOption) (watch.Interface, error) {
	return s.watcher.Watch(ctx, list, opts...)
}

// agentConfigs derives from cfg the configuration of the agent's requests, each of which ends
// after apiTimeout, so that a call to an apiserver that accepts connections but never answers
// cannot hold up a rollout, and the configuration of its watch, which stays open.
func agentConfigs(cfg *rest.Config) (api, watcher *rest.Config) {
	api, watcher = rest.CopyConfig(cfg), rest.CopyConfig(cfg)
	api.Timeout, watcher.Timeout = apiTimeout, 0
	return api, watcher
}

func newAgentClient(cfg, watchCfg *rest.Config, scheme *runtime.Scheme) (client.WithWatch, error) {
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	w, err := client.NewWithWatch(watchCfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	return splitClient{WithWatch: c, watcher: w}, nil
}

// localConfigs are agentConfigs for the apiserver at address (a URL), with localAPITimeout and
// localDialTimeout, and the same credentials and CA. kubeadm's serving certificate covers the
// advertise address, which is therefore verified as the host of address.
func localConfigs(cfg *rest.Config, address string) (api, watcher *rest.Config) {
	api, watcher = agentConfigs(cfg)
	dial := (&net.Dialer{Timeout: localDialTimeout, KeepAlive: 30 * time.Second}).DialContext
	for _, c := range []*rest.Config{api, watcher} {
		c.Host, c.Dial = address, dial
	}
	api.Timeout = localAPITimeout
	return api, watcher
}

// checkLocalAPIServer refuses a --local-apiserver that is neither auto, none nor an https URL
// with a host: a typo would otherwise only show as every request going to the Service.
func checkLocalAPIServer(value string) error {
	if value == localAPIServerAuto || value == "none" {
		return nil
	}
	u, err := url.Parse(value)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("--local-apiserver %q: want auto, none, or an https:// URL with a host (such as https://10.0.0.2:6443)", value)
	}
	return nil
}

// localAPIServerURL resolves --local-apiserver: "" when there is none to try first.
func localAPIServerURL(o agentOptions, cfg *rest.Config, files *agent.NodeFiles) (string, error) {
	switch o.localAPIServer {
	case "none":
		return "", nil
	case localAPIServerAuto:
	default:
		return o.localAPIServer, nil
	}
	// Only in the cluster: a kubeconfig names the apiserver its user wants.
	if in, err := rest.InClusterConfig(); err != nil || in.Host != cfg.Host {
		return "", nil
	}
	manifest, err := files.ReadManifest()
	if err != nil {
		return "", err
	}
	endpoint, err := staticpod.Annotation(manifest, staticpod.AnnotationKubeadmEndpoint)
	if err != nil || endpoint == "" {
		return "", err
	}
	return "https://" + endpoint, nil
}

func runAgent(ctx context.Context, o agentOptions) error {
	if o.nodeName == "" {
		return errors.New("--node-name or $NODE_NAME is required (the DaemonSet sets NODE_NAME from spec.nodeName)")
	}
	if o.mirrorPod == "" {
		o.mirrorPod = "kube-apiserver-" + o.nodeName
	}
	if err := checkLocalAPIServer(o.localAPIServer); err != nil {
		return err
	}
	setAgentGCPercent()
	level := slog.LevelInfo
	if o.verbose {
		level = slog.Level(-4)
	}
	log := logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})).WithValues("node", o.nodeName)
	// The metrics endpoint logs through controller-runtime's logger.
	crlog.SetLogger(log)

	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("loading the client configuration: %w", err)
	}
	cfg.UserAgent = "kaudit-agent/" + o.nodeName
	files := agent.NewNodeFiles(o.paths)
	local, err := localAPIServerURL(o, cfg, files)
	if err != nil {
		log.Info("cannot read this node's apiserver address from the manifest; using the configured address only", "err", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	apiCfg, watchCfg := agentConfigs(cfg)
	service, err := newAgentClient(apiCfg, watchCfg, scheme)
	if err != nil {
		return err
	}
	// c is for everything about this node, lease for the rollout Lease (see Failover).
	c, lease := service, service
	if local != "" {
		localCfg, localWatchCfg := localConfigs(cfg, local)
		node, err := newAgentClient(localCfg, localWatchCfg, scheme)
		if err != nil {
			return err
		}
		c, lease = agent.NewLocalFirst(node, service), agent.NewFailover(service, node)
	}
	cs, err := kubernetes.NewForConfig(apiCfg)
	if err != nil {
		return err
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme, corev1.EventSource{Component: "kaudit-agent", Host: o.nodeName})

	readyz, err := agent.NewReadyz(o.readyz)
	if err != nil {
		return err
	}
	clk := clock.RealClock{}
	mirrorPod := func(ctx context.Context) (*corev1.Pod, error) {
		pod := &corev1.Pod{}
		err := c.Get(ctx, client.ObjectKey{Namespace: o.mirrorPodNamespace, Name: o.mirrorPod}, pod)
		return pod, err
	}
	health := &agent.APIServerHealth{
		MirrorPod: mirrorPod,
		Readyz:    readyz,
		Clock:     clk,
		Interval:  o.pollInterval,
	}
	auditLog := agent.NewAuditLog(agent.AuditLogOptions{Files: files, MirrorPod: mirrorPod, Clock: clk, Retry: o.resync})
	a := agent.New(agent.Options{
		NodeName:  o.nodeName,
		Namespace: o.namespace,
		Client:    c,
		Rollout:   &agent.Rollout{Files: files, Health: health, Clock: clk},
		Lease:     &agent.Lease{Client: lease, Namespace: o.namespace, Name: agent.LeaseName, Identity: o.nodeName, Clock: clk},
		Status:    &agent.StatusWriter{Client: c, NodeName: o.nodeName},
		Recorder:  recorder,
		AuditLog:  auditLog,
		Clock:     clk,
		Resync:    o.resync,
		Retry:     o.retry,
	})
	if err := agent.ServeMetrics(logr.NewContext(ctx, log), agent.MetricsOptions{BindAddress: o.metricsBindAddress, CertDir: o.metricsCertDir}, apiCfg, auditLog, a.DriftMetrics()); err != nil {
		return err
	}
	log.Info("agent starting", "root", o.paths.Root, "manifest", o.paths.Manifest, "stateDir", o.paths.StateDir, "readyz", o.readyz.URL,
		"apiserver", cfg.Host, "localAPIServer", local, "metrics", o.metricsBindAddress)
	return a.Run(logr.NewContext(ctx, log))
}
