// Command genauditlog writes a synthetic but realistic kube-apiserver audit log (JSON lines,
// audit.k8s.io/v1 Events) for benchmarks and tests: kubelets, controllers, the scheduler,
// service accounts, people and cluster admins; watches, lists, gets, writes with request and
// response bodies (managedFields, last-applied annotations), non-resource URLs, escaped
// characters as the apiserver writes them.
//
//	go run ./hack/genauditlog -size 1GiB -o /tmp/audit.log
package main

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

func main() {
	sizeFlag := flag.String("size", "64MiB", "approximate size of the log (e.g. 500MB, 2GiB)")
	out := flag.String("o", "-", "output file (- for stdout)")
	seed := flag.Uint64("seed", 1, "random seed: the same seed and size give the same log")
	gz := flag.Bool("gzip", false, "gzip the output")
	badEvery := flag.Int("bad-every", 0, "if > 0, about one line in N is malformed or of another apiVersion (for tests)")
	templates := flag.Int("templates", 20000, "number of distinct events to draw from")
	flag.Parse()

	size, err := parseSize(*sizeFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "genauditlog:", err)
		os.Exit(2)
	}
	var w io.Writer = os.Stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "genauditlog:", err)
			os.Exit(1)
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var dst io.Writer = bw
	var zw *gzip.Writer
	if *gz {
		zw = gzip.NewWriter(bw)
		dst = zw
	}
	g := newGenerator(*seed)
	if err := g.write(dst, size, *templates, *badEvery); err != nil {
		fmt.Fprintln(os.Stderr, "genauditlog:", err)
		os.Exit(1)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "genauditlog:", err)
			os.Exit(1)
		}
	}
	if err := bw.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "genauditlog:", err)
		os.Exit(1)
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"kB", 1e3}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	return int64(f * float64(mult)), nil
}

type generator struct {
	rnd   *rand.Rand
	nodes []string
	nss   []string
	start time.Time
}

func newGenerator(seed uint64) *generator {
	g := &generator{rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), start: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	for i := range 12 {
		g.nodes = append(g.nodes, fmt.Sprintf("worker-%02d.prod.example.com", i))
	}
	g.nss = []string{"default", "kube-system", "monitoring", "argocd", "payments", "checkout", "search", "ingress-nginx", "cert-manager", "team-a", "team-b", "kube-node-lease"}
	return g
}

func (g *generator) pick(s []string) string { return s[g.rnd.IntN(len(s))] }

type actor struct {
	weight int
	user   authnv1.UserInfo
	agent  string
	ip     string
	make   func(g *generator) request
}

type request struct {
	verb, group, version, resource, sub, ns, name string
	path, query                                   string // non-resource path, or query of a resource request
	reqBody, respBody                             func() []byte
	level                                         auditv1.Level
	code                                          int32
	watch                                         bool
}

func (g *generator) write(w io.Writer, size int64, n, badEvery int) error {
	actors := g.actors()
	total := 0
	for _, a := range actors {
		total += a.weight
	}
	lines := make([][]byte, 0, n)
	for range n {
		x := g.rnd.IntN(total)
		var a actor
		for _, a = range actors {
			if x < a.weight {
				break
			}
			x -= a.weight
		}
		lines = append(lines, g.events(a)...)
	}
	var written int64
	id := make([]byte, 36)
	count := 0
	for written < size {
		line := lines[g.rnd.IntN(len(lines))]
		// Fresh auditID in place (both events of one request share it in real logs; fine here).
		buf := append([]byte(nil), line...)
		if i := strings.Index(string(buf[:120]), `"auditID":"`); i >= 0 {
			g.uuid(id)
			copy(buf[i+11:], id)
		}
		count++
		if badEvery > 0 && count%badEvery == 0 {
			buf = g.corrupt(buf)
		}
		m, err := w.Write(buf)
		if err != nil {
			return err
		}
		written += int64(m)
	}
	return nil
}

