package simulate

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/relevance"
)

const (
	eventAPIVersion = "audit.k8s.io/v1"
	eventKind       = "Event"

	// What dropping a body saves besides its value: the comma and the key.
	requestKeyCost  = len(`,"requestObject":`)
	responseKeyCost = len(`,"responseObject":`)
)

// reqInfo is what the report shows of a distinct request.
type reqInfo struct {
	user, verb, resource string
	// need is the request's security relevance (docs/modules.md, R1-R6).
	need relevance.Requirement
	// longRunning requests (watches, exec, logs, ...) get a ResponseStarted event.
	longRunning bool
}

// entry is a distinct request: its decisions and what was counted for it.
type entry struct {
	info       reqInfo
	cand, base policy.Decision
	candOmit   uint8
	baseOmit   uint8
	hasBase    bool
	c          counters
}

// counters add up events and estimated bytes.
type counters struct {
	Events        int64 `json:"events"`
	RecordedBytes int64 `json:"recordedBytes"`
	Written       int64 `json:"written"`
	Bytes         int64 `json:"bytes"`
	BaseWritten   int64 `json:"baselineWritten"`
	BaseBytes     int64 `json:"baselineBytes"`
	Dropped       int64 `json:"dropped"`
	DroppedBytes  int64 `json:"droppedBytes"`
	StageOmitted  int64 `json:"stageOmitted"`
	StageBytes    int64 `json:"stageOmittedBytes"`
	Added         int64 `json:"added"`
	AddedBytes    int64 `json:"addedBytes"`
	LevelUp       int64 `json:"levelUp"`
	LevelDown     int64 `json:"levelDown"`
	LowerBound    int64 `json:"bodiesNotRecorded"`
}

func (c *counters) add(o *counters) {
	c.Events += o.Events
	c.RecordedBytes += o.RecordedBytes
	c.Written += o.Written
	c.Bytes += o.Bytes
	c.BaseWritten += o.BaseWritten
	c.BaseBytes += o.BaseBytes
	c.Dropped += o.Dropped
	c.DroppedBytes += o.DroppedBytes
	c.StageOmitted += o.StageOmitted
	c.StageBytes += o.StageBytes
	c.Added += o.Added
	c.AddedBytes += o.AddedBytes
	c.LevelUp += o.LevelUp
	c.LevelDown += o.LevelDown
	c.LowerBound += o.LowerBound
}

// facts are the per-event inputs of the byte estimate.
type facts struct {
	size     int64
	stage    uint8
	recorded auditv1.Level
	req      int
	resp     int
}

// Stages as bits, for masks of omitted stages.
const (
	stageRequestReceived uint8 = 1 << iota
	stageResponseStarted
	stageResponseComplete
	stagePanic
)

func stageBit(s string) uint8 {
	switch auditv1.Stage(s) {
	case auditv1.StageRequestReceived:
		return stageRequestReceived
	case auditv1.StageResponseStarted:
		return stageResponseStarted
	case auditv1.StageResponseComplete:
		return stageResponseComplete
	case auditv1.StagePanic:
		return stagePanic
	}
	return 0
}

func omitMask(d policy.Decision) uint8 {
	var m uint8
	for _, s := range d.OmitStages {
		m |= stageBit(string(s))
	}
	return m
}

// keep estimates whether and with how many bytes a decision writes an event: nothing at None or
// for an omitted stage, no request body below Request, no response body below RequestResponse.
// lower reports that the policy asks for more than was recorded, so bodies may be missing.
func keep(level auditv1.Level, omit uint8, f facts) (written bool, size int64, lower bool) {
	if level == auditv1.LevelNone || omit&f.stage != 0 {
		return false, 0, false
	}
	size = f.size
	rank := policy.LevelRank(level)
	if rank < 2 && f.req > 0 {
		size -= int64(f.req + requestKeyCost)
	}
	if rank < 3 && f.resp > 0 {
		size -= int64(f.resp + responseKeyCost)
	}
	return true, size, rank > policy.LevelRank(f.recorded)
}

