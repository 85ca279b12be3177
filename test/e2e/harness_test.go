//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// repoRoot is the repository root (the suite runs in test/e2e).
var repoRoot = func() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}()

// run executes a command, returning combined output; env entries are added to
// the suite's environment.
func run(env []string, stdin string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), env...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// runLogged is run with the output streamed to the Ginkgo writer.
func runLogged(env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = GinkgoWriter
	cmd.Stderr = GinkgoWriter
	fmt.Fprintf(GinkgoWriter, "$ %s %s\n", name, strings.Join(args, " "))
	return cmd.Run()
}

// cluster is one kind cluster made by hack/kind/cluster.sh.
type cluster struct {
	name, mode string
	env        map[string]string // from cluster.sh env
	kubectlBin string
	c          client.Client
}

func (k *cluster) envList() []string {
	out := []string{"KIND_CLUSTER=" + k.name, "KAUDIT_E2E_DIR=" + k.env["KAUDIT_E2E_DIR"]}
	return out
}

func (k *cluster) node() string       { return k.env["KIND_NODE"] }
func (k *cluster) kubeconfig() string { return k.env["KUBECONFIG"] }
func (k *cluster) logDir() string     { return k.env["KAUDIT_AUDIT_LOG_DIR"] }

// newCluster creates (or, with reuse, attaches to) kind cluster name in mode
// audit (apiserver audit flags from the kind config) or bare.
func newCluster(name, mode string, reuse bool) *cluster {
	return newClusterWith(name, mode, mode, reuse)
}

// newClusterWith is newCluster with more of cluster.sh's environment (e.g.
// KIND_CONTROL_PLANES=3); label names the cluster in the timings.
func newClusterWith(name, mode, label string, reuse bool, extraEnv ...string) *cluster {
	k := &cluster{name: name, mode: mode}
	env := append([]string{"KIND_CLUSTER=" + name, "KAUDIT_E2E_MODE=" + mode}, extraEnv...)
	if d := os.Getenv("KAUDIT_E2E_CLUSTERS_DIR"); d != "" {
		env = append(env, "KAUDIT_E2E_DIR="+filepath.Join(d, name))
	}
	exists := false
	if out, err := run(env, "", "hack/kind/cluster.sh", "env"); err == nil {
		k.env = parseEnv(out)
		if o, err := run(nil, "", k.env["KIND"], "get", "clusters"); err == nil {
			for _, l := range strings.Fields(o) {
				exists = exists || l == name
			}
		}
	}
	if !(reuse && exists) {
		if exists {
			Expect(runLogged(env, "hack/kind/cluster.sh", "down")).To(Succeed())
		}
		start := time.Now()
		Expect(runLogged(env, "hack/kind/cluster.sh", "up", mode)).To(Succeed(), "creating kind cluster %s", name)
		record("kind create cluster (%s) incl. cached image checks", time.Since(start), label)
	}
	out, err := run(env, "", "hack/kind/cluster.sh", "env")
	Expect(err).NotTo(HaveOccurred())
	k.env = parseEnv(out)
	bin, err := run(nil, "", "hack/kind/k8s-binaries.sh")
	Expect(err).NotTo(HaveOccurred())
	k.kubectlBin = filepath.Join(strings.TrimSpace(lastLine(bin)), "kubectl")

	cfg, err := clientcmd.BuildConfigFromFlags("", k.kubeconfig())
	Expect(err).NotTo(HaveOccurred())
	cfg.Timeout = 10 * time.Second
	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(v1alpha1.AddToScheme(scheme)).To(Succeed())
	k.c, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	return k
}

func (k *cluster) delete() {
	_ = runLogged(k.envList(), "hack/kind/cluster.sh", "down")
}

func parseEnv(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimPrefix(strings.TrimSpace(l), "export ")
		if i := strings.IndexByte(l, '='); i > 0 {
			v := l[i+1:]
			v = strings.Trim(v, "'\"")
			m[l[:i]] = v
		}
	}
	return m
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// kubectl runs kubectl against the cluster.
func (k *cluster) kubectl(args ...string) (string, error) {
	return run([]string{"KUBECONFIG=" + k.kubeconfig()}, "", k.kubectlBin, args...)
}

// apply applies manifests from stdin with server-side apply.
func (k *cluster) apply(manifest string) (string, error) {
	return run([]string{"KUBECONFIG=" + k.kubeconfig()}, manifest, k.kubectlBin, "apply", "--server-side", "--force-conflicts", "-f", "-")
}

// nodeExec runs a command inside the control-plane node container.
func (k *cluster) nodeExec(args ...string) (string, error) {
	return run(nil, "", "docker", append([]string{"exec", k.node()}, args...)...)
}

