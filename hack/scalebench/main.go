// Command scalebench measures the manager at scale from outside, as a cluster runs it: a real
// kube-apiserver and etcd (the envtest assets), the real `kaudit manager` binary as a separate
// process, the shipped baseline plus generated modules of three rules (a share of them
// NamespacedAuditPolicyModules spread over namespaces) applied by server-side apply. For each
// guardrail setting (the built-ins on, or all switched off) it starts a manager with no revision
// in force and reports:
//
//   - cold: from the manager's start to the first revision, everything decided from scratch;
//   - cluster edit, team edit: from the server-side apply of a change to one AuditPolicyModule
//     (one NamespacedAuditPolicyModule) to the watch event of the revision ConfigMap it makes;
//     the median and the worst of -edits changes, each after the manager went idle, and the
//     manager's CPU time from the apply until it is idle again (what the revision sets off);
//   - the manager's peak and current resident memory (VmHWM, VmRSS in /proc/<pid>/status, and
//     RssFile, the file pages of VmRSS) at the end, with more revisions made than the history
//     keeps.
//
// Times include the debounce (spec.rollout.debounce, default 2 s); the "beyond the debounce"
// line takes it out. The manager runs with the GOMEMLIMIT of config/manager/manager.yaml unless
// -gomemlimit says otherwise, and the peak is compared with that manifest's memory limit. The
// whole run is bounded by -max-time. `make bench` runs it (hack/bench.sh); alone:
//
//	go build -o bin/kaudit . && KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh) \
//	  go run ./hack/scalebench -modules 5000
//
// -pprof DIR also saves the manager's CPU profile of each phase and a heap profile at its end.
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/cmd"
	"github.com/kaudit/kaudit/internal/guardrail"
	"github.com/kaudit/kaudit/internal/manifest"
	"github.com/kaudit/kaudit/internal/revision"
	"github.com/kaudit/kaudit/internal/testenv"
)

// fieldOwner applies the modules, as a GitOps tool would under its own name.
const fieldOwner = "kaudit-scalebench"

type options struct {
	kaudit     string
	modules    int
	namespaced float64
	namespaces int
	edits      int
	settings   []string
	timeout    time.Duration
	maxTime    time.Duration
	pprofDir   string
	logDir     string
	// gomemlimit is the manager's GOMEMLIMIT ("" for none); memoryLimit the Deployment's
	// memory limit, if the manifest was read.
	gomemlimit  string
	memoryLimit *resource.Quantity
}

func main() {
	var o options
	var settings string
	flag.StringVar(&o.kaudit, "kaudit", "bin/kaudit", "the kaudit binary whose manager is measured")
	flag.IntVar(&o.modules, "modules", 5000, "generated modules, of three rules each (the baseline's 13 modules come on top)")
	flag.Float64Var(&o.namespaced, "namespaced", 0.5, "share of the generated modules that are NamespacedAuditPolicyModules")
	flag.IntVar(&o.namespaces, "namespaces", 250, "namespaces the NamespacedAuditPolicyModules are spread over")
	flag.IntVar(&o.edits, "edits", 5, "changes measured per kind of module")
	flag.StringVar(&settings, "guardrails", "on,off", "guardrail settings to measure, in order: on (the built-ins) and off (all built-ins disabled)")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "longest wait for one revision")
	flag.DurationVar(&o.maxTime, "max-time", 10*time.Minute, "longest whole run: past it the control plane and the manager are stopped and the run fails")
	flag.StringVar(&o.pprofDir, "pprof", "", "directory for the manager's CPU and heap profiles; none when empty")
	flag.StringVar(&o.logDir, "logs", "", "directory for the manager's logs; a temporary one, removed at the end, when empty")
	flag.StringVar(&o.gomemlimit, "gomemlimit", fromManifest, "GOMEMLIMIT of the manager: "+fromManifest+" takes the one of "+manifestPath+", an empty value runs without")
	flag.Parse()
	o.settings = strings.Split(settings, ",")
	if err := readManifest(&o); err != nil {
		fmt.Fprintln(os.Stderr, "scalebench:", err)
		os.Exit(1)
	}
	time.AfterFunc(o.maxTime, func() { abort(fmt.Sprintf("stopped after -max-time %s", o.maxTime)) })
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() { abort(fmt.Sprintf("stopped by %s", <-signals)) }()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "scalebench:", err)
		os.Exit(1)
	}
}

