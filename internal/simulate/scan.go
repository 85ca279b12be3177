package simulate

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
)

// rawEvent holds the fields of one audit event line that simulate needs, as slices of the line
// (string contents without quotes, still escaped when the matching esc flag is set).
type rawEvent struct {
	apiVersion, kind, level, stage, verb, requestURI []byte
	received                                         []byte // requestReceivedTimestamp
	username                                         []byte
	groups                                           [][]byte
	groupsRaw                                        []byte // the whole groups array, for cache keys
	hasObjectRef                                     bool
	group, version, resource, subresource, namespace []byte
	name                                             []byte
	// escaped marks fields that contain backslash escapes and must be decoded.
	escaped bool
	// requestObject and responseObject are the lengths of the bodies' JSON values; 0 if absent.
	requestObject, responseObject int
}

func (ev *rawEvent) reset() {
	groups := ev.groups[:0]
	*ev = rawEvent{groups: groups}
}

var errSyntax = errors.New("malformed JSON")

type syntaxError struct {
	pos int
	msg string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("malformed JSON at byte %d: %s", e.pos+1, e.msg)
}
func (e *syntaxError) Unwrap() error { return errSyntax }

func bad(pos int, msg string) error { return &syntaxError{pos: pos, msg: msg} }

// scanEvent reads the fields simulate needs from one JSON line without decoding the rest: it
// checks the structure of the whole line (balanced objects and arrays, terminated strings) and
// the types of the fields it reads, and skips everything else, bodies included.
func scanEvent(line []byte, ev *rawEvent) error {
	ev.reset()
	i := skipWS(line, 0)
	if i >= len(line) || line[i] != '{' {
		return bad(i, "expected an object")
	}
	i++
	err := scanObject(line, i, func(key []byte, vi int) (int, error) {
		switch string(key) {
		case "apiVersion":
			return readString(line, vi, &ev.apiVersion, &ev.escaped)
		case "kind":
			return readString(line, vi, &ev.kind, &ev.escaped)
		case "level":
			return readString(line, vi, &ev.level, &ev.escaped)
		case "stage":
			return readString(line, vi, &ev.stage, &ev.escaped)
		case "requestReceivedTimestamp":
			return readString(line, vi, &ev.received, &ev.escaped)
		case "verb":
			return readString(line, vi, &ev.verb, &ev.escaped)
		case "requestURI":
			return readString(line, vi, &ev.requestURI, &ev.escaped)
		case "user":
			return scanUser(line, vi, ev)
		case "objectRef":
			return scanObjectRef(line, vi, ev)
		case "requestObject", "responseObject":
			end, err := skipValue(line, vi)
			if err != nil {
				return end, err
			}
			n := end - vi
			if isNull(line[vi:end]) {
				n = 0
			}
			if key[2] == 'q' {
				ev.requestObject = n
			} else {
				ev.responseObject = n
			}
			return end, nil
		}
		return skipValue(line, vi)
	}, &i)
	if err != nil {
		return err
	}
	if j := skipWS(line, i); j != len(line) {
		return bad(j, "data after the event")
	}
	return nil
}

func isNull(b []byte) bool { return len(b) == 4 && string(b) == "null" }

// scanObject walks an object whose '{' is at i-1, calling field for every key with the index of
// its value; field returns the index after the value. *pos is set after the closing '}'.
func scanObject(b []byte, i int, field func(key []byte, vi int) (int, error), pos *int) error {
	i = skipWS(b, i)
	if i < len(b) && b[i] == '}' {
		*pos = i + 1
		return nil
	}
	for {
		i = skipWS(b, i)
		var key []byte
		esc := false
		var err error
		if i, err = readString(b, i, &key, &esc); err != nil {
			return err
		}
		if esc {
			key = unescape(key)
		}
		i = skipWS(b, i)
		if i >= len(b) || b[i] != ':' {
			return bad(i, "expected ':'")
		}
		i = skipWS(b, i+1)
		if i, err = field(key, i); err != nil {
			return err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return bad(i, "unexpected end of line")
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			*pos = i + 1
			return nil
		default:
			return bad(i, "expected ',' or '}'")
		}
	}
}

func scanUser(b []byte, i int, ev *rawEvent) (int, error) {
	if i+4 <= len(b) && isNull(b[i:i+4]) {
		return i + 4, nil
	}
	if i >= len(b) || b[i] != '{' {
		return i, bad(i, "user: expected an object")
	}
	end := 0
	err := scanObject(b, i+1, func(key []byte, vi int) (int, error) {
		switch string(key) {
		case "username":
			return readString(b, vi, &ev.username, &ev.escaped)
		case "groups":
			return scanGroups(b, vi, ev)
		}
		return skipValue(b, vi)
	}, &end)
	return end, err
}

func scanGroups(b []byte, i int, ev *rawEvent) (int, error) {
	ev.groups = ev.groups[:0]
	ev.groupsRaw = nil
	if i+4 <= len(b) && isNull(b[i:i+4]) {
		return i + 4, nil
	}
	if i >= len(b) || b[i] != '[' {
		return i, bad(i, "user.groups: expected an array")
	}
	start := i
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		ev.groupsRaw = b[start : i+1]
		return i + 1, nil
	}
	for {
		i = skipWS(b, i)
		var g []byte
		var err error
		if i, err = readString(b, i, &g, &ev.escaped); err != nil {
			return i, err
		}
		ev.groups = append(ev.groups, g)
		i = skipWS(b, i)
		if i >= len(b) {
			return i, bad(i, "unexpected end of line")
		}
		switch b[i] {
		case ',':
			i++
		case ']':
			ev.groupsRaw = b[start : i+1]
			return i + 1, nil
		default:
			return i, bad(i, "expected ',' or ']'")
		}
	}
}