// nodeFile reads a file on the node.
func (k *cluster) nodeFile(path string) (string, error) { return k.nodeExec("cat", path) }

// readyz reports whether the apiserver answers /readyz ok.
func (k *cluster) readyz() error {
	out, err := k.kubectl("get", "--raw", "/readyz", "--request-timeout=3s")
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) != "ok" {
		return fmt.Errorf("readyz: %s", out)
	}
	return nil
}

// mirrorPod returns the kube-apiserver mirror pod of the control-plane node.
func (k *cluster) mirrorPod() (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p := &corev1.Pod{}
	err := k.c.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "kube-apiserver-" + k.node()}, p)
	return p, err
}

// apiserverStart is the start time of the running kube-apiserver container,
// with the mirror pod's UID: one value per apiserver instance.
type apiserverStart struct {
	UID     string
	Started time.Time
	Hash    string
}

func (k *cluster) apiserverStart() (apiserverStart, error) {
	p, err := k.mirrorPod()
	if err != nil {
		return apiserverStart{}, err
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == "kube-apiserver" && cs.State.Running != nil {
			return apiserverStart{UID: string(p.UID), Started: cs.State.Running.StartedAt.Time, Hash: p.Annotations[annotationPolicyHash]}, nil
		}
	}
	return apiserverStart{}, fmt.Errorf("kube-apiserver container of %s is not running", p.Name)
}

const annotationPolicyHash = "audit.kaudit.io/policy-hash"

// restartWatcher records every kube-apiserver instance it sees (polling the
// mirror pod), to count restarts across a window.
type restartWatcher struct {
	mu     sync.Mutex
	seen   []apiserverStart
	cancel context.CancelFunc
	done   chan struct{}
}

func (k *cluster) watchRestarts() *restartWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &restartWatcher{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			if s, err := k.apiserverStart(); err == nil {
				w.mu.Lock()
				if n := len(w.seen); n == 0 || !w.seen[n-1].Started.Equal(s.Started) || w.seen[n-1].UID != s.UID {
					w.seen = append(w.seen, s)
				}
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return w
}

// stop ends the watch and returns the instances seen, the first being the one
// running when the watch started.
func (w *restartWatcher) stop() []apiserverStart {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]apiserverStart(nil), w.seen...)
}

// distinctStarts counts kube-apiserver instances by container start time.
// While kubelet replaces a static pod, the old mirror pod briefly reports the
// new container's start, so UIDs alone would count one restart twice.
func distinctStarts(seen []apiserverStart) int {
	starts := map[int64]bool{}
	for _, s := range seen {
		starts[s.Started.Unix()] = true
	}
	return len(starts)
}

// auditEvents reads every audit event in the host-mounted log directory
// (current file and rotated backups) whose stage timestamp is after since and
// that match accepts.
func (k *cluster) auditEvents(since time.Time, match func(*auditv1.Event) bool) []auditv1.Event {
	return auditEventsIn(k.logDir(), since, match)
}

// auditEventsIn is auditEvents of the audit log directory dir.
func auditEventsIn(dir string, since time.Time, match func(*auditv1.Event) bool) []auditv1.Event {
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	sort.Strings(files)
	var out []auditv1.Event
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var ev auditv1.Event
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			if ev.StageTimestamp.Time.Before(since) {
				continue
			}
			if match == nil || match(&ev) {
				out = append(out, ev)
			}
		}
		fh.Close()
	}
	return out
}

// objectEvents matches events on one object in dataNamespace, where the suite keeps the objects
// it audits.
func objectEvents(resource, name string, verbs ...string) func(*auditv1.Event) bool {
	return func(ev *auditv1.Event) bool {
		r := ev.ObjectRef
		if r == nil || r.Resource != resource || r.Namespace != dataNamespace || r.Name != name || r.Subresource != "" {
			return false
		}
		if len(verbs) == 0 {
			return true
		}
		for _, v := range verbs {
			if ev.Verb == v {
				return true
			}
		}
		return false
	}
}

// nodeHeartbeats matches the Lease renewals of a node's kubelet.
func nodeHeartbeats(node string) func(*auditv1.Event) bool {
	return func(ev *auditv1.Event) bool {
		return ev.User.Username == "system:node:"+node && ev.ObjectRef != nil &&
			ev.ObjectRef.Resource == "leases" && ev.ObjectRef.Namespace == "kube-node-lease"
	}
}

// summary prints events compactly for failure messages.
func summary(evs []auditv1.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "%s %s %s %s level=%s req=%v resp=%v\n", ev.StageTimestamp.Format(time.RFC3339Nano), ev.Stage, ev.Verb, ev.RequestURI, ev.Level, ev.RequestObject != nil, ev.ResponseObject != nil)
	}
	return b.String()
}