// manifestPath is the manager's shipped Deployment, whose GOMEMLIMIT and memory limit the
// measurement is held to.
const manifestPath = "config/manager/manager.yaml"

const fromManifest = "from-manifest"

// readManifest takes the manager container's memory limit, and its GOMEMLIMIT unless the
// command line set one, from the shipped Deployment.
func readManifest(o *options) error {
	data, err := os.ReadFile(manifestPath)
	if err != nil {
		return fmt.Errorf("reading the manager's Deployment (run from the repository root): %w", err)
	}
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(data, &d); err != nil {
		return fmt.Errorf("%s: %w", manifestPath, err)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name != "manager" {
			continue
		}
		if l, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
			o.memoryLimit = &l
		}
		if o.gomemlimit == fromManifest {
			o.gomemlimit = ""
			for _, e := range c.Env {
				if e.Name == "GOMEMLIMIT" {
					o.gomemlimit = e.Value
				}
			}
		}
	}
	return nil
}

// aborts stop what the run started, newest first, when it is cut short (-max-time, SIGINT,
// SIGTERM): no kube-apiserver, etcd or manager outlives it.
var (
	abortMu sync.Mutex
	aborts  []func()
)

func onAbort(stop func()) {
	abortMu.Lock()
	defer abortMu.Unlock()
	aborts = append(aborts, stop)
}

func abort(reason string) {
	abortMu.Lock() // held until the exit: nothing new starts
	for i := len(aborts) - 1; i >= 0; i-- {
		aborts[i]()
	}
	fmt.Fprintln(os.Stderr, "scalebench:", reason)
	os.Exit(1)
}

// measurement is what one guardrail setting gave.
type measurement struct {
	setting                  string
	cold                     timing
	clusterEdits, teamEdits  []timing
	memory                   residentKiB
	rejected, revisionsAtEnd int
}

// timing is how long something took on the clock, and the manager's CPU time meanwhile: on a
// busy machine the clock mostly measures the wait for a core. untilIdle is, for an edit, the
// manager's CPU time from the apply until it went idle again: the revision and the status
// writes and decisions that follow it.
type timing struct{ wall, cpu, untilIdle time.Duration }

// ticks converts clock ticks of /proc/<pid>/stat (1/100 s on Linux) to a duration.
func ticks(n int) time.Duration { return time.Duration(n) * 10 * time.Millisecond }

func run(o options) error {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := os.Stat(o.kaudit); err != nil {
		return fmt.Errorf("%w (build it: go build -o bin/kaudit .)", err)
	}
	logDir := o.logDir
	if logDir == "" {
		dir, err := os.MkdirTemp("", "kaudit-scalebench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		logDir = dir
	}
	for _, d := range []string{logDir, o.pprofDir} {
		if d != "" {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
	}

	started := time.Now()
	env, err := testenv.Start(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	onAbort(func() { _ = env.Stop() })
	kubeconfig, err := env.AddUser("kaudit-scalebench-manager", "system:masters")
	if err != nil {
		return err
	}
	kubeconfigFile := filepath.Join(logDir, "kubeconfig")
	if err := os.WriteFile(kubeconfigFile, kubeconfig, 0o600); err != nil {
		return err
	}
	cfg := fastConfig(env)
	k8s, err := client.NewWithWatch(cfg, client.Options{Scheme: cmd.Scheme()})
	if err != nil {
		return err
	}

	objects, err := generate(o)
	if err != nil {
		return err
	}
	for i := range o.namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: teamNamespace(i)}}
		if err := k8s.Create(ctx, ns); err != nil {
			return err
		}
	}
	if err := setGuardrails(ctx, k8s, o.settings[0]); err != nil {
		return err
	}
	applyStart := time.Now()
	if err := applyAll(ctx, k8s, objects); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "applied %d modules in %s (control plane up after %s)\n", len(objects),
		time.Since(applyStart).Round(time.Millisecond), applyStart.Sub(started).Round(time.Millisecond))

	revisions, err := watchRevisions(ctx, k8s)
	if err != nil {
		return err
	}
	var results []measurement
	for _, s := range o.settings {
		m, err := measure(ctx, o, k8s, revisions, s, kubeconfigFile, logDir)
		if err != nil {
			return fmt.Errorf("guardrails %s: %w", s, err)
		}
		results = append(results, m)
	}
	report(o, results, time.Since(started))
	return nil
}

