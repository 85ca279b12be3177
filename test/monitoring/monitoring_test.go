package monitoring

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	_ "github.com/kaudit/kaudit/controllers" // registers the manager's counter and histograms
	"github.com/kaudit/kaudit/internal/agent"
	"github.com/kaudit/kaudit/internal/auditwatch"
	"github.com/kaudit/kaudit/internal/logfollow"
)

const (
	configDir     = "../../config/prometheus"
	dashboardFile = "../../config/prometheus/grafana/kaudit-dashboard.json"
	monitoringDoc = "../../docs/monitoring.md"
	runbookURL    = "https://github.com/kaudit/kaudit/blob/main/docs/monitoring.md#"
)

// managerGauges are the manager's gauges, read from its cache at each scrape by a collector
// that needs a running manager: test/managermetrics scrapes each of them from one. The manager's
// other metrics, and the agent's, are read from their real collectors below.
var managerGauges = []string{"kaudit_modules", "kaudit_nodes", "kaudit_nodes_behind", "kaudit_revision_latest"}

// describedMetrics are the names of the metrics a collector describes.
func describedMetrics(t *testing.T, c prometheus.Collector) []string {
	t.Helper()
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	// A Desc shows its name only in its String form.
	name := regexp.MustCompile(`fqName: "([^"]+)"`)
	var names []string
	for d := range ch {
		m := name.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		names = append(names, m[1])
	}
	if len(names) == 0 {
		t.Fatalf("%T describes no metric", c)
	}
	return names
}

// agentMetrics are the names of the agent's metrics: a real audit log watcher's and drift's.
func agentMetrics(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	w, err := auditwatch.New(auditwatch.Options{Follow: logfollow.Options{Path: filepath.Join(dir, "audit.log"), CheckpointDir: dir}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return append(describedMetrics(t, w), describedMetrics(t, agent.New(agent.Options{Rollout: &agent.Rollout{}}).DriftMetrics())...)
}

// exportedSeries are the series names a query may use: the metrics, and the _bucket, _sum and
// _count series of the histograms.
func exportedSeries(t *testing.T) map[string]bool {
	out := map[string]bool{}
	for _, n := range append(agentMetrics(t), managerGauges...) {
		out[n] = true
	}
	// The manager's counter and histograms, registered in controller-runtime's registry by the
	// controllers package.
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		n := f.GetName()
		if !strings.HasPrefix(n, "kaudit_") {
			continue
		}
		out[n] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			out[n+"_bucket"], out[n+"_sum"], out[n+"_count"] = true, true, true
		}
	}
	return out
}