// corrupt damages a line the way logs get damaged: cut off, garbage, or an older apiVersion.
func (g *generator) corrupt(line []byte) []byte {
	switch g.rnd.IntN(4) {
	case 0:
		return append(line[:len(line)/2:len(line)/2], '\n')
	case 1:
		return []byte("I1125 10:00:00.000000       1 trace.go:236] not json at all\n")
	case 2:
		return []byte(strings.Replace(string(line), `"apiVersion":"audit.k8s.io/v1"`, `"apiVersion":"audit.k8s.io/v1beta1"`, 1))
	default:
		return []byte("\n")
	}
}

func (g *generator) uuid(b []byte) {
	const hex = "0123456789abcdef"
	for i := range b {
		switch i {
		case 8, 13, 18, 23:
			b[i] = '-'
		default:
			b[i] = hex[g.rnd.IntN(16)]
		}
	}
}

// events renders the audit events of one request: RequestReceived for some, then
// ResponseStarted for watches and ResponseComplete.
func (g *generator) events(a actor) [][]byte {
	r := a.make(g)
	if strings.HasPrefix(a.user.Username, "system:node:") {
		a.user.Username = "system:node:" + g.pick(g.nodes)
	}
	uri := r.path
	ev := auditv1.Event{Level: r.level, Verb: r.verb, User: a.user, SourceIPs: []string{a.ip}, UserAgent: a.agent}
	ev.APIVersion, ev.Kind = "audit.k8s.io/v1", "Event"
	id := make([]byte, 36)
	g.uuid(id)
	ev.AuditID = types.UID(id)
	if r.resource != "" {
		prefix := "/apis/" + r.group + "/" + r.version
		if r.group == "" {
			prefix = "/api/" + r.version
		}
		uri = prefix
		if r.ns != "" {
			uri += "/namespaces/" + r.ns
		}
		uri += "/" + r.resource
		if r.name != "" {
			uri += "/" + r.name
		}
		if r.sub != "" {
			uri += "/" + r.sub
		}
		ev.ObjectRef = &auditv1.ObjectReference{Resource: r.resource, Namespace: r.ns, Name: r.name, APIGroup: r.group, APIVersion: r.version, Subresource: r.sub}
	}
	if r.query != "" {
		uri += "?" + r.query
	}
	ev.RequestURI = uri
	t := g.start.Add(time.Duration(g.rnd.IntN(86400e3)) * time.Millisecond)
	ev.RequestReceivedTimestamp = metav1.NewMicroTime(t)
	ev.Annotations = map[string]string{
		"authorization.k8s.io/decision": "allow",
		"authorization.k8s.io/reason":   fmt.Sprintf("RBAC: allowed by ClusterRoleBinding %q of ClusterRole %q to User %q", "system:"+a.user.Username, "system:"+a.user.Username, a.user.Username),
	}
	var out [][]byte
	enc := func(e auditv1.Event) {
		b, err := json.Marshal(e)
		if err != nil {
			panic(err)
		}
		out = append(out, append(b, '\n'))
	}
	if g.rnd.IntN(3) == 0 {
		rr := ev
		rr.Stage = auditv1.StageRequestReceived
		rr.StageTimestamp = ev.RequestReceivedTimestamp
		rr.Annotations = nil
		enc(rr)
	}
	code := r.code
	if code == 0 {
		code = 200
		if r.verb == "create" {
			code = 201
		}
	}
	ev.ResponseStatus = &metav1.Status{Code: code}
	if r.watch {
		ev.Stage = auditv1.StageResponseStarted
		ev.StageTimestamp = metav1.NewMicroTime(t.Add(2 * time.Millisecond))
		enc(ev)
	}
	ev.Stage = auditv1.StageResponseComplete
	ev.StageTimestamp = metav1.NewMicroTime(t.Add(time.Duration(1+g.rnd.IntN(40000)) * time.Microsecond))
	if r.level == auditv1.LevelRequest || r.level == auditv1.LevelRequestResponse {
		if r.reqBody != nil {
			ev.RequestObject = &runtime.Unknown{Raw: r.reqBody()}
		}
	}
	if r.level == auditv1.LevelRequestResponse && r.respBody != nil {
		ev.ResponseObject = &runtime.Unknown{Raw: r.respBody()}
	}
	enc(ev)
	return out
}