func fastConfig(env *testenv.Env) *rest.Config {
	c := *env.Config
	// The modules are applied many at a time; client-go's default of 5 per second would make
	// the apply, not the manager, what is measured.
	c.QPS, c.Burst = 2000, 4000
	return &c
}

// teamNamespace is the i-th namespace of the generated modules.
func teamNamespace(i int) string { return fmt.Sprintf("team-%04d", i) }

// generate makes the baseline's modules and the generated ones, as unstructured objects to
// apply. Cluster-scoped modules follow the baseline (order 1000 on), one per team namespace:
// the team's service account's reads dropped, its writes of workloads at Request, the rest of
// the namespace at Metadata; one in ten logs everything in its namespace with bodies after
// keeping credentials at Metadata (a rule every credential guardrail must prove shadowed).
// Namespaced modules only raise logging in their namespace: bodies of workload writes, of jobs
// created by a CI identity, and of deletions of services and volume claims.
func generate(o options) ([]*unstructured.Unstructured, error) {
	baseline, err := manifest.Read(nil, "config/modules/baseline")
	if err != nil {
		return nil, fmt.Errorf("reading the baseline (run from the repository root): %w", err)
	}
	var out []*unstructured.Unstructured
	for i := range baseline.Modules {
		u, err := toApply(&baseline.Modules[i], "AuditPolicyModule")
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	teams := int(float64(o.modules) * o.namespaced)
	for i := range o.modules - teams {
		u, err := toApply(clusterModule(i, 0), "AuditPolicyModule")
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	for i := range teams {
		u, err := toApply(teamModule(i, o.namespaces, 0), "NamespacedAuditPolicyModule")
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// editVerb marks the n-th edit of a module; 0 is none.
func editVerb(n int) []string {
	if n == 0 {
		return nil
	}
	return []string{fmt.Sprintf("scalebench-edit-%d", n)}
}

func clusterModule(i, edit int) *v1alpha1.AuditPolicyModule {
	ns := teamNamespace(i)
	sa := fmt.Sprintf("system:serviceaccount:%s:deployer", ns)
	noise := v1alpha1.PolicyRule{Level: v1alpha1.LevelNone, Users: []string{sa}, Verbs: []string{"get", "list", "watch"}, Namespaces: []string{ns}}
	rules := []v1alpha1.PolicyRule{
		noise,
		{Level: v1alpha1.LevelRequest, Verbs: append([]string{"create", "update", "patch", "delete"}, editVerb(edit)...), Namespaces: []string{ns}, Resources: []v1alpha1.GroupResources{
			{Group: "apps", Resources: []string{"deployments", "statefulsets", "deployments/scale"}},
			{Group: "", Resources: []string{"services", "pods"}},
		}},
		{Level: v1alpha1.LevelMetadata, Namespaces: []string{ns}},
	}
	if i%10 == 9 {
		rules = []v1alpha1.PolicyRule{
			{Level: v1alpha1.LevelMetadata, Namespaces: []string{ns}, Resources: []v1alpha1.GroupResources{
				{Group: "", Resources: []string{"secrets", "configmaps", "serviceaccounts/token"}},
				{Group: "authentication.k8s.io", Resources: []string{"tokenreviews"}},
				{Group: "certificates.k8s.io", Resources: []string{"certificatesigningrequests/*", "podcertificaterequests/*"}},
			}},
			{Level: v1alpha1.LevelRequestResponse, Namespaces: []string{ns}, Resources: []v1alpha1.GroupResources{{Group: "*", Resources: []string{"*"}}}},
			noise,
		}
	}
	return &v1alpha1.AuditPolicyModule{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("scale-%05d", i)},
		Spec:       v1alpha1.AuditPolicyModuleSpec{Order: 1000 + int32(i%10), Rules: rules},
	}
}

func teamModule(i, namespaces, edit int) *v1alpha1.NamespacedAuditPolicyModule {
	ns := teamNamespace(i % namespaces)
	return &v1alpha1.NamespacedAuditPolicyModule{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("team-module-%05d", i)},
		Spec: v1alpha1.NamespacedAuditPolicyModuleSpec{Order: int32(i % 10), Rules: []v1alpha1.NamespacedPolicyRule{
			{Level: v1alpha1.LevelRequestResponse, Verbs: append([]string{"create", "update", "patch"}, editVerb(edit)...),
				Resources: []v1alpha1.GroupResources{{Group: "apps", Resources: []string{"deployments", "statefulsets"}}}},
			{Level: v1alpha1.LevelRequestResponse, Users: []string{fmt.Sprintf("system:serviceaccount:%s:ci-%d", ns, i)}, Verbs: []string{"create", "delete"},
				Resources: []v1alpha1.GroupResources{{Group: "batch", Resources: []string{"jobs"}}}},
			{Level: v1alpha1.LevelRequestResponse, Verbs: []string{"delete"},
				Resources: []v1alpha1.GroupResources{{Group: "", Resources: []string{"services", "persistentvolumeclaims"}}}},
		}},
	}
}

// toApply is obj as a server-side apply body: its spec and identity only.
func toApply(obj runtime.Object, kind string) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": m["spec"]}}
	meta := m["metadata"].(map[string]any)
	u.SetAPIVersion(v1alpha1.GroupVersion.String())
	u.SetKind(kind)
	u.SetName(meta["name"].(string))
	if ns, ok := meta["namespace"].(string); ok {
		u.SetNamespace(ns)
	}
	return u, nil
}

func apply(ctx context.Context, k8s client.Client, u *unstructured.Unstructured) error {
	err := k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(u.DeepCopy()), client.FieldOwner(fieldOwner), client.ForceOwnership)
	if err != nil {
		return fmt.Errorf("applying %s %s: %w", u.GetKind(), client.ObjectKeyFromObject(u), err)
	}
	return nil
}

