package simulate

import (
	"bytes"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
)

// Line is one audit log line read by simulate's fast scanner, for callers that read a log line by
// line themselves (the node agent's live attribution). It reads the same fields, with the same
// checks, as Run does, and recovers the same request. One Line is reused from one line to the
// next; what it returns is a copy.
type Line struct {
	ev   rawEvent
	line []byte
}

// Scan reads the fields of line (without its newline) that decide the policy, checking that the
// whole line is one well-formed JSON object. The error describes malformed JSON.
func (l *Line) Scan(line []byte) error {
	l.line = line
	return scanEvent(line, &l.ev)
}

// IsEvent tells whether the scanned line is an audit.k8s.io/v1 Event, the only kind Run counts.
func (l *Line) IsEvent() bool {
	return string(l.ev.apiVersion) == eventAPIVersion && string(l.ev.kind) == eventKind
}

// Request is the request the apiserver evaluated its policy on.
func (l *Line) Request() policy.Request { return requestOf(&l.ev) }

// Level is the level the event was recorded at; "" when it is not one of the four levels.
func (l *Line) Level() auditv1.Level {
	switch auditv1.Level(l.ev.level) {
	case auditv1.LevelNone:
		return auditv1.LevelNone
	case auditv1.LevelMetadata:
		return auditv1.LevelMetadata
	case auditv1.LevelRequest:
		return auditv1.LevelRequest
	case auditv1.LevelRequestResponse:
		return auditv1.LevelRequestResponse
	}
	return ""
}

// Stage is the stage the event was written at; "" when it is not one of the four stages.
func (l *Line) Stage() auditv1.Stage {
	switch auditv1.Stage(l.ev.stage) {
	case auditv1.StageRequestReceived:
		return auditv1.StageRequestReceived
	case auditv1.StageResponseStarted:
		return auditv1.StageResponseStarted
	case auditv1.StageResponseComplete:
		return auditv1.StageResponseComplete
	case auditv1.StagePanic:
		return auditv1.StagePanic
	}
	return ""
}

// AppendKey appends to dst a key that two lines share only when every policy decides their
// requests alike: the fields a policy matches on, each framed by its length, with the object's
// name only when names is set (for policies with resourceNames). It is the key of Run's cache.
func (l *Line) AppendKey(dst []byte, names bool) []byte {
	ev := &l.ev
	dst = appendField(dst, ev.verb)
	dst = appendField(dst, ev.username)
	dst = appendField(dst, ev.groupsRaw)
	if !ev.hasObjectRef {
		dst = append(dst, 'n')
		return appendField(dst, uriPath(ev.requestURI))
	}
	dst = append(dst, 'r')
	dst = appendField(dst, ev.group)
	dst = appendField(dst, ev.resource)
	dst = appendField(dst, ev.subresource)
	dst = appendField(dst, ev.namespace)
	if names {
		dst = appendField(dst, ev.name)
	}
	return dst
}

func uriPath(uri []byte) []byte {
	for i, c := range uri {
		if c == '?' {
			return uri[:i]
		}
	}
	return uri
}

// Time is when the event was written: its stageTimestamp, or its requestReceivedTimestamp when
// it has none. ok is false when neither is a valid RFC 3339 time. Only top-level fields count: a
// body may hold keys of the same name.
func (l *Line) Time() (t time.Time, ok bool) {
	if ts := l.tailStageTimestamp(); ts != nil {
		if t, err := time.Parse(time.RFC3339Nano, string(ts)); err == nil {
			return t, true
		}
	}
	var stage, received []byte
	if !l.scanTop(0, func(key []byte, vi int) (int, error) {
		switch string(key) {
		case "stageTimestamp":
			return l.readString(vi, &stage)
		case "requestReceivedTimestamp":
			return l.readString(vi, &received)
		}
		return skipValue(l.line, vi)
	}) {
		return time.Time{}, false
	}
	for _, ts := range [][]byte{stage, received} {
		if t, err := time.Parse(time.RFC3339Nano, string(ts)); len(ts) > 0 && err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// stageTimestampMember is how kube-apiserver writes the field, after the bodies and before the
// annotations only.
var stageTimestampMember = []byte(`,"stageTimestamp":`)

// tailStageTimestamp finds the top-level stageTimestamp without scanning the bodies again: the
// last `,"stageTimestamp":` in the line is a key (Scan checked the line, so the quote after the
// comma opens a string), and reading the members from it on must end the line, which only the
// top-level object does. Nil when that does not hold; Time then scans the whole line.
func (l *Line) tailStageTimestamp() []byte {
	c := bytes.LastIndex(l.line, stageTimestampMember)
	if c < 0 {
		return nil
	}
	var ts []byte
	if !l.scanTop(c+1, func(key []byte, vi int) (int, error) {
		if string(key) == "stageTimestamp" && ts == nil {
			return l.readString(vi, &ts)
		}
		return skipValue(l.line, vi)
	}) {
		return nil
	}
	return ts
}

// scanTop reads the members of the top-level object from i on (0: from its '{'), and tells
// whether they end the line.
func (l *Line) scanTop(i int, field func(key []byte, vi int) (int, error)) bool {
	if i == 0 {
		i = skipWS(l.line, 0)
		if i >= len(l.line) || l.line[i] != '{' {
			return false
		}
		i++
	}
	end := 0
	if err := scanObject(l.line, i, field, &end); err != nil {
		return false
	}
	return skipWS(l.line, end) == len(l.line)
}

func (l *Line) readString(i int, out *[]byte) (int, error) {
	esc := false
	return readString(l.line, i, out, &esc)
}