type worker struct {
	cand, base *compiled
	engine     Engine
	cache      map[string]*entry
	cacheSize  int
	key        []byte
	ev         rawEvent
	agg        *aggregate
	events     atomic.Int64
	useNames   bool
	// logStart is when the log begins (reader.start).
	logStart *time.Time
}

func newWorker(cand, base *compiled, opts Options) *worker {
	w := &worker{cand: cand, base: base, engine: opts.Engine, cache: map[string]*entry{}, cacheSize: opts.CacheSize}
	w.agg = newAggregate(cand, base, opts.Examples)
	w.useNames = cand.useNames || (base != nil && base.useNames)
	return w
}

func (w *worker) chunk(c chunk) {
	loc := location{File: c.file, Line: c.startLine}
	if c.tooLong {
		w.agg.badLine(loc, "line longer than 256 MiB")
		return
	}
	data := c.data
	var n int64
	for len(data) > 0 {
		nl := bytes.IndexByte(data, '\n')
		var line []byte
		if nl < 0 {
			line, data = data, nil
		} else {
			line, data = data[:nl], data[nl+1:]
		}
		if w.engine == EngineNaive {
			n += w.naiveLine(loc, line)
		} else {
			n += w.line(loc, line)
		}
		loc.Line++
	}
	w.events.Add(n)
}

func blank(line []byte) bool { return len(bytes.TrimSpace(line)) == 0 }

// line handles one line on the fast path and returns the number of events it held.
func (w *worker) line(loc location, line []byte) int64 {
	ev := &w.ev
	if err := scanEvent(line, ev); err != nil {
		if blank(line) {
			return 0
		}
		w.agg.badLine(loc, err.Error())
		return 0
	}
	if string(ev.apiVersion) != eventAPIVersion || string(ev.kind) != eventKind {
		w.agg.otherVersion(loc, ev.str(ev.apiVersion), ev.str(ev.kind))
		return 0
	}
	e := w.lookup(ev)
	f := facts{size: int64(len(line) + 1), stage: stageBit(string(ev.stage)), recorded: levelOf(string(ev.level)), req: ev.requestObject, resp: ev.responseObject}
	w.account(e, f, loc, func() Example {
		return Example{User: e.info.user, Verb: e.info.verb, Resource: e.info.resource, Namespace: ev.str(ev.namespace), Name: ev.str(ev.name), RecordedLevel: string(f.recorded)}
	}, func() time.Time {
		t, _ := time.Parse(time.RFC3339Nano, ev.str(ev.received))
		return t
	})
	return 1
}

// lookup finds the decisions for an event's request, evaluating them on first sight.
func (w *worker) lookup(ev *rawEvent) *entry {
	k := w.key[:0]
	k = appendField(k, ev.verb)
	k = appendField(k, ev.username)
	k = appendField(k, ev.groupsRaw)
	if ev.hasObjectRef {
		k = append(k, 'r')
		k = appendField(k, ev.group)
		k = appendField(k, ev.resource)
		k = appendField(k, ev.subresource)
		k = appendField(k, ev.namespace)
		if w.useNames {
			k = appendField(k, ev.name)
		}
	} else {
		k = append(k, 'n')
		uri := ev.requestURI
		if i := bytes.IndexByte(uri, '?'); i >= 0 {
			uri = uri[:i]
		}
		k = appendField(k, uri)
	}
	w.key = k
	if e, ok := w.cache[string(k)]; ok {
		return e
	}
	if len(w.cache) >= w.cacheSize {
		w.flush()
	}
	req := requestOf(ev)
	e := w.newEntry(req)
	w.cache[string(k)] = e
	return e
}

func appendField(k, v []byte) []byte {
	k = binary.AppendUvarint(k, uint64(len(v)))
	return append(k, v...)
}