func (g *generator) meta(kind, apiVersion, ns, name string, extra int) map[string]any {
	labels := map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": g.pick(g.nss), "pod-template-hash": g.hex(10)}
	md := map[string]any{
		"name": name, "uid": g.hex(8) + "-" + g.hex(4) + "-" + g.hex(4) + "-" + g.hex(4) + "-" + g.hex(12),
		"resourceVersion": strconv.Itoa(1000000 + g.rnd.IntN(9000000)), "generation": 1 + g.rnd.IntN(20),
		"creationTimestamp": "2026-11-2" + strconv.Itoa(g.rnd.IntN(5)) + "T08:15:00Z", "labels": labels,
		"managedFields": []any{map[string]any{
			"manager": "kube-controller-manager", "operation": "Update", "apiVersion": apiVersion, "time": "2026-11-25T09:00:00Z",
			"fieldsType": "FieldsV1", "fieldsV1": map[string]any{"f:metadata": map[string]any{"f:labels": map[string]any{".": map[string]any{}, "f:app.kubernetes.io/name": map[string]any{}}}, "f:spec": map[string]any{"f:replicas": map[string]any{}}},
		}},
	}
	if ns != "" {
		md["namespace"] = ns
	}
	if extra > 0 {
		applied := map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": map[string]any{"name": name, "namespace": ns, "labels": labels}, "spec": map[string]any{"padding": strings.Repeat("x", extra/4)}}
		b, _ := json.Marshal(applied)
		md["annotations"] = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": string(b) + "\n", "deployment.kubernetes.io/revision": strconv.Itoa(g.rnd.IntN(30))}
	}
	return md
}

func (g *generator) hex(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = "0123456789abcdef"[g.rnd.IntN(16)]
	}
	return string(b)
}

func (g *generator) object(kind, apiVersion, ns, name string, size int) func() []byte {
	return func() []byte {
		containers := []any{}
		for i := range 1 + size/1500 {
			containers = append(containers, map[string]any{
				"name": fmt.Sprintf("c%d", i), "image": "registry.example.com/" + name + ":v1." + strconv.Itoa(g.rnd.IntN(50)),
				"env":       []any{map[string]any{"name": "LOG_LEVEL", "value": "info"}, map[string]any{"name": "OTEL_ENDPOINT", "value": "http://otel.monitoring:4317"}},
				"resources": map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "128Mi"}},
				"args":      []any{"--config=/etc/app/config.yaml", "--listen=:8080", "--feature-gates=A=true,B=false"},
			})
		}
		obj := map[string]any{"kind": kind, "apiVersion": apiVersion, "metadata": g.meta(kind, apiVersion, ns, name, size/3),
			"spec":   map[string]any{"replicas": g.rnd.IntN(5), "containers": containers, "nodeName": g.pick(g.nodes)},
			"status": map[string]any{"phase": "Running", "conditions": []any{map[string]any{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-25T09:00:00Z", "message": "containers with \"unready\" status: <none> & ok"}}},
		}
		b, _ := json.Marshal(obj)
		return b
	}
}