// bumpManifestAnnotation sets annotation key=value in the node's
// kube-apiserver manifest, written atomically from outside the manifests
// directory, as an administrator (or kaudit) would.
func (k *cluster) bumpManifestAnnotation(key, value string) {
	k.bumpManifestAnnotationOn(k.node(), key, value)
}

// bumpManifestAnnotationOn is bumpManifestAnnotation on the kind node node.
func (k *cluster) bumpManifestAnnotationOn(node, key, value string) {
	script := fmt.Sprintf(`set -eu
m=/etc/kubernetes/manifests/kube-apiserver.yaml
tmp=$(mktemp /etc/kubernetes/.kube-apiserver.XXXXXX)
grep -v '^    %[1]s:' $m | sed '0,/^  annotations:/s#^  annotations:#  annotations:\n    %[1]s: "%[2]s"#' > $tmp
chmod 600 $tmp
mv $tmp $m`, key, value)
	_, err := run(nil, "", "docker", "exec", node, "bash", "-c", script)
	Expect(err).NotTo(HaveOccurred())
}

// waitAPIServerWith waits until /readyz is ok and the mirror pod shows
// annotation key=value, and returns when that was first seen.
func (k *cluster) waitAPIServerWith(key, value string, timeout time.Duration) time.Time {
	var at time.Time
	Eventually(func() error {
		p, err := k.mirrorPod()
		if err != nil {
			return err
		}
		if got := p.Annotations[key]; got != value {
			return fmt.Errorf("mirror pod %s=%q, want %q", key, got, value)
		}
		if err := k.readyz(); err != nil {
			return err
		}
		at = time.Now()
		return nil
	}).WithTimeout(timeout).WithPolling(500 * time.Millisecond).Should(Succeed())
	return at
}

// ---- measurements and artifacts ----

var (
	measureMu sync.Mutex
	measures  []string
)

// record notes a duration for the final report and the artifacts directory.
func record(format string, d time.Duration, args ...any) {
	line := fmt.Sprintf("%-70s %8.1fs", fmt.Sprintf(format, args...), d.Seconds())
	measureMu.Lock()
	measures = append(measures, line)
	measureMu.Unlock()
	AddReportEntry("timing", line)
	fmt.Fprintln(GinkgoWriter, "TIMING", line)
}

func artifactsRoot() string {
	if d := os.Getenv("KAUDIT_E2E_ARTIFACTS"); d != "" {
		return d
	}
	return "/tmp/kaudit-e2e/artifacts"
}

// saveArtifacts keeps what is needed to debug a failed run: kind's logs, the
// audit log, kaudit's objects and pod logs.
func (k *cluster) saveArtifacts(reason string) {
	dir := filepath.Join(artifactsRoot(), k.name)
	_ = os.RemoveAll(dir)
	_ = os.MkdirAll(dir, 0o755)
	fmt.Fprintf(GinkgoWriter, "saving artifacts of %s to %s (%s)\n", k.name, dir, reason)
	_ = runLogged(nil, k.env["KIND"], "export", "logs", filepath.Join(dir, "kind-logs"), "--name", k.name)
	_, _ = run(nil, "", "cp", "-a", k.logDir(), filepath.Join(dir, "audit-log"))
	for name, args := range map[string][]string{
		"kaudit-objects.yaml": {"get", "auditpolicies,auditpolicymodules", "-o", "yaml"},
		"kaudit-system.yaml":  {"-n", "kaudit-system", "get", "all,configmaps,leases,events", "-o", "yaml"},
		"kaudit-logs.txt":     {"-n", "kaudit-system", "logs", "--all-containers", "--prefix", "--tail=-1", "-l", "app.kubernetes.io/name=kaudit"},
		"pods.txt":            {"get", "pods", "-A", "-o", "wide"},
	} {
		out, _ := k.kubectl(args...)
		_ = os.WriteFile(filepath.Join(dir, name), []byte(out), 0o644)
	}
	for _, f := range []string{"/etc/kubernetes/manifests/kube-apiserver.yaml", "/etc/kubernetes/audit/policy.yaml"} {
		out, _ := k.nodeFile(f)
		_ = os.WriteFile(filepath.Join(dir, "node"+strings.ReplaceAll(f, "/", "_")), []byte(out), 0o644)
	}
	out, _ := k.nodeExec("ls", "-laR", "/etc/kubernetes/audit", "/etc/kubernetes/kaudit", "/etc/kubernetes/manifests")
	_ = os.WriteFile(filepath.Join(dir, "node-files.txt"), []byte(out), 0o644)
}
