package controllers

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// The manager's metrics (docs/metrics.md, "Manager"), in controller-runtime's registry, which
// the manager's metrics server serves. The counter and the histograms are updated where things
// happen; the gauges are read from the manager's cache at each scrape, so they are never stale
// and need no bookkeeping.

var (
	revisionsMade = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kaudit_revisions_total",
		Help: "Revisions the manager made: revision ConfigMaps it created, or adopted after a crash lost the status write of its create.",
	})
	changeToRevision = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "kaudit_change_to_revision_seconds",
		Help: "Time from when the manager first saw a change that a revision includes (the start of its debounce) to the creation of the revision's ConfigMap.",
		// From a quiet change (a decision, the debounce of 2s by default) to spec.rollout.maxWait,
		// at most 1h.
		Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 2.5, 3, 5, 10, 30, 60, 300, 900, 3600},
	})
	nodeRolloutDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "kaudit_node_rollout_duration_seconds",
		Help: "Duration of one node's rollout of one revision, by result (applied, rolled_back, failed): for applied the agent's lastRolloutSeconds, otherwise from when the manager first saw the node RollingOut to when it saw the result.",
		// A kube-apiserver restart takes 30-60 s; a rollback waits up to spec.rollout.healthTimeout
		// (at most 1h) first.
		Buckets: []float64{5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800, 3600},
	}, []string{"result"})
)

// The results of a node's rollout, one for each terminal phase.
var rolloutResults = map[v1alpha1.NodePhase]string{
	v1alpha1.NodeApplied:    "applied",
	v1alpha1.NodeRolledBack: "rolled_back",
	v1alpha1.NodeFailed:     "failed",
}

func init() {
	metrics.Registry.MustRegister(revisionsMade, changeToRevision, nodeRolloutDuration)
	for _, result := range rolloutResults {
		nodeRolloutDuration.WithLabelValues(result) // every result is exported, at zero until one happens
	}
}

// revisionMade counts a revision whose first included change the manager saw changeAge ago.
func revisionMade(changeAge time.Duration) {
	revisionsMade.Inc()
	changeToRevision.Observe(changeAge.Seconds())
}

// nodeRollouts observes each node's rollout duration once per node and revision, from the
// agents' entries in the singleton's status. Its zero value is ready; one worker reconciles the
// singleton, so it needs no lock.
type nodeRollouts struct {
	// ended holds, per node, the last result observed or, at start, found.
	ended map[string]rolloutEnd
	// rollingSince holds when the manager first saw each node RollingOut, as the start of a
	// rollout that fails: the agent records the length of successful rollouts only.
	rollingSince map[string]time.Time
}

type rolloutEnd struct {
	revision int64
	phase    v1alpha1.NodePhase
}

// observe reads the node entries at now. desired is the desired revision the agents act on: a
// rollout that failed or was rolled back was one of it. The results present at the first call
// are remembered, not observed: the manager may have observed them before it restarted.
func (n *nodeRollouts) observe(entries []v1alpha1.NodeStatus, desired *int64, now time.Time) {
	starting := n.ended == nil
	if starting {
		n.ended, n.rollingSince = map[string]rolloutEnd{}, map[string]time.Time{}
	}
	present := make(map[string]bool, len(entries))
	for _, e := range entries {
		present[e.Name] = true
		if e.Phase == v1alpha1.NodeRollingOut {
			if _, ok := n.rollingSince[e.Name]; !ok {
				n.rollingSince[e.Name] = now
			}
			continue
		}
		since, rolling := n.rollingSince[e.Name]
		delete(n.rollingSince, e.Name)
		result, terminal := rolloutResults[e.Phase]
		if !terminal {
			continue
		}
		end := rolloutEnd{revision: ptr.Deref(desired, 0), phase: e.Phase}
		if e.Phase == v1alpha1.NodeApplied {
			end.revision = ptr.Deref(e.AppliedRevision, 0)
		}
		if n.ended[e.Name] == end {
			continue
		}
		n.ended[e.Name] = end
		switch {
		case starting: // remembered only
		case e.Phase == v1alpha1.NodeApplied && e.LastRolloutSeconds != nil:
			nodeRolloutDuration.WithLabelValues(result).Observe(float64(*e.LastRolloutSeconds))
		case rolling:
			nodeRolloutDuration.WithLabelValues(result).Observe(now.Sub(since).Seconds())
		}
	}
	for name := range n.ended {
		if !present[name] {
			delete(n.ended, name)
		}
	}
	for name := range n.rollingSince {
		if !present[name] {
			delete(n.rollingSince, name)
		}
	}
}

// The gauges, read from the cache at each scrape.
var (
	modulesDesc = prometheus.NewDesc("kaudit_modules",
		"Modules by kind and state: accepted, rejected (their current generation is not in force; a version accepted before may be) or disabled (spec.disabled, or namespaced modules switched off in the singleton). Modules the manager has not decided on yet are not counted.",
		[]string{"kind", "state"}, nil)
	nodesDesc = prometheus.NewDesc("kaudit_nodes",
		"Control-plane nodes by the phase of their entry in the AuditPolicy's status.nodes.",
		[]string{"phase"}, nil)
	nodesBehindDesc = prometheus.NewDesc("kaudit_nodes_behind",
		"Control-plane nodes whose kube-apiserver does not run the desired revision (the newest one, or the pinned one).",
		nil, nil)
	revisionLatestDesc = prometheus.NewDesc("kaudit_revision_latest",
		"Number of the newest revision (status.latestRevision of the AuditPolicy); absent before the first revision.",
		nil, nil)
)