func scanObjectRef(b []byte, i int, ev *rawEvent) (int, error) {
	ev.hasObjectRef = false
	ev.group, ev.version, ev.resource, ev.subresource, ev.namespace, ev.name = nil, nil, nil, nil, nil, nil
	if i+4 <= len(b) && isNull(b[i:i+4]) {
		return i + 4, nil
	}
	if i >= len(b) || b[i] != '{' {
		return i, bad(i, "objectRef: expected an object")
	}
	ev.hasObjectRef = true
	end := 0
	err := scanObject(b, i+1, func(key []byte, vi int) (int, error) {
		switch string(key) {
		case "apiGroup":
			return readString(b, vi, &ev.group, &ev.escaped)
		case "apiVersion":
			return readString(b, vi, &ev.version, &ev.escaped)
		case "resource":
			return readString(b, vi, &ev.resource, &ev.escaped)
		case "subresource":
			return readString(b, vi, &ev.subresource, &ev.escaped)
		case "namespace":
			return readString(b, vi, &ev.namespace, &ev.escaped)
		case "name":
			return readString(b, vi, &ev.name, &ev.escaped)
		}
		return skipValue(b, vi)
	}, &end)
	return end, err
}

// readString reads a JSON string (or null, read as empty) at i into *out (contents without
// quotes) and returns the index after it. *esc is set when the contents hold escapes.
func readString(b []byte, i int, out *[]byte, esc *bool) (int, error) {
	if i >= len(b) {
		return i, bad(i, "unexpected end of line")
	}
	if b[i] != '"' {
		if i+4 <= len(b) && isNull(b[i:i+4]) {
			*out = nil
			return i + 4, nil
		}
		return i, bad(i, "expected a string")
	}
	end, hasEsc, err := stringEnd(b, i+1)
	if err != nil {
		return end, err
	}
	*out = b[i+1 : end-1]
	if hasEsc {
		*esc = true
	}
	return end, nil
}

// stringEnd returns the index after the closing quote of a string whose contents start at i,
// and whether the string holds escapes.
func stringEnd(b []byte, i int) (int, bool, error) {
	hasEsc := false
	for {
		i = quoteOrBackslash(b, i)
		if i >= len(b) {
			return len(b), hasEsc, bad(len(b), "unterminated string")
		}
		if b[i] == '"' {
			return i + 1, hasEsc, nil
		}
		hasEsc = true
		i += 2
	}
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// quoteOrBackslash returns the index of the first '"' or '\\' at or after i, or len(b). It tests
// eight bytes at a time: bodies are mostly short strings, too short for bytes.IndexByte to pay.
func quoteOrBackslash(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		v := binary.LittleEndian.Uint64(b[i:])
		q := v ^ (lsb * '"')
		s := v ^ (lsb * '\\')
		// A zero byte in q or s is a quote or a backslash; the lowest flagged byte is exact.
		if m := ((q-lsb)&^q | (s-lsb)&^s) & msb; m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c == '"' || c == '\\' {
			return i
		}
	}
	return i
}

// skipValue returns the index after the JSON value at i, checking that objects and arrays are
// balanced and strings terminated.
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return i, bad(i, "unexpected end of line")
	}
	switch c := b[i]; c {
	case '"':
		end, _, err := stringEnd(b, i+1)
		return end, err
	case '{', '[':
		return skipNested(b, i)
	default:
		if !isScalarStart(c) {
			return i, bad(i, "unexpected character")
		}
		j := i + 1
		for j < len(b) && !isDelim(b[j]) {
			j++
		}
		return j, nil
	}
}

func isScalarStart(c byte) bool {
	return c == 't' || c == 'f' || c == 'n' || c == '-' || (c >= '0' && c <= '9')
}

func isDelim(c byte) bool {
	return c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

// skipNested skips an object or array starting at i.
func skipNested(b []byte, i int) (int, error) {
	var stack [64]byte
	deep := stack[:0]
	for i < len(b) {
		switch c := b[i]; c {
		case '"':
			end, _, err := stringEnd(b, i+1)
			if err != nil {
				return end, err
			}
			i = end
			continue
		case '{':
			deep = append(deep, '}')
		case '[':
			deep = append(deep, ']')
		case '}', ']':
			if len(deep) == 0 || deep[len(deep)-1] != c {
				return i, bad(i, "unbalanced "+string(c))
			}
			deep = deep[:len(deep)-1]
			if len(deep) == 0 {
				return i + 1, nil
			}
		}
		i++
	}
	return i, bad(i, "unexpected end of line")
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// unescape decodes the contents of a JSON string that holds escapes. Invalid escapes are kept
// as they are (the line is still counted: its structure is valid).
func unescape(raw []byte) []byte {
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(quoted, '"')
	quoted = append(quoted, raw...)
	quoted = append(quoted, '"')
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return raw
	}
	return []byte(s)
}

// str returns a field as a string, decoding escapes when the event has any.
func (ev *rawEvent) str(b []byte) string {
	if ev.escaped && bytes.IndexByte(b, '\\') >= 0 {
		return string(unescape(b))
	}
	return string(b)
}