var (
	quoted     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	identifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// seriesIn are the names in a PromQL expression that are kaudit's metrics (kaudit_...) or
// recorded series (level:metric:operations, with colons). Quoted strings, label values and
// regular expressions, are left out.
func seriesIn(expr string) []string {
	var out []string
	for _, id := range identifier.FindAllString(quoted.ReplaceAllString(expr, `""`), -1) {
		if strings.HasPrefix(id, "kaudit_") || strings.Contains(id, ":") {
			out = append(out, id)
		}
	}
	return out
}

// documents decodes every YAML document of a file.
func documents(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
}

type metadata struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// serviceMonitor holds the fields of monitoring.coreos.com/v1 ServiceMonitor that kaudit's use;
// a field it does not have fails the strict decoding, as would a misspelt one.
type serviceMonitor struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   metadata `json:"metadata"`
	Spec       struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Endpoints []struct {
			Port            string `json:"port"`
			Path            string `json:"path"`
			Scheme          string `json:"scheme"`
			BearerTokenFile string `json:"bearerTokenFile"`
			TLSConfig       struct {
				InsecureSkipVerify bool `json:"insecureSkipVerify"`
			} `json:"tlsConfig"`
			Relabelings []relabeling `json:"relabelings,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

type relabeling struct {
	SourceLabels []string `json:"sourceLabels"`
	TargetLabel  string   `json:"targetLabel"`
}

// prometheusRule holds the fields of monitoring.coreos.com/v1 PrometheusRule.
type prometheusRule struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   metadata `json:"metadata"`
	Spec       struct {
		Groups []struct {
			Name     string `json:"name"`
			Interval string `json:"interval,omitempty"`
			Rules    []rule `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func TestServiceMonitorsScrapeTheMetricsServicesOverHTTPS(t *testing.T) {
	want := map[string]bool{"manager": false, "agent": false}
	for _, doc := range documents(t, filepath.Join(configDir, "monitor.yaml")) {
		var sm serviceMonitor
		if err := yaml.UnmarshalStrict(doc, &sm); err != nil {
			t.Fatalf("monitor.yaml: %v", err)
		}
		if sm.APIVersion != "monitoring.coreos.com/v1" || sm.Kind != "ServiceMonitor" || sm.Metadata.Namespace != "kaudit-system" {
			t.Errorf("%s: %s %s in namespace %q", sm.Metadata.Name, sm.APIVersion, sm.Kind, sm.Metadata.Namespace)
		}
		// The Services carry kaudit.io/metrics: manager|agent and a port named https.
		role := sm.Spec.Selector.MatchLabels["kaudit.io/metrics"]
		if _, ok := want[role]; !ok || len(sm.Spec.Selector.MatchLabels) != 1 {
			t.Errorf("%s selects %v, want only kaudit.io/metrics: manager or agent", sm.Metadata.Name, sm.Spec.Selector.MatchLabels)
			continue
		}
		want[role] = true
		if len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("%s: %d endpoints, want 1", sm.Metadata.Name, len(sm.Spec.Endpoints))
		}
		ep := sm.Spec.Endpoints[0]
		if ep.Port != "https" || ep.Scheme != "https" || ep.Path != "/metrics" || ep.BearerTokenFile == "" {
			t.Errorf("%s: port %q, scheme %q, path %q, bearer token file %q: want port and scheme https, /metrics, a token",
				sm.Metadata.Name, ep.Port, ep.Scheme, ep.Path, ep.BearerTokenFile)
		}
		if role == "agent" && !slices.ContainsFunc(ep.Relabelings, func(r relabeling) bool {
			return r.TargetLabel == "node" && slices.Equal(r.SourceLabels, []string{"__meta_kubernetes_pod_node_name"})
		}) {
			t.Errorf("%s does not label the agents' series with their node, which the alerts and the dashboard use", sm.Metadata.Name)
		}
	}
	for role, found := range want {
		if !found {
			t.Errorf("no ServiceMonitor for the %s", role)
		}
	}
}

// rules decodes the PrometheusRule.
func rules(t *testing.T) prometheusRule {
	t.Helper()
	docs := documents(t, filepath.Join(configDir, "rules.yaml"))
	if len(docs) != 1 {
		t.Fatalf("rules.yaml: %d documents, want 1", len(docs))
	}
	var pr prometheusRule
	if err := yaml.UnmarshalStrict(docs[0], &pr); err != nil {
		t.Fatalf("rules.yaml: %v", err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" || pr.Metadata.Namespace != "kaudit-system" {
		t.Fatalf("rules.yaml: %s %s in namespace %q", pr.APIVersion, pr.Kind, pr.Metadata.Namespace)
	}
	return pr
}

func TestRulesUseOnlyExportedMetrics(t *testing.T) {
	exported := exportedSeries(t)
	pr := rules(t)
	recorded := map[string]bool{}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			if (r.Alert == "") == (r.Record == "") || strings.TrimSpace(r.Expr) == "" {
				t.Errorf("group %s: a rule must be an alert or a record, with an expression: %+v", g.Name, r)
			}
			if r.Record != "" && !regexp.MustCompile(`^[a-z_]+:kaudit_[a-z_]+:[a-z0-9_]+$`).MatchString(r.Record) {
				t.Errorf("recorded series %s is not named level:metric:operations", r.Record)
			}
			series := seriesIn(r.Expr)
			if len(series) == 0 {
				t.Errorf("%s uses none of kaudit's metrics: %s", name, r.Expr)
			}
			for _, s := range series {
				if !exported[s] && !recorded[s] {
					t.Errorf("%s uses %s, which kaudit does not export and no rule records", name, s)
				}
			}
		}
	}
}

func TestEveryAlertSaysWhatHappenedAndLinksItsRunbook(t *testing.T) {
	doc, err := os.ReadFile(monitoringDoc)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "#") {
			anchors[githubAnchor(strings.TrimLeft(line, "# "))] = true
		}
	}
	alerts := 0
	for _, g := range rules(t).Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			for _, key := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[key]) == "" {
					t.Errorf("%s has no %s", r.Alert, key)
				}
			}
			if extra := len(r.Annotations) - 3; extra != 0 {
				t.Errorf("%s: annotations %v, want summary, description and runbook_url", r.Alert, r.Annotations)
			}
			anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookURL)
			if !ok || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q is not a section of docs/monitoring.md (%s...)", r.Alert, r.Annotations["runbook_url"], runbookURL)
			}
			if anchor != strings.ToLower(r.Alert) {
				t.Errorf("%s: its runbook section is %q, want the alert's own (%q)", r.Alert, anchor, strings.ToLower(r.Alert))
			}
			if sev := r.Labels["severity"]; sev != "warning" && sev != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, sev)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
				}
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alert")
	}
}

