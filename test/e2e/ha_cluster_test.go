//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// haCluster is a kind cluster of three control-plane nodes behind kind's load balancer, made
// by `KIND_CONTROL_PLANES=3 hack/kind/cluster.sh up`. Every node has its own host directories
// for the policy and the audit log, so the suite reads what each apiserver writes.
type haCluster struct {
	*cluster
	// nodes are the control-plane nodes in kind's order.
	nodes []string
	ip    map[string]string
	// cfg is the kubeconfig's: the load balancer, with the admin's client certificate.
	cfg *rest.Config
}

func newHACluster(name string) *haCluster {
	k := newClusterWith(name, "audit", "audit, 3 control planes", reuse, "KIND_CONTROL_PLANES=3")
	h := &haCluster{cluster: k, nodes: strings.Fields(k.env["KIND_CONTROL_PLANE_NODES"]), ip: map[string]string{}}
	Expect(h.nodes).To(HaveLen(3), "KIND_CONTROL_PLANE_NODES=%q", k.env["KIND_CONTROL_PLANE_NODES"])
	Expect(k.env["KIND_LOAD_BALANCER"]).NotTo(BeEmpty())
	for _, n := range h.nodes {
		out, err := run(nil, "", "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", n)
		Expect(err).NotTo(HaveOccurred())
		h.ip[n] = strings.TrimSpace(out)
	}
	var err error
	h.cfg, err = clientcmd.BuildConfigFromFlags("", k.kubeconfig())
	Expect(err).NotTo(HaveOccurred())
	return h
}

// url is node's own apiserver; its serving certificate covers the node's address.
func (h *haCluster) url(node string) string { return "https://" + h.ip[node] + ":6443" }

// clientOn is a client of node's own apiserver, not the load balancer.
func (h *haCluster) clientOn(node string) client.Client {
	cfg := rest.CopyConfig(h.cfg)
	cfg.Host = h.url(node)
	c, err := client.New(cfg, client.Options{Scheme: h.c.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	return c
}

// agentRestartsOn is the restart count of the agent's container on node.
func (h *haCluster) agentRestartsOn(node string) int {
	out, err := h.kubectl("-n", kauditNamespace, "get", "pods", "-l", "app.kubernetes.io/component=agent",
		"--field-selector", "spec.nodeName="+node, "-o", "jsonpath={.items[0].status.containerStatuses[0].restartCount}")
	Expect(err).NotTo(HaveOccurred())
	n, err := strconv.Atoi(strings.TrimSpace(out))
	Expect(err).NotTo(HaveOccurred(), "restart count %q", out)
	return n
}

// kubectlOn runs kubectl against node's own apiserver, not the load balancer.
func (h *haCluster) kubectlOn(node string, args ...string) (string, error) {
	return h.kubectl(append([]string{"--server", h.url(node), "--request-timeout=10s"}, args...)...)
}

func (h *haCluster) execOn(node string, args ...string) (string, error) {
	return run(nil, "", "docker", append([]string{"exec", node}, args...)...)
}

// policyOn is node's policy file, read from its host directory.
func (h *haCluster) policyOn(node string) string {
	b, _ := os.ReadFile(filepath.Join(h.env["KAUDIT_NODES_DIR"], node, "audit-policy", "policy.yaml"))
	return string(b)
}

func (h *haCluster) auditEventsOn(node string, since time.Time, match func(*auditv1.Event) bool) []auditv1.Event {
	return auditEventsIn(filepath.Join(h.env["KAUDIT_NODES_DIR"], node, "audit-log"), since, match)
}

// installImage installs config/default with its image replaced by img (an overlay in a
// temporary directory), so that a suite never needs the image name config/default carries.
func (h *haCluster) installImage() {
	Expect(runLogged(nil, h.env["KIND"], "load", "docker-image", img, "--name", h.name)).To(Succeed())
	// kustomize takes only a relative path to another kustomization: the overlay lives in the
	// repository's git-ignored bin/.
	Expect(os.MkdirAll(filepath.Join(repoRoot, "bin"), 0o755)).To(Succeed())
	dir, err := os.MkdirTemp(filepath.Join(repoRoot, "bin"), "e2e-overlay-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	name, tag := img, "latest"
	if i := strings.LastIndex(img, ":"); i > strings.LastIndex(img, "/") {
		name, tag = img[:i], img[i+1:]
	}
	overlay := fmt.Sprintf("resources:\n- ../../config/default\nimages:\n- name: kaudit.local/kaudit\n  newName: %s\n  newTag: %q\n", name, tag)
	Expect(os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(overlay), 0o644)).To(Succeed())
	out, err := h.kubectl("apply", "--server-side", "--force-conflicts", "-k", dir)
	fmt.Fprintln(GinkgoWriter, out)
	Expect(err).NotTo(HaveOccurred())
	h.waitKauditReady()
}

// setLoadBalancerHealthPath rewrites the health-check path kind gave its load balancer
// (/healthz) and waits until the load balancer uses the new configuration.
func (h *haCluster) setLoadBalancerHealthPath(path string) {
	lb := h.env["KIND_LOAD_BALANCER"]
	since := time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)
	_, err := run(nil, "", "docker", "exec", lb, "sh", "-c",
		`sed -E "s#^( +path: )/[a-z]+#\1`+path+`#" /home/envoy/cds.yaml > /tmp/cds.yaml && cp /tmp/cds.yaml /home/envoy/cds.tmp && mv /home/envoy/cds.tmp /home/envoy/cds.yaml && grep -q "path: `+path+`" /home/envoy/cds.yaml`)
	Expect(err).NotTo(HaveOccurred())
	// The stand-in logs "warmed and in use", envoy "cds: add/update ... cluster(s)".
	Eventually(func() (string, error) {
		return run(nil, "", "docker", "logs", "--since", since, lb)
	}).WithTimeout(30*time.Second).WithPolling(time.Second).Should(Or(ContainSubstring("warmed and in use"), ContainSubstring("cluster(s)")),
		"the load balancer did not take the new health-check path")
}

// patchSingleton merges spec into the AuditPolicy's spec.
func (h *haCluster) patchSingleton(spec string) {
	Eventually(func() error {
		_, err := h.kubectl("patch", "auditpolicy", v1alpha1.SingletonName, "--type", "merge", "-p", `{"spec":`+spec+`}`)
		return err
	}).WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Succeed())
}