// applyAll applies objects, 16 at a time.
func applyAll(ctx context.Context, k8s client.Client, objects []*unstructured.Unstructured) error {
	work := make(chan *unstructured.Unstructured)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range work {
				if err := apply(ctx, k8s, u); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for _, u := range objects {
		select {
		case work <- u:
		case err = <-errs:
			break feed
		}
	}
	close(work)
	wg.Wait()
	close(errs)
	return errors.Join(err, <-errs)
}

// setGuardrails sets the singleton's guardrails: "on" keeps the built-ins, "off" disables all.
func setGuardrails(ctx context.Context, k8s client.Client, setting string) error {
	disabled := []any{}
	switch setting {
	case "on":
	case "off":
		for _, g := range guardrail.Builtins() {
			disabled = append(disabled, g.Name)
		}
	default:
		return fmt.Errorf("-guardrails: %q is neither on nor off", setting)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"defaultLevel": "Metadata", "omitStages": []any{"RequestReceived"},
		"guardrails": map[string]any{"disabledBuiltIns": disabled},
	}}}
	u.SetAPIVersion(v1alpha1.GroupVersion.String())
	u.SetKind("AuditPolicy")
	u.SetName(v1alpha1.SingletonName)
	return apply(ctx, k8s, u)
}

// revisionEvent is a revision ConfigMap's creation as the watch saw it.
type revisionEvent struct {
	name string
	at   time.Time
}

