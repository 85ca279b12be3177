package advise

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/manifest"
	"github.com/kaudit/kaudit/internal/policy"
)

// WriteYAML writes the suggested modules as manifests ready to apply, each rule under a comment
// that says what it saves and stops recording, after a header that summarizes the change.
func (a *Advice) WriteYAML(w io.Writer) error {
	var b bytes.Buffer
	a.writeHeader(&b)
	writeManifests(&b, a.Modules)
	_, err := w.Write(b.Bytes())
	return err
}

func (a *Advice) writeHeader(b *bytes.Buffer) {
	rules := 0
	for _, m := range a.Modules {
		rules += len(m.Rules)
	}
	s := a.Summary
	comment(b, "", fmt.Sprintf("kaudit advise: %s in %s for %s, from %d audit events of %s.",
		count(rules, "rule"), count(len(a.Modules), "module"), a.Start, a.Events, count(len(a.Inputs), "log")))
	comment(b, "", fmt.Sprintf("The starting policy writes %d events, %s; with these modules %d events, %s (%s).",
		s.WrittenBefore, size(s.BytesBefore), s.WrittenAfter, size(s.BytesAfter), change(s.BytesAfter, s.BytesBefore)))
	comment(b, "", "Security-relevant requests (R1-R6 of docs/modules.md) recorded at the required level, before and after:")
	for _, r := range s.Security {
		comment(b, "", fmt.Sprintf("  %s %s: %d and %d of %d", r.Rule, r.What, r.Before, r.After, r.Requests))
	}
	comment(b, "", "No rule lowers a security-relevant request of the logs or adds a guardrail violation; writes are "+
		"dropped only with --drop-writes.")
	if len(a.BrokenByStart) > 0 {
		comment(b, "", fmt.Sprintf("The starting policy already breaks the guardrails %s: no rule lowers a request of the logs in their scope.",
			strings.Join(a.BrokenByStart, ", ")))
	}
	if len(a.Modules) == 0 {
		comment(b, "", "Nothing to suggest: every request the starting policy records is security-relevant, a write, or already as low as a rule here could make it.")
		return
	}
	comment(b, "", "Apply them next to the starting modules, or look first: kaudit render STARTING-MODULES THIS-FILE.")
}

// writeManifests writes the modules as YAML documents.
func writeManifests(b *bytes.Buffer, modules []Module) {
	for _, m := range modules {
		b.WriteString("---\n")
		var saved, before int64
		for _, r := range m.Rules {
			saved, before = saved+r.BytesSaved, before+r.BytesBefore
		}
		comment(b, "", fmt.Sprintf("%s: saves %s of the %s its requests took.", m.Identity, size(saved), size(before)))
		spec := m.Manifest.Spec
		fmt.Fprintf(b, "apiVersion: %s\nkind: %s\nmetadata:\n  name: %s\nspec:\n  order: %d\n  description: %s\n  rules:\n",
			m.Manifest.APIVersion, m.Manifest.Kind, quote(m.Manifest.Name), spec.Order, quote(spec.Description))
		for i, r := range spec.Rules {
			s := m.Rules[i]
			comment(b, "  ", fmt.Sprintf("Saves %s of %s (%s) and %d of %d written events (%d in the logs). %s",
				size(s.BytesSaved), size(s.BytesBefore), percent(s.BytesSaved, s.BytesBefore), s.WrittenBefore-s.WrittenAfter, s.WrittenBefore, s.Events, s.Stops))
			writeRule(b, r)
		}
	}
}

func writeRule(b *bytes.Buffer, r v1alpha1.PolicyRule) {
	fmt.Fprintf(b, "  - level: %s\n", r.Level)
	list(b, "    ", "users", r.Users)
	list(b, "    ", "userGroups", r.UserGroups)
	list(b, "    ", "verbs", r.Verbs)
	if len(r.Resources) > 0 {
		b.WriteString("    resources:\n")
		for _, gr := range r.Resources {
			fmt.Fprintf(b, "    - group: %s\n", quote(gr.Group))
			list(b, "      ", "resources", gr.Resources)
		}
	}
	list(b, "    ", "namespaces", r.Namespaces)
	list(b, "    ", "nonResourceURLs", r.NonResourceURLs)
}

// list writes a flow sequence of quoted strings: YAML reads JSON strings as they are.
func list(b *bytes.Buffer, indent, key string, values []string) {
	if len(values) == 0 {
		return
	}
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = quote(v)
	}
	fmt.Fprintf(b, "%s%s: [%s]\n", indent, key, strings.Join(quoted, ", "))
}

func quote(s string) string {
	q, _ := json.Marshal(s) // a string always encodes
	return string(q)
}

// comment writes text as comment lines of at most about 100 characters.
func comment(b *bytes.Buffer, indent, text string) {
	lead := indent + "# "
	line := lead
	for _, word := range strings.Split(text, " ") {
		if len(line) > len(lead) && len(line)+1+len(word) > 100 {
			b.WriteString(strings.TrimRight(line, " ") + "\n")
			line = lead + "  "
		}
		if len(line) > len(lead) && !strings.HasSuffix(line, " ") {
			line += " "
		}
		line += word
	}
	b.WriteString(strings.TrimRight(line, " ") + "\n")
}

// checkManifests reads the written manifests back as `kaudit render` reads them (CRD schema,
// defaults and CEL rules) and merges them with the starting modules: the result must be the
// policy that was checked, byte for byte.
func (a *advisor) checkManifests(advice *Advice, merged *policy.Merged) error {
	var b bytes.Buffer
	writeManifests(&b, advice.Modules)
	set, err := manifest.Read(bytes.NewReader(b.Bytes()), manifest.Stdin)
	if err != nil {
		return fmt.Errorf("the suggested manifests do not read back (a bug): %w", err)
	}
	if len(set.Modules) != len(advice.Modules) {
		return fmt.Errorf("the suggested manifests read back as %d modules, not %d (a bug)", len(set.Modules), len(advice.Modules))
	}
	modules := append([]policy.Module{}, a.opts.Start.Modules...)
	for _, m := range set.Modules {
		modules = append(modules, policy.Module{Name: m.Name, Spec: m.Spec})
	}
	again, err := policy.Merge(modules, a.opts.Start.Settings)
	if err != nil {
		return fmt.Errorf("the suggested manifests do not merge (a bug): %w", err)
	}
	if !bytes.Equal(again.Render(), merged.Render()) {
		return fmt.Errorf("the suggested manifests merge into another policy than the one checked (a bug)")
	}
	return nil
}

// count writes "1 rule", "2 rules".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// size writes bytes as simulate's report does.
func size(n int64) string {
	switch {
	case n >= 1e9 || n <= -1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6 || n <= -1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3 || n <= -1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

func percent(part, whole int64) string {
	if whole == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(part)/float64(whole))
}

func change(now, before int64) string {
	if before == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%+.1f%%", 100*(float64(now)-float64(before))/float64(before))
}
