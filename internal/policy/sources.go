package policy

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// RenderedSources reads the source comments that Merged.Render writes above each rule
// ("# module <name>, rule <i>", "# namespaced module <namespace>/<name>, rule <i>",
// "# default: ..."). It returns nil unless every one of the
// policy's n rules has one: a policy written by someone else, or edited by hand.
func RenderedSources(rendered []byte, n int) []RuleSource {
	var out []RuleSource
	var next *RuleSource
	inRules := false
	sc := bufio.NewScanner(bytes.NewReader(rendered))
	sc.Buffer(nil, len(rendered)+1)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !inRules:
			inRules = line == "rules:"
		case strings.HasPrefix(line, "# default:"):
			next = &RuleSource{}
		case strings.HasPrefix(line, "# module "), strings.HasPrefix(line, "# namespaced module "):
			src, ok := parseSource(line)
			if !ok {
				return nil
			}
			next = &src
		case strings.HasPrefix(line, "- "):
			if next == nil {
				return nil
			}
			out = append(out, *next)
			next = nil
		}
	}
	if sc.Err() != nil || len(out) != n {
		return nil
	}
	return out
}

// parseSource reads one module comment of a rendered policy.
func parseSource(line string) (RuleSource, bool) {
	id, namespaced := strings.CutPrefix(line, "# namespaced module ")
	if !namespaced {
		id = strings.TrimPrefix(line, "# module ")
	}
	id, idx, ok := strings.Cut(id, ", rule ")
	i, err := strconv.Atoi(idx)
	if !ok || err != nil || id == "" {
		return RuleSource{}, false
	}
	src := RuleSource{Module: id, Rule: i}
	if namespaced {
		ns, name, ok := strings.Cut(id, "/")
		if !ok || ns == "" || name == "" {
			return RuleSource{}, false
		}
		src.Namespace, src.Module = ns, name
	}
	return src, true
}