// watchRevisions reports each revision ConfigMap created from now on, watching again when the
// API server ends the watch.
func watchRevisions(ctx context.Context, k8s client.WithWatch) (<-chan revisionEvent, error) {
	var list corev1.ConfigMapList
	if err := k8s.List(ctx, &list, client.InNamespace(testenv.Namespace)); err != nil {
		return nil, err
	}
	out := make(chan revisionEvent, 100)
	rv := list.ResourceVersion
	go func() {
		for ctx.Err() == nil {
			w, err := k8s.Watch(ctx, &corev1.ConfigMapList{}, client.InNamespace(testenv.Namespace),
				client.MatchingLabelsSelector{Selector: revision.Selector()}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for ev := range w.ResultChan() {
				cm, ok := ev.Object.(*corev1.ConfigMap)
				if !ok {
					continue
				}
				rv = cm.ResourceVersion
				if ev.Type == watch.Added {
					out <- revisionEvent{name: cm.Name, at: time.Now()}
				}
			}
		}
	}()
	return out, nil
}

// measure runs one manager from scratch under a guardrail setting.
func measure(ctx context.Context, o options, k8s client.Client, revisions <-chan revisionEvent, setting, kubeconfig, logDir string) (measurement, error) {
	m := measurement{setting: setting}
	if err := setGuardrails(ctx, k8s, setting); err != nil {
		return m, err
	}
	// No revision in force: the first decision is made from scratch.
	if err := k8s.DeleteAllOf(ctx, &corev1.ConfigMap{}, client.InNamespace(testenv.Namespace),
		client.MatchingLabelsSelector{Selector: revision.Selector()}); err != nil {
		return m, err
	}
	drain(revisions)

	args := []string{"manager", "--namespace=" + testenv.Namespace, "--metrics-bind-address=0", "--health-probe-bind-address=0"}
	pprofAddr := ""
	if o.pprofDir != "" {
		addr, err := freeAddress()
		if err != nil {
			return m, err
		}
		pprofAddr = addr
		args = append(args, "--pprof-bind-address="+addr)
	}
	logFile, err := os.Create(filepath.Join(logDir, "manager-guardrails-"+setting+".log"))
	if err != nil {
		return m, err
	}
	defer logFile.Close()
	mgr := exec.Command(o.kaudit, args...)
	mgr.Env = append(slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "GOMEMLIMIT=") }), "KUBECONFIG="+kubeconfig)
	if o.gomemlimit != "" {
		mgr.Env = append(mgr.Env, "GOMEMLIMIT="+o.gomemlimit)
	}
	mgr.Stdout, mgr.Stderr = logFile, logFile
	mgr.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlives the run
	start := time.Now()
	if err := mgr.Start(); err != nil {
		return m, err
	}
	onAbort(func() { _ = mgr.Process.Kill() })
	exited := make(chan error, 1)
	go func() { exited <- mgr.Wait() }()
	defer func() {
		// How the manager ends once told to stop is not measured: its exit status is dropped.
		_ = mgr.Process.Signal(syscall.SIGTERM)
		var err error
		select {
		case err = <-exited:
		case <-time.After(15 * time.Second):
			_ = mgr.Process.Kill()
			err = <-exited
		}
		_ = err
	}()
	pid := mgr.Process.Pid
	profile := func(phase string) func() {
		if pprofAddr == "" {
			return func() {}
		}
		return startProfile(pprofAddr, filepath.Join(o.pprofDir, setting+"-"+phase))
	}

	stop := profile("cold")
	ev, err := nextRevision(revisions, exited, o.timeout)
	stop()
	if err != nil {
		return m, fmt.Errorf("cold start: %w (log: %s)", err, logFile.Name())
	}
	cpu, err := cpuTicks(pid)
	if err != nil {
		return m, err
	}
	m.cold = timing{wall: ev.at.Sub(start), cpu: ticks(cpu)}
	if err := settle(pid, o.timeout); err != nil {
		return m, err
	}
	for _, kind := range []string{"cluster", "team"} {
		edit := func(n int) *unstructured.Unstructured {
			if kind == "cluster" {
				return mustApply(clusterModule(1, n), "AuditPolicyModule")
			}
			return mustApply(teamModule(1, o.namespaces, n), "NamespacedAuditPolicyModule")
		}
		stop := profile(kind + "-edits")
		for n := 1; n <= o.edits; n++ {
			took, err := measureEdit(ctx, k8s, revisions, exited, pid, o.timeout, edit(n))
			if err != nil {
				return m, fmt.Errorf("%s edit %d: %w (log: %s)", kind, n, err, logFile.Name())
			}
			if kind == "cluster" {
				m.clusterEdits = append(m.clusterEdits, took)
			} else {
				m.teamEdits = append(m.teamEdits, took)
			}
		}
		stop()
	}
	// Put the edited modules back as they were, for the next setting, and let the manager
	// make that revision and go idle before its memory is read.
	drain(revisions)
	for _, u := range []*unstructured.Unstructured{mustApply(clusterModule(1, 0), "AuditPolicyModule"), mustApply(teamModule(1, o.namespaces, 0), "NamespacedAuditPolicyModule")} {
		if err := apply(ctx, k8s, u); err != nil {
			return m, err
		}
	}
	if _, err := nextRevision(revisions, exited, o.timeout); err != nil {
		return m, fmt.Errorf("putting the edited modules back: %w (log: %s)", err, logFile.Name())
	}
	if err := settle(pid, o.timeout); err != nil {
		return m, err
	}
	if pprofAddr != "" {
		if err := fetch(pprofAddr, "/debug/pprof/heap?gc=1", filepath.Join(o.pprofDir, setting+"-heap.pb.gz")); err != nil {
			return m, err
		}
	}
	if m.memory, err = rss(pid); err != nil {
		return m, err
	}
	m.rejected, m.revisionsAtEnd, err = tally(ctx, k8s)
	return m, err
}