func (w *worker) newEntry(req policy.Request) *entry {
	e := &entry{info: describe(req)}
	e.cand = w.cand.eval.Decide(req)
	e.candOmit = omitMask(e.cand)
	if w.base != nil {
		e.hasBase = true
		e.base = w.base.eval.Decide(req)
		e.baseOmit = omitMask(e.base)
	}
	return e
}

// describe names a request for the report and finds its security relevance.
func describe(r policy.Request) reqInfo {
	info := reqInfo{user: r.User, verb: r.Verb, need: relevance.Classify(r), longRunning: longRunning(r)}
	if r.ResourceRequest {
		info.resource = r.Resource
		if r.APIGroup != "" {
			info.resource += "." + r.APIGroup
		}
		if r.Subresource != "" {
			info.resource += "/" + r.Subresource
		}
	} else {
		info.resource = r.Path
	}
	return info
}

// longRunning is kube-apiserver's test for long-running requests (BasicLongRunningRequestCheck
// with the verbs and subresources it is given): only they get a ResponseStarted event.
func longRunning(r policy.Request) bool {
	return r.ResourceRequest && (r.Verb == "watch" || r.Verb == "proxy" || slices.Contains([]string{"attach", "exec", "proxy", "log", "portforward"}, r.Subresource))
}

// countedStages tells at which event a security-relevant request is counted, once, and which
// stages it has then. A long-running request is counted at its ResponseStarted event (it may
// still be running when the log ends), or at its final one if it began before the log did (see
// beganBeforeLog); any other request at its final stage (ResponseComplete or Panic). Every
// request has a RequestReceived event too. It returns 0 for the other events.
func countedStages(info reqInfo, stage uint8, beganBeforeLog func() bool) uint8 {
	switch {
	case stage == stageResponseStarted:
		return stageRequestReceived | stageResponseStarted
	case stage&(stageResponseComplete|stagePanic) != 0 && (!info.longRunning || beganBeforeLog()):
		return stageRequestReceived | stage
	}
	return 0
}

// recordsRequest tells whether a decision (level, omitted stages) writes an event of a request
// that has the given stages, at a level that meets the requirement.
func recordsRequest(need relevance.Requirement, level auditv1.Level, omit, stages uint8) bool {
	if level == auditv1.LevelNone || omit&stages == stages {
		return false
	}
	return need.MetBy(level)
}

// account counts one event of a distinct request.
func (w *worker) account(e *entry, f facts, loc location, example func() Example, received func() time.Time) {
	c := &e.c
	c.Events++
	c.RecordedBytes += f.size
	w.agg.recorded[policy.LevelRank(f.recorded)].Events++
	w.agg.recorded[policy.LevelRank(f.recorded)].RecordedBytes += f.size
	cw, cb, lower := keep(e.cand.Level, e.candOmit, f)
	bw, bb, baseLevel := true, f.size, f.recorded
	if e.hasBase {
		bw, bb, _ = keep(e.base.Level, e.baseOmit, f)
		baseLevel = e.base.Level
	}
	beganBeforeLog := func() bool { return !w.logStart.IsZero() && received().Before(*w.logStart) }
	if stages := countedStages(e.info, f.stage, beganBeforeLog); e.info.need.Relevant() && stages != 0 {
		kept := recordsRequest(e.info.need, e.cand.Level, e.candOmit, stages)
		// Without --against, the baseline is the log, which recorded this event.
		baseKept := e.info.need.MetBy(f.recorded)
		if e.hasBase {
			baseKept = recordsRequest(e.info.need, e.base.Level, e.baseOmit, stages)
		}
		w.agg.relevant(e.info.need.Rule, kept, baseKept, loc, func() Example {
			ex := example()
			ex.Level, ex.DecidedBy, ex.Needs = string(e.cand.Level), w.cand.label(e.cand.Rule), string(e.info.need.Level)
			return ex
		})
	}
	if cw {
		c.Written++
		c.Bytes += cb
		if lower {
			c.LowerBound++
		}
	}
	if bw {
		c.BaseWritten++
		c.BaseBytes += bb
	}
	switch {
	case bw && !cw && e.cand.Level != auditv1.LevelNone:
		c.StageOmitted++
		c.StageBytes += bb
	case bw && !cw:
		c.Dropped++
		c.DroppedBytes += bb
	case cw && !bw:
		c.Added++
		c.AddedBytes += cb
	case cw && bw:
		switch cr, br := policy.LevelRank(e.cand.Level), policy.LevelRank(baseLevel); {
		case cr > br:
			c.LevelUp++
		case cr < br:
			c.LevelDown++
		}
	}
}