// githubAnchor is the anchor GitHub gives a heading: lower case, spaces to hyphens, other
// punctuation dropped.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// dashboardQueries are the PromQL expressions of a Grafana dashboard: its panels' targets (in
// rows too) and its query variables.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	}
	type panel struct {
		Title   string   `json:"title"`
		Type    string   `json:"type"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var d struct {
		UID        string  `json:"uid"`
		Title      string  `json:"title"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("the dashboard has no uid or title")
	}
	queries := map[string]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				queries["panel "+p.Title+" "+tg.RefID] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		expr, _ := q["query"].(string)
		queries["variable "+v.Name] = expr
	}
	return queries
}

func TestDashboardUsesOnlyExportedMetrics(t *testing.T) {
	exported := exportedSeries(t)
	used := map[string]bool{}
	for where, expr := range dashboardQueries(t) {
		series := seriesIn(expr)
		if len(series) == 0 {
			t.Errorf("%s uses none of kaudit's metrics: %q", where, expr)
		}
		for _, s := range series {
			used[s] = true
			if !exported[s] {
				t.Errorf("%s uses %s, which kaudit does not export", where, s)
			}
		}
	}
	// What the dashboard is for: volume by module, rule and level, security-relevant events,
	// rollout state per node, follower lag.
	for _, s := range []string{"kaudit_audit_event_bytes_total", "kaudit_audit_events_total", "kaudit_audit_security_events_total", "kaudit_nodes", "kaudit_node_drift", "kaudit_audit_log_lag_seconds"} {
		if !used[s] {
			t.Errorf("the dashboard does not show %s", s)
		}
	}
}

func TestDashboardConfigMapIsWhatTheGrafanaSidecarLoads(t *testing.T) {
	var k struct {
		Kind               string `json:"kind"`
		ConfigMapGenerator []struct {
			Name      string   `json:"name"`
			Namespace string   `json:"namespace"`
			Files     []string `json:"files"`
			Options   struct {
				DisableNameSuffixHash bool              `json:"disableNameSuffixHash"`
				Labels                map[string]string `json:"labels"`
			} `json:"options"`
		} `json:"configMapGenerator"`
	}
	docs := documents(t, filepath.Join(configDir, "grafana", "kustomization.yaml"))
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	if err := yaml.Unmarshal(docs[0], &k); err != nil {
		t.Fatal(err)
	}
	if k.Kind != "Component" || len(k.ConfigMapGenerator) != 1 {
		t.Fatalf("grafana/kustomization.yaml: kind %s with %d ConfigMaps, want a Component with one", k.Kind, len(k.ConfigMapGenerator))
	}
	g := k.ConfigMapGenerator[0]
	if g.Options.Labels["grafana_dashboard"] != "1" || !g.Options.DisableNameSuffixHash || !slices.Equal(g.Files, []string{filepath.Base(dashboardFile)}) {
		t.Errorf("the dashboard ConfigMap: %+v, want the label grafana_dashboard: \"1\", a stable name and the dashboard's file", g)
	}
}

// The Prometheus Operator's CRDs may be missing, so the objects are optional Components that
// config/default does not include.
func TestMonitoringIsOptional(t *testing.T) {
	var k struct {
		Kind      string   `json:"kind"`
		Resources []string `json:"resources"`
	}
	for _, doc := range documents(t, filepath.Join(configDir, "kustomization.yaml")) {
		if err := yaml.Unmarshal(doc, &k); err != nil {
			t.Fatal(err)
		}
	}
	if k.Kind != "Component" || !slices.Equal(k.Resources, []string{"monitor.yaml", "rules.yaml"}) {
		t.Errorf("config/prometheus: kind %s with %v, want a Component of monitor.yaml and rules.yaml", k.Kind, k.Resources)
	}
	def, err := os.ReadFile("../../config/default/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(def, []byte("prometheus")) {
		t.Error("config/default includes config/prometheus: installs without the Prometheus Operator would fail")
	}
}