// measureEdit applies one edit and times it until the revision's watch event, and the
// manager's CPU time until it is idle again.
func measureEdit(ctx context.Context, k8s client.Client, revisions <-chan revisionEvent, exited <-chan error, pid int, timeout time.Duration, edit *unstructured.Unstructured) (timing, error) {
	drain(revisions)
	cpu, err := cpuTicks(pid)
	if err != nil {
		return timing{}, err
	}
	at := time.Now()
	if err := apply(ctx, k8s, edit); err != nil {
		return timing{}, err
	}
	ev, err := nextRevision(revisions, exited, timeout)
	if err != nil {
		return timing{}, err
	}
	after, err := cpuTicks(pid)
	if err != nil {
		return timing{}, err
	}
	took := timing{wall: ev.at.Sub(at), cpu: ticks(after - cpu)}
	if err := settle(pid, timeout); err != nil {
		return timing{}, err
	}
	idle, err := cpuTicks(pid)
	if err != nil {
		return timing{}, err
	}
	took.untilIdle = ticks(idle - cpu)
	return took, nil
}

func mustApply(obj runtime.Object, kind string) *unstructured.Unstructured {
	u, err := toApply(obj, kind)
	if err != nil {
		panic(err)
	}
	return u
}

func drain(revisions <-chan revisionEvent) {
	for {
		select {
		case <-revisions:
		default:
			return
		}
	}
}

func nextRevision(revisions <-chan revisionEvent, exited <-chan error, timeout time.Duration) (revisionEvent, error) {
	select {
	case ev := <-revisions:
		return ev, nil
	case err := <-exited:
		return revisionEvent{}, fmt.Errorf("the manager exited: %v", err)
	case <-time.After(timeout):
		return revisionEvent{}, fmt.Errorf("no revision within %s", timeout)
	}
}

// settle waits until the manager has used less than 2% of a core for two seconds: it is done
// with the status writes that follow a revision, so the next change is measured alone.
func settle(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last, err := cpuTicks(pid)
	if err != nil {
		return err
	}
	for time.Now().Before(deadline) {
		time.Sleep(2 * time.Second)
		now, err := cpuTicks(pid)
		if err != nil {
			return err
		}
		if now-last <= 4 {
			return nil
		}
		last = now
	}
	return fmt.Errorf("the manager did not go idle within %s", timeout)
}

// cpuTicks is the user and system CPU time of a process, in clock ticks (1/100 s on Linux).
func cpuTicks(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: count fields after it.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, err := strconv.Atoi(fields[11])
	if err != nil {
		return 0, err
	}
	stime, err := strconv.Atoi(fields[12])
	return utime + stime, err
}

// residentKiB is a process's resident memory, in KiB: the peak (VmHWM), now (VmRSS), and of
// it now the pages of files (RssFile: mostly the binary's own code and data, which GOMEMLIMIT
// does not count).
type residentKiB struct{ peak, now, file int }

// rss reads a process's resident memory from /proc/<pid>/status.
func rss(pid int) (r residentKiB, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return r, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		key, value, _ := strings.Cut(s.Text(), ":")
		kib, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(value), " kB"))
		switch key {
		case "VmHWM":
			r.peak = kib
		case "VmRSS":
			r.now = kib
		case "RssFile":
			r.file = kib
		}
	}
	return r, s.Err()
}

// tally counts the modules not accepted and the revisions that exist.
func tally(ctx context.Context, k8s client.Client) (rejected, revisions int, err error) {
	var ms v1alpha1.AuditPolicyModuleList
	if err := k8s.List(ctx, &ms); err != nil {
		return 0, 0, err
	}
	var ns v1alpha1.NamespacedAuditPolicyModuleList
	if err := k8s.List(ctx, &ns); err != nil {
		return 0, 0, err
	}
	statuses := make([]v1alpha1.AuditPolicyModuleStatus, 0, len(ms.Items)+len(ns.Items))
	for _, m := range ms.Items {
		statuses = append(statuses, m.Status)
	}
	for _, m := range ns.Items {
		statuses = append(statuses, m.Status)
	}
	for _, st := range statuses {
		for _, c := range st.Conditions {
			if c.Type == v1alpha1.ConditionAccepted && c.Status != metav1.ConditionTrue {
				rejected++
			}
		}
	}
	var cms corev1.ConfigMapList
	if err := k8s.List(ctx, &cms, client.InNamespace(testenv.Namespace), client.MatchingLabelsSelector{Selector: revision.Selector()}); err != nil {
		return 0, 0, err
	}
	return rejected, len(cms.Items), nil
}

func freeAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startProfile records the manager's CPU profile from now until the returned function is
// called, into file.cpu.pb.gz: one 1-second profile after the other, merged by `go tool pprof`.
func startProfile(addr, file string) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if err := fetch(addr, "/debug/pprof/profile?seconds=1", fmt.Sprintf("%s.cpu.%03d.pb.gz", file, i)); err != nil {
				time.Sleep(100 * time.Millisecond) // not listening yet
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// profileClient gives up on a manager that does not answer: a busy or stopped one.
var profileClient = &http.Client{Timeout: 15 * time.Second}

func fetch(addr, path, file string) error {
	resp, err := profileClient.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}

func report(o options, results []measurement, total time.Duration) {
	debounce := v1alpha1.DefaultDebounce
	teams := int(float64(o.modules) * o.namespaced)
	fmt.Printf("\nmanager at scale: %d generated modules of 3 rules (%d namespaced over %d namespaces) + the baseline;\n", o.modules, teams, o.namespaces)
	fmt.Printf("the real manager binary (GOMEMLIMIT=%s) against a real kube-apiserver; times from the apply to the revision's\n", or(o.gomemlimit, "unset"))
	fmt.Printf("watch event, the debounce of %s included, as wall / manager CPU seconds; edits: median of %d, worst wall\n\n", debounce, o.edits)
	fmt.Printf("%-10s %13s %21s %21s %10s %10s %12s %9s\n", "guardrails", "cold", "cluster edit", "team edit", "VmHWM MiB", "VmRSS MiB", "of it files", "rejected")
	for _, m := range results {
		fmt.Printf("%-10s %13s %21s %21s %10.0f %10.0f %12.0f %9d\n", m.setting, m.cold,
			median(m.clusterEdits).String()+" "+secs(worst(m.clusterEdits)),
			median(m.teamEdits).String()+" "+secs(worst(m.teamEdits)),
			float64(m.memory.peak)/1024, float64(m.memory.now)/1024, float64(m.memory.file)/1024, m.rejected)
	}
	fmt.Printf("\nbeyond the debounce (median wall - %s):", debounce)
	for _, m := range results {
		fmt.Printf("  guardrails %s: cluster edit %s, team edit %s;", m.setting, secs(median(m.clusterEdits).wall-debounce), secs(median(m.teamEdits).wall-debounce))
	}
	fmt.Printf("\nmanager CPU per edit until idle again (median):")
	for _, m := range results {
		fmt.Printf("  guardrails %s: cluster edit %s, team edit %s;", m.setting, secs(medianUntilIdle(m.clusterEdits)), secs(medianUntilIdle(m.teamEdits)))
	}
	if o.memoryLimit != nil {
		peak := 0
		for _, m := range results {
			peak = max(peak, m.memory.peak)
		}
		limit := o.memoryLimit.Value() / 1024
		fmt.Printf("\nthe Deployment's memory limit: %s; the highest peak, %.0f MiB, leaves %.0f%% of it free", o.memoryLimit, float64(peak)/1024, 100*(1-float64(peak)/float64(limit)))
	}
	fmt.Printf("\nrevisions at the end: %d; load average: %s; run time %s\n", results[len(results)-1].revisionsAtEnd, loadAverage(), total.Round(time.Second))
}

func (t timing) String() string { return fmt.Sprintf("%.2f/%.2f", t.wall.Seconds(), t.cpu.Seconds()) }

// median is the timing of median wall time.
func median(ts []timing) timing {
	s := slices.Clone(ts)
	slices.SortFunc(s, func(a, b timing) int { return cmp.Compare(a.wall, b.wall) })
	return s[len(s)/2]
}

func medianUntilIdle(ts []timing) time.Duration {
	s := slices.Clone(ts)
	slices.SortFunc(s, func(a, b timing) int { return cmp.Compare(a.untilIdle, b.untilIdle) })
	return s[len(s)/2].untilIdle
}

func worst(ts []timing) time.Duration {
	var w time.Duration
	for _, t := range ts {
		w = max(w, t.wall)
	}
	return w
}

func or(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