// flush moves the counts of every remembered request into the aggregate and forgets them.
func (w *worker) flush() {
	for _, e := range w.cache {
		w.agg.addEntry(e)
	}
	clear(w.cache)
}

// naiveLine is the reference path: the whole line decoded into an audit.k8s.io/v1 Event with
// encoding/json, every event evaluated (no cache).
func (w *worker) naiveLine(loc location, line []byte) int64 {
	if blank(line) {
		return 0
	}
	var ev auditv1.Event
	if err := json.Unmarshal(line, &ev); err != nil {
		w.agg.badLine(loc, "malformed JSON: "+err.Error())
		return 0
	}
	if ev.APIVersion != eventAPIVersion || ev.Kind != eventKind {
		w.agg.otherVersion(loc, ev.APIVersion, ev.Kind)
		return 0
	}
	req := policy.RequestFromEvent(&ev)
	cand := w.cand.eval.Decide(req)
	var base policy.Decision
	if w.base != nil {
		base = w.base.eval.Decide(req)
	}
	k := strings.Join(append([]string{req.Verb, req.User, req.APIGroup, req.Resource, req.Subresource, req.Namespace, req.Name, req.Path, boolString(req.ResourceRequest)}, req.Groups...), "\x00")
	e, ok := w.cache[k]
	if !ok {
		if len(w.cache) >= w.cacheSize {
			w.flush()
		}
		e = &entry{info: describe(req), cand: cand, candOmit: omitMask(cand), hasBase: w.base != nil, base: base, baseOmit: omitMask(base)}
		w.cache[k] = e
	}
	f := facts{size: int64(len(line) + 1), stage: stageBit(string(ev.Stage)), recorded: levelOf(string(ev.Level))}
	if ev.RequestObject != nil {
		f.req = len(ev.RequestObject.Raw)
	}
	if ev.ResponseObject != nil {
		f.resp = len(ev.ResponseObject.Raw)
	}
	w.account(e, f, loc, func() Example {
		var ns, name string
		if ev.ObjectRef != nil {
			ns, name = ev.ObjectRef.Namespace, ev.ObjectRef.Name
		}
		return Example{User: e.info.user, Verb: e.info.verb, Resource: e.info.resource, Namespace: ns, Name: name, RecordedLevel: string(f.recorded)}
	}, func() time.Time { return ev.RequestReceivedTimestamp.Time })
	return 1
}

func boolString(b bool) string {
	if b {
		return "r"
	}
	return "n"
}

// requestOf is the request the fast path evaluates for a scanned event.
func requestOf(ev *rawEvent) policy.Request {
	var ref *policy.ObjectRef
	if ev.hasObjectRef {
		ref = &policy.ObjectRef{
			APIGroup: ev.str(ev.group), APIVersion: ev.str(ev.version), Resource: ev.str(ev.resource),
			Subresource: ev.str(ev.subresource), Namespace: ev.str(ev.namespace), Name: ev.str(ev.name),
		}
	}
	var groups []string
	for _, g := range ev.groups {
		groups = append(groups, ev.str(g))
	}
	return policy.RequestFromFields(ev.str(ev.username), groups, ev.str(ev.verb), ev.str(ev.requestURI), ref)
}