func (g *generator) actors() []actor {
	authd := "system:authenticated"
	sa := func(ns, name string) authnv1.UserInfo {
		return authnv1.UserInfo{Username: "system:serviceaccount:" + ns + ":" + name, UID: g.hex(8), Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, authd},
			Extra: map[string]authnv1.ExtraValue{"authentication.kubernetes.io/credential-id": {"JTI=" + g.hex(16)}, "authentication.kubernetes.io/node-name": {g.pick(g.nodes)}, "authentication.kubernetes.io/pod-name": {name + "-" + g.hex(5)}}}
	}
	readVerbs := []string{"get", "get", "list", "watch"}
	writeLevel := auditv1.LevelRequestResponse
	obj := func(kind, apiVersion string, size int) func(ns, name string) func() []byte {
		return func(ns, name string) func() []byte { return g.object(kind, apiVersion, ns, name, size) }
	}
	pod := obj("Pod", "v1", 4000)
	deploy := obj("Deployment", "apps/v1", 6000)
	cm := obj("ConfigMap", "v1", 12000)
	lease := obj("Lease", "coordination.k8s.io/v1", 300)
	node := obj("Node", "v1", 8000)
	event := obj("Event", "v1", 800)
	rb := obj("RoleBinding", "rbac.authorization.k8s.io/v1", 600)
	vwc := obj("ValidatingWebhookConfiguration", "admissionregistration.k8s.io/v1", 2000)
	read := func(r request) request {
		r.verb = g.pick(readVerbs)
		r.level = auditv1.LevelMetadata
		if r.verb != "get" {
			r.name = ""
			r.query = "resourceVersion=" + strconv.Itoa(g.rnd.IntN(1e7)) + "&limit=500"
			r.watch = r.verb == "watch"
			if r.watch {
				r.query = "allowWatchBookmarks=true&resourceVersion=" + strconv.Itoa(g.rnd.IntN(1e7)) + "&timeout=7m3s&timeoutSeconds=423&watch=true"
			}
		}
		return r
	}
	return []actor{
		{weight: 30, user: authnv1.UserInfo{Username: "system:node:" + g.pick(g.nodes), Groups: []string{"system:nodes", authd}}, agent: "kubelet/v1.37.2 (linux/amd64) kubernetes/abc1234", ip: "10.0.1.17",
			make: func(g *generator) request {
				n := g.pick(g.nodes)
				switch g.rnd.IntN(6) {
				case 0:
					return request{verb: "update", group: "coordination.k8s.io", version: "v1", resource: "leases", ns: "kube-node-lease", name: n, level: writeLevel, reqBody: lease("kube-node-lease", n), respBody: lease("kube-node-lease", n)}
				case 1:
					return request{verb: "patch", version: "v1", resource: "nodes", sub: "status", name: n, level: writeLevel, reqBody: node("", n), respBody: node("", n)}
				case 2:
					name := "app-" + g.hex(5)
					return request{verb: "patch", version: "v1", resource: "pods", sub: "status", ns: g.pick(g.nss), name: name, level: writeLevel, reqBody: pod("", name), respBody: pod("", name)}
				case 3:
					return request{verb: "get", version: "v1", resource: "secrets", ns: g.pick(g.nss), name: "app-tls-" + g.hex(3), level: auditv1.LevelMetadata}
				case 4:
					return request{verb: "watch", version: "v1", resource: "pods", query: "fieldSelector=spec.nodeName%3D" + n + "&resourceVersion=12345&watch=true", level: auditv1.LevelMetadata, watch: true}
				default:
					return read(request{version: "v1", resource: "configmaps", ns: g.pick(g.nss), name: "kube-root-ca.crt"})
				}
			}},
		{weight: 25, user: authnv1.UserInfo{Username: "system:kube-controller-manager", Groups: []string{authd}}, agent: "kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/abc1234/leader-election", ip: "10.0.0.10",
			make: func(g *generator) request {
				switch g.rnd.IntN(6) {
				case 0:
					return request{verb: "update", group: "coordination.k8s.io", version: "v1", resource: "leases", ns: "kube-system", name: "kube-controller-manager", level: writeLevel, reqBody: lease("kube-system", "kube-controller-manager"), respBody: lease("kube-system", "kube-controller-manager")}
				case 1:
					name := "web-" + g.hex(4)
					return request{verb: "update", group: "apps", version: "v1", resource: "deployments", sub: "status", ns: g.pick(g.nss), name: name, level: writeLevel, reqBody: deploy("", name), respBody: deploy("", name)}
				case 2:
					return request{verb: "create", version: "v1", resource: "events", ns: g.pick(g.nss), name: "web." + g.hex(16), level: auditv1.LevelRequest, reqBody: event("", "web")}
				case 3:
					return request{verb: "update", group: "discovery.k8s.io", version: "v1", resource: "endpointslices", ns: g.pick(g.nss), name: "svc-" + g.hex(5), level: writeLevel, reqBody: obj("EndpointSlice", "discovery.k8s.io/v1", 1500)("", "svc"), respBody: obj("EndpointSlice", "discovery.k8s.io/v1", 1500)("", "svc")}
				default:
					return read(request{group: g.pick([]string{"", "apps", "batch"}), version: "v1", resource: g.pick([]string{"pods", "replicasets", "jobs", "serviceaccounts"}), ns: g.pick(g.nss), name: "x-" + g.hex(4)})
				}
			}},
		{weight: 8, user: authnv1.UserInfo{Username: "system:kube-scheduler", Groups: []string{authd}}, agent: "kube-scheduler/v1.37.2 (linux/amd64) kubernetes/abc1234/scheduler", ip: "10.0.0.10",
			make: func(g *generator) request {
				if g.rnd.IntN(2) == 0 {
					return request{verb: "update", group: "coordination.k8s.io", version: "v1", resource: "leases", ns: "kube-system", name: "kube-scheduler", level: writeLevel, reqBody: lease("kube-system", "kube-scheduler"), respBody: lease("kube-system", "kube-scheduler")}
				}
				name := "app-" + g.hex(5)
				return request{verb: "create", version: "v1", resource: "pods", sub: "binding", ns: g.pick(g.nss), name: name, level: writeLevel, reqBody: obj("Binding", "v1", 200)("", name), respBody: obj("Status", "v1", 100)("", "")}
			}},
		{weight: 6, user: authnv1.UserInfo{Username: "system:apiserver", UID: g.hex(8), Groups: []string{"system:masters"}}, agent: "kube-apiserver/v1.37.2 (linux/amd64) kubernetes/abc1234", ip: "::1",
			make: func(g *generator) request {
				if g.rnd.IntN(2) == 0 {
					return request{verb: "get", path: "/readyz", level: auditv1.LevelMetadata}
				}
				return read(request{group: "flowcontrol.apiserver.k8s.io", version: "v1", resource: "flowschemas", name: "system-leader-election"})
			}},
		{weight: 10, user: sa("monitoring", "prometheus"), agent: "Prometheus/3.1.0", ip: "10.0.2.44",
			make: func(g *generator) request {
				if g.rnd.IntN(3) == 0 {
					return request{verb: "get", path: g.pick([]string{"/metrics", "/livez", "/healthz"}), level: auditv1.LevelMetadata}
				}
				return read(request{version: "v1", resource: g.pick([]string{"pods", "endpoints", "services", "nodes"}), ns: g.pick(g.nss)})
			}},
		{weight: 6, user: sa("argocd", "argocd-application-controller"), agent: "argocd-application-controller/v3.1.0", ip: "10.0.2.51",
			make: func(g *generator) request {
				name := "web-" + g.hex(3)
				if g.rnd.IntN(3) == 0 {
					return request{verb: "patch", group: "apps", version: "v1", resource: "deployments", ns: g.pick(g.nss), name: name, query: "fieldManager=argocd-controller&force=true", level: writeLevel, reqBody: deploy("", name), respBody: deploy("", name)}
				}
				return read(request{group: "apps", version: "v1", resource: "deployments", ns: g.pick(g.nss), name: name})
			}},
		{weight: 4, user: sa("cert-manager", "cert-manager"), agent: "cert-manager-controller/v1.17.0", ip: "10.0.2.60",
			make: func(g *generator) request {
				name := "tls-" + g.hex(4)
				if g.rnd.IntN(4) == 0 {
					return request{verb: "update", version: "v1", resource: "secrets", ns: g.pick(g.nss), name: name, level: auditv1.LevelMetadata}
				}
				return read(request{version: "v1", resource: "secrets", ns: g.pick(g.nss), name: name})
			}},
		{weight: 4, user: authnv1.UserInfo{Username: "alice@example.com", Groups: []string{"oidc:developers", authd}}, agent: "kubectl/v1.37.2 (linux/amd64) kubernetes/abc1234", ip: "192.0.2.10",
			make: func(g *generator) request {
				name := "web-" + g.hex(5)
				switch g.rnd.IntN(5) {
				case 0:
					return request{verb: "create", version: "v1", resource: "pods", sub: "exec", ns: "team-a", name: name, query: "command=sh&container=app&stdin=true&stdout=true&tty=true", level: auditv1.LevelMetadata, code: 101}
				case 1:
					return request{verb: "get", version: "v1", resource: "pods", sub: "log", ns: "team-a", name: name, query: "container=app&follow=true", level: auditv1.LevelMetadata}
				case 2:
					return request{verb: "patch", group: "apps", version: "v1", resource: "deployments", sub: "scale", ns: "team-a", name: name, level: writeLevel, reqBody: obj("Scale", "autoscaling/v1", 200)("team-a", name), respBody: obj("Scale", "autoscaling/v1", 200)("team-a", name)}
				default:
					return read(request{version: "v1", resource: "pods", ns: "team-a", name: name})
				}
			}},
		{weight: 2, user: authnv1.UserInfo{Username: "kubernetes-admin", Groups: []string{"kubeadm:cluster-admins", "system:masters", authd}}, agent: "kubectl/v1.37.2 (darwin/arm64) kubernetes/abc1234", ip: "192.0.2.99",
			make: func(g *generator) request {
				switch g.rnd.IntN(5) {
				case 0:
					name := "team-a-edit-" + g.hex(3)
					return request{verb: g.pick([]string{"create", "delete", "update"}), group: "rbac.authorization.k8s.io", version: "v1", resource: "rolebindings", ns: "team-a", name: name, level: writeLevel, reqBody: rb("team-a", name), respBody: rb("team-a", name)}
				case 1:
					return request{verb: "get", version: "v1", resource: "secrets", ns: "kube-system", name: "bootstrap-token-" + g.hex(6), level: auditv1.LevelMetadata}
				case 2:
					return request{verb: "patch", group: "admissionregistration.k8s.io", version: "v1", resource: "validatingwebhookconfigurations", name: "policy-webhook", level: writeLevel, reqBody: vwc("", "policy-webhook"), respBody: vwc("", "policy-webhook")}
				case 3:
					return request{verb: "update", version: "v1", resource: "configmaps", ns: "kube-system", name: "coredns", level: writeLevel, reqBody: cm("kube-system", "coredns"), respBody: cm("kube-system", "coredns")}
				default:
					return read(request{version: "v1", resource: "nodes", name: g.pick(g.nodes)})
				}
			}},
		{weight: 3, user: authnv1.UserInfo{Username: "system:anonymous", Groups: []string{"system:unauthenticated"}}, agent: "kube-probe/1.37", ip: "10.0.1.1",
			make: func(g *generator) request {
				return request{verb: "get", path: g.pick([]string{"/healthz", "/livez", "/readyz", "/version", "/openapi/v2"}), level: auditv1.LevelMetadata, code: int32(g.pick2(200, 403))}
			}},
		{weight: 2, user: sa("kube-system", "coredns"), agent: "coredns/v1.12.0", ip: "10.0.3.2",
			make: func(g *generator) request {
				return read(request{group: "discovery.k8s.io", version: "v1", resource: "endpointslices"})
			}},
	}
}

func (g *generator) pick2(a, b int) int {
	if g.rnd.IntN(4) == 0 {
		return b
	}
	return a
}