// The module states of kaudit_modules.
const (
	moduleAccepted = "accepted"
	moduleRejected = "rejected"
	moduleDisabled = "disabled"
)

// scrapeTimeout bounds the cache reads of one scrape; they wait only while the cache syncs.
const scrapeTimeout = 10 * time.Second

// stateCollector exports the gauges of the modules, nodes and revisions from a cache reader.
type stateCollector struct {
	reader client.Reader
}

// registerStateMetrics registers the gauges read from reader. A manager started later in the
// same process (tests, the demo) replaces an earlier one's.
func registerStateMetrics(reader client.Reader) error {
	c := &stateCollector{reader: reader}
	err := metrics.Registry.Register(c)
	if taken, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		metrics.Registry.Unregister(taken.ExistingCollector)
		err = metrics.Registry.Register(c)
	}
	return err
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- modulesDesc
	ch <- nodesDesc
	ch <- nodesBehindDesc
	ch <- revisionLatestDesc
}

// Collect exports what the cache holds. A read that fails leaves its gauges out of the scrape,
// and is logged, rather than failing the whole scrape with the other metrics.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	logger := log.Log.WithName("metrics")
	if err := c.collectModules(ctx, ch); err != nil {
		logger.Error(err, "reading the modules for kaudit_modules")
	}
	if err := c.collectRollout(ctx, ch); err != nil {
		logger.Error(err, "reading the AuditPolicy and the nodes for kaudit_nodes, kaudit_nodes_behind and kaudit_revision_latest")
	}
}

func (c *stateCollector) collectModules(ctx context.Context, ch chan<- prometheus.Metric) error {
	var cluster v1alpha1.AuditPolicyModuleList
	if err := c.reader.List(ctx, &cluster, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	var namespaced v1alpha1.NamespacedAuditPolicyModuleList
	if err := c.reader.List(ctx, &namespaced, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	counts := map[string]map[string]int{"AuditPolicyModule": {}, "NamespacedAuditPolicyModule": {}}
	for i := range cluster.Items {
		if state, ok := moduleState(cluster.Items[i].Status.Conditions); ok {
			counts["AuditPolicyModule"][state]++
		}
	}
	for i := range namespaced.Items {
		if state, ok := moduleState(namespaced.Items[i].Status.Conditions); ok {
			counts["NamespacedAuditPolicyModule"][state]++
		}
	}
	for kind, byState := range counts {
		for _, state := range []string{moduleAccepted, moduleRejected, moduleDisabled} {
			ch <- prometheus.MustNewConstMetric(modulesDesc, prometheus.GaugeValue, float64(byState[state]), kind, state)
		}
	}
	return nil
}

// moduleState is the state of a module by its Accepted condition; false before the manager
// decided on it.
func moduleState(conditions []metav1.Condition) (string, bool) {
	c := meta.FindStatusCondition(conditions, v1alpha1.ConditionAccepted)
	switch {
	case c == nil:
		return "", false
	case c.Reason == v1alpha1.ReasonDisabled || c.Reason == v1alpha1.ReasonNamespacedModulesDisabled:
		return moduleDisabled, true
	case c.Status == metav1.ConditionTrue:
		return moduleAccepted, true
	default:
		return moduleRejected, true
	}
}

func (c *stateCollector) collectRollout(ctx context.Context, ch chan<- prometheus.Metric) error {
	var ap v1alpha1.AuditPolicy
	if err := c.reader.Get(ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, &ap); client.IgnoreNotFound(err) != nil {
		return err
	}
	var nodes metav1.PartialObjectMetadataList
	nodes.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NodeList"))
	if err := c.reader.List(ctx, &nodes, client.HasLabels{v1alpha1.ControlPlaneLabel}); err != nil {
		return err
	}
	phases := map[v1alpha1.NodePhase]int{}
	for _, e := range ap.Status.Nodes {
		phases[e.Phase]++
	}
	for _, phase := range []v1alpha1.NodePhase{v1alpha1.NodePending, v1alpha1.NodeRollingOut, v1alpha1.NodeApplied, v1alpha1.NodeFailed, v1alpha1.NodeRolledBack, v1alpha1.NodeDrifted} {
		ch <- prometheus.MustNewConstMetric(nodesDesc, prometheus.GaugeValue, float64(phases[phase]), string(phase))
	}
	behind := 0
	if desired := ap.Status.DesiredRevision; desired != nil {
		for _, n := range nodes.Items {
			if e := ap.Status.Node(n.Name); e == nil || ptr.Deref(e.AppliedRevision, 0) != *desired {
				behind++
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(nodesBehindDesc, prometheus.GaugeValue, float64(behind))
	if latest := ap.Status.LatestRevision; latest != nil {
		ch <- prometheus.MustNewConstMetric(revisionLatestDesc, prometheus.GaugeValue, float64(*latest))
	}
	return nil
}
