package staticpod

import (
	"bytes"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// text is a YAML document as lines plus its parse tree.
type text struct {
	lines []string // each with its "\n", except maybe the last
	root  *yaml.Node
	// edits are applied in bytes(): insertions before line i (1-based) and replaced lines.
	inserts  map[int][]string
	replaced map[int]string
}

func parseText(src []byte) (*text, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("manifest is not valid YAML: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("manifest is not a single YAML mapping")
	}
	if bytes.Contains(src, []byte("\r\n")) {
		return nil, fmt.Errorf("manifest has CRLF line endings, which the editor does not support")
	}
	t := &text{root: doc.Content[0], inserts: map[int][]string{}, replaced: map[int]string{}}
	rest := string(src)
	for rest != "" {
		i := strings.IndexByte(rest, '\n')
		if i < 0 {
			t.lines = append(t.lines, rest)
			break
		}
		t.lines = append(t.lines, rest[:i+1])
		rest = rest[i+1:]
	}
	return t, nil
}

func (t *text) lineCount() int { return len(t.lines) }

func (t *text) insertBefore(line int, s string) { t.inserts[line] = append(t.inserts[line], s) }

func (t *text) insertAfter(line int, s string) {
	if line >= 1 && line <= len(t.lines) && !strings.HasSuffix(t.lines[line-1], "\n") {
		t.lines[line-1] += "\n"
	}
	t.insertBefore(line+1, s)
}

func (t *text) replaceLine(line int, s string) { t.replaced[line] = s }

// removeLines removes lines from to to, both included.
func (t *text) removeLines(from, to int) {
	for l := from; l <= to; l++ {
		t.replaced[l] = ""
	}
}

// replaceScalar replaces a one-line scalar, keeping what precedes it and its line comment.
func (t *text) replaceScalar(n *yaml.Node, value string) error {
	if n.Kind != yaml.ScalarNode || n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return fmt.Errorf("line %d: unsupported scalar style", n.Line)
	}
	l := t.lines[n.Line-1]
	prefix := l[:n.Column-1]
	nl := ""
	if strings.HasSuffix(l, "\n") {
		nl = "\n"
	}
	comment := ""
	if n.LineComment != "" {
		comment = " " + n.LineComment
	}
	t.replaceLine(n.Line, prefix+scalar(value)+comment+nl)
	return nil
}

// dashAt reports whether line has "- " at column col (0-based).
func (t *text) dashAt(line, col int) bool {
	l := t.lines[line-1]
	return len(l) > col+1 && l[col] == '-' && l[col+1] == ' ' && strings.TrimSpace(l[:col]) == ""
}

// extent is the last line of node n: following lines belong to n while they are indented deeper
// than indent, and so do blank lines followed by such a line (inside a block scalar).
func (t *text) extent(n *yaml.Node, indent int) int {
	last := maxLine(n)
	for next := last; next < len(t.lines); next++ {
		l := t.lines[next]
		if strings.TrimSpace(l) == "" {
			continue
		}
		if len(l)-len(strings.TrimLeft(l, " ")) <= indent {
			break
		}
		last = next + 1
	}
	return last
}

func maxLine(n *yaml.Node) int {
	m := n.Line
	for _, c := range n.Content {
		m = max(m, maxLine(c))
	}
	return m
}

func (t *text) bytes() []byte {
	var b bytes.Buffer
	for i := 1; i <= len(t.lines)+1; i++ {
		for _, s := range t.inserts[i] {
			b.WriteString(s)
		}
		if i > len(t.lines) {
			break
		}
		if r, ok := t.replaced[i]; ok {
			b.WriteString(r)
		} else {
			b.WriteString(t.lines[i-1])
		}
	}
	return b.Bytes()
}

func (t *text) spec() *yaml.Node {
	_, s := mapGet(t.root, "spec")
	if s == nil || s.Kind != yaml.MappingNode || isFlow(s) || len(s.Content) == 0 {
		return nil
	}
	return s
}

func (t *text) container() (*yaml.Node, error) {
	s := t.spec()
	if s == nil {
		return nil, fmt.Errorf("the manifest has no block mapping spec")
	}
	_, cs := mapGet(s, "containers")
	if cs == nil || cs.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("the manifest has no spec.containers list")
	}
	for _, c := range cs.Content {
		if _, n := mapGet(c, "name"); n != nil && n.Value == APIServerContainer {
			if isFlow(c) || len(c.Content) == 0 {
				return nil, fmt.Errorf("line %d: the %s container is not a block mapping", c.Line, APIServerContainer)
			}
			return c, nil
		}
	}
	return nil, fmt.Errorf("the manifest has no container named %s", APIServerContainer)
}

func mapGet(m *yaml.Node, key string) (k, v *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

func isFlow(n *yaml.Node) bool { return n.Style&yaml.FlowStyle != 0 }

func line(preferred, fallback *yaml.Node) int {
	if preferred != nil {
		return preferred.Line
	}
	return fallback.Line
}

// scalar renders a string as a YAML scalar, plain where YAML reads it back as the same string
// and quoted otherwise (a hash of digits only would otherwise read as a number).
func scalar(s string) string {
	b, err := yaml.Marshal(s)
	if err != nil {
		return fmt.Sprintf("%q", s)
	}
	out := strings.TrimSuffix(string(b), "\n")
	if strings.Contains(out, "\n") {
		return fmt.Sprintf("%q", s)
	}
	return out
}