// applyRetrying applies a manifest, retrying while the load balancer still sends a connection
// to an apiserver that is going away.
func (h *haCluster) applyRetrying(manifest string) {
	Eventually(func() (string, error) { return h.apply(manifest) }).WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Not(BeEmpty()))
}

// saveArtifacts keeps what is needed to debug a failed run of the three-node suite: kind's
// logs of every node, each node's audit log and kaudit files, the load balancer's log, the
// kaudit objects and pod logs.
func (h *haCluster) saveArtifacts(reason string) {
	dir := filepath.Join(artifactsRoot(), h.name)
	_ = os.RemoveAll(dir)
	_ = os.MkdirAll(dir, 0o755)
	fmt.Fprintf(GinkgoWriter, "saving artifacts of %s to %s (%s)\n", h.name, dir, reason)
	_ = runLogged(nil, h.env["KIND"], "export", "logs", filepath.Join(dir, "kind-logs"), "--name", h.name)
	for name, args := range map[string][]string{
		"kaudit-objects.yaml":      {"get", "auditpolicies,auditpolicymodules", "-o", "yaml"},
		"kaudit-system.yaml":       {"-n", "kaudit-system", "get", "all,configmaps,leases,events", "-o", "yaml"},
		"kaudit-logs.txt":          {"-n", "kaudit-system", "logs", "--all-containers", "--prefix", "--tail=-1", "-l", "app.kubernetes.io/name=kaudit"},
		"kaudit-logs-previous.txt": {"-n", "kaudit-system", "logs", "--all-containers", "--prefix", "--tail=-1", "--previous", "-l", "app.kubernetes.io/component=agent"},
		"pods.txt":                 {"get", "pods", "-A", "-o", "wide"},
	} {
		out, _ := h.kubectl(args...)
		_ = os.WriteFile(filepath.Join(dir, name), []byte(out), 0o644)
	}
	out, _ := run(nil, "", "docker", "logs", h.env["KIND_LOAD_BALANCER"])
	_ = os.WriteFile(filepath.Join(dir, "load-balancer.log"), []byte(out), 0o644)
	for _, n := range h.nodes {
		nd := filepath.Join(dir, n)
		_ = os.MkdirAll(nd, 0o755)
		_, _ = run(nil, "", "cp", "-a", filepath.Join(h.env["KAUDIT_NODES_DIR"], n, "audit-log"), filepath.Join(nd, "audit-log"))
		for _, f := range []string{"/etc/kubernetes/manifests/kube-apiserver.yaml", "/etc/kubernetes/audit/policy.yaml", "/etc/kubernetes/kaudit/state.json", "/etc/kubernetes/kaudit/journal.json"} {
			out, _ := h.execOn(n, "cat", f)
			_ = os.WriteFile(filepath.Join(nd, strings.ReplaceAll(strings.TrimPrefix(f, "/"), "/", "_")), []byte(out), 0o644)
		}
		out, _ := h.execOn(n, "ls", "-laR", "/etc/kubernetes/audit", "/etc/kubernetes/kaudit", "/etc/kubernetes/manifests")
		_ = os.WriteFile(filepath.Join(nd, "files.txt"), []byte(out), 0o644)
	}
}
