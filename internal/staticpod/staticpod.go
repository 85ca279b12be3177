package staticpod

import (
	"bytes"
	"fmt"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	sigsyaml "sigs.k8s.io/yaml"
)

// AnnotationPolicyHash is the static pod annotation whose change makes kubelet restart
// kube-apiserver (SPEC Decisions: Restart and rollback).
const AnnotationPolicyHash = "audit.kaudit.io/policy-hash"

// APIServerContainer is the name of the apiserver container in kubeadm's manifest.
const APIServerContainer = "kube-apiserver"

// The manifest edits below change the text of the manifest line by line, guided by the
// positions of a YAML parse, so that comments, key order, quoting and indentation of everything
// they do not touch stay byte for byte as they were. Every edit is checked afterwards: the edited
// manifest must decode to the same Pod as the original with exactly the intended change applied
// (see verifyEdit), so a layout this editor does not understand gives an error, never a wrong
// manifest.

// ParsePod decodes a static pod manifest strictly.
func ParsePod(manifest []byte) (*corev1.Pod, error) {
	var pod corev1.Pod
	if err := sigsyaml.UnmarshalStrict(manifest, &pod); err != nil {
		return nil, fmt.Errorf("manifest does not parse as a Pod: %w", err)
	}
	if pod.Kind != "Pod" {
		return nil, fmt.Errorf("manifest is a %q, not a Pod", pod.Kind)
	}
	return &pod, nil
}

// SetAnnotation returns the manifest with metadata.annotations[key] = value.
func SetAnnotation(manifest []byte, key, value string) ([]byte, error) {
	out, err := setAnnotation(manifest, key, value)
	if err != nil {
		return nil, fmt.Errorf("setting annotation %s: %w", key, err)
	}
	return out, verifyEdit(manifest, out, func(p *corev1.Pod) error {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[key] = value
		return nil
	})
}

// Annotation reads metadata.annotations[key] from a manifest.
func Annotation(manifest []byte, key string) (string, error) {
	pod, err := ParsePod(manifest)
	if err != nil {
		return "", err
	}
	return pod.Annotations[key], nil
}

func setAnnotation(src []byte, key, value string) ([]byte, error) {
	t, err := parseText(src)
	if err != nil {
		return nil, err
	}
	mk, meta := mapGet(t.root, "metadata")
	if meta == nil || meta.Kind != yaml.MappingNode || isFlow(meta) || len(meta.Content) == 0 {
		return nil, fmt.Errorf("line %d: metadata is not a block mapping", line(mk, t.root))
	}
	ak, ann := mapGet(meta, "annotations")
	switch {
	case ann == nil:
		// No annotations: add the block as metadata's first key, as kubeadm orders it.
		first := meta.Content[0]
		ind := strings.Repeat(" ", first.Column-1)
		t.insertBefore(first.Line, ind+"annotations:\n"+ind+"  "+key+": "+scalar(value)+"\n")
	case ann.Kind == yaml.ScalarNode && ann.Tag == "!!null", ann.Kind == yaml.MappingNode && len(ann.Content) == 0:
		// "annotations:", "annotations: null" or "annotations: {}" on one line.
		if ann.Line != ak.Line {
			return nil, fmt.Errorf("line %d: unsupported layout of metadata.annotations", ak.Line)
		}
		ind := strings.Repeat(" ", ak.Column-1)
		t.replaceLine(ak.Line, ind+"annotations:\n"+ind+"  "+key+": "+scalar(value)+"\n")
	case ann.Kind == yaml.MappingNode && !isFlow(ann):
		if _, v := mapGet(ann, key); v != nil {
			if err := t.replaceScalar(v, value); err != nil {
				return nil, err
			}
			break
		}
		last := ann.Content[len(ann.Content)-1]
		ind := strings.Repeat(" ", ann.Content[0].Column-1)
		t.insertAfter(t.extent(last, ann.Content[0].Column-1), ind+key+": "+scalar(value)+"\n")
	default:
		return nil, fmt.Errorf("line %d: metadata.annotations is not a block mapping", ak.Line)
	}
	return t.bytes(), nil
}

// FlagSettings are the apiserver flags kaudit manages when spec.manageAPIServerFlags is true.
type FlagSettings struct {
	// PolicyFile is --audit-policy-file, a host path mounted at the same path in the pod.
	PolicyFile string
	// LogPath is --audit-log-path, likewise.
	LogPath   string
	MaxAge    int32
	MaxBackup int32
	MaxSize   int32
}

// Volume names kaudit adds when it manages the flags.
const (
	VolumePolicy = "kaudit-audit-policy"
	VolumeLog    = "kaudit-audit-log"
)

func (s FlagSettings) flags() [][2]string {
	return [][2]string{
		{"--audit-log-maxage", fmt.Sprint(s.MaxAge)},
		{"--audit-log-maxbackup", fmt.Sprint(s.MaxBackup)},
		{"--audit-log-maxsize", fmt.Sprint(s.MaxSize)},
		{"--audit-log-path", s.LogPath},
		{"--audit-policy-file", s.PolicyFile},
	}
}

// EnsureFlags returns the manifest with the audit flags of s set on the kube-apiserver
// container and hostPath directory volumes mounted for the policy and the log. It never touches
// any other flag, and is idempotent: a manifest that already has them comes back unchanged.
func EnsureFlags(manifest []byte, s FlagSettings) ([]byte, error) {
	if !path.IsAbs(s.PolicyFile) || !path.IsAbs(s.LogPath) {
		return nil, fmt.Errorf("audit policy file %q and log path %q must be absolute", s.PolicyFile, s.LogPath)
	}
	out := manifest
	var err error
	for _, f := range s.flags() {
		if out, err = ensureFlag(out, f[0], f[1]); err != nil {
			return nil, fmt.Errorf("setting flag %s: %w", f[0], err)
		}
	}
	mounts := []struct {
		name, dir string
		readOnly  bool
	}{
		{VolumePolicy, path.Dir(s.PolicyFile), true},
		{VolumeLog, path.Dir(s.LogPath), false},
	}
	for _, m := range mounts {
		if out, err = ensureHostPathMount(out, m.name, m.dir, m.readOnly); err != nil {
			return nil, fmt.Errorf("mounting %s: %w", m.dir, err)
		}
	}
	return out, verifyEdit(manifest, out, func(p *corev1.Pod) error {
		c := apiserverContainer(p)
		for _, f := range s.flags() {
			setFlag(c, f[0], f[1])
		}
		for _, m := range mounts {
			addMount(p, c, m.name, m.dir, m.readOnly)
		}
		return nil
	})
}

// setFlag and addMount are the semantic meaning of the text edits, used to verify them.
func setFlag(c *corev1.Container, flag, value string) {
	for _, list := range []*[]string{&c.Command, &c.Args} {
		for i, a := range *list {
			if strings.HasPrefix(a, flag+"=") {
				(*list)[i] = flag + "=" + value
				return
			}
		}
	}
	list := &c.Command
	if !hasFlags(c.Command) && hasFlags(c.Args) {
		list = &c.Args
	}
	item := flag + "=" + value
	at := len(*list)
	for i, a := range *list {
		if i > 0 && strings.HasPrefix(a, "--") && a > item {
			at = i
			break
		}
	}
	*list = slices.Insert(*list, at, item)
}

func addMount(p *corev1.Pod, c *corev1.Container, name, dir string, readOnly bool) {
	volume, exists := hostPathVolume(p, dir)
	if !exists {
		volume = name
	}
	if mountFor(c, dir) == nil {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: volume, MountPath: dir, ReadOnly: readOnly})
	}
	if exists {
		return
	}
	t := corev1.HostPathDirectoryOrCreate
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &t}}})
}

func mountFor(c *corev1.Container, dir string) *corev1.VolumeMount {
	for i, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) == dir {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func hasFlags(list []string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.HasPrefix(s, "--") })
}

func apiserverContainer(p *corev1.Pod) *corev1.Container {
	for i, c := range p.Spec.Containers {
		if c.Name == APIServerContainer {
			return &p.Spec.Containers[i]
		}
	}
	return nil
}

func ensureFlag(src []byte, flag, value string) ([]byte, error) {
	t, err := parseText(src)
	if err != nil {
		return nil, err
	}
	c, err := t.container()
	if err != nil {
		return nil, err
	}
	_, cmd := mapGet(c, "command")
	_, args := mapGet(c, "args")
	for _, list := range []*yaml.Node{cmd, args} {
		if list == nil {
			continue
		}
		if list.Kind != yaml.SequenceNode || isFlow(list) {
			return nil, fmt.Errorf("line %d: command/args is not a block sequence", list.Line)
		}
		for _, item := range list.Content {
			if item.Kind != yaml.ScalarNode {
				continue
			}
			if item.Value == flag {
				return nil, fmt.Errorf("line %d: %s is given as a separate argument; write it as %s=VALUE", item.Line, flag, flag)
			}
			if strings.HasPrefix(item.Value, flag+"=") {
				if item.Value == flag+"="+value {
					return src, nil
				}
				if err := t.replaceScalar(item, flag+"="+value); err != nil {
					return nil, err
				}
				return t.bytes(), nil
			}
		}
	}
	list := cmd
	if list == nil || (!nodeHasFlags(cmd) && nodeHasFlags(args)) {
		list = args
	}
	if list == nil || len(list.Content) == 0 {
		return nil, fmt.Errorf("line %d: the %s container has no command or args to add %s to", c.Line, APIServerContainer, flag)
	}
	item := flag + "=" + value
	dash := list.Content[0].Column - 3
	if dash < 0 || !t.dashAt(list.Content[0].Line, dash) {
		return nil, fmt.Errorf("line %d: unsupported layout of the command list", list.Line)
	}
	text := strings.Repeat(" ", dash) + "- " + scalar(item) + "\n"
	for i, n := range list.Content {
		if i > 0 && strings.HasPrefix(n.Value, "--") && n.Value > item {
			t.insertBefore(n.Line, text)
			return t.bytes(), nil
		}
	}
	t.insertAfter(t.extent(list.Content[len(list.Content)-1], dash), text)
	return t.bytes(), nil
}

func nodeHasFlags(list *yaml.Node) bool {
	if list == nil {
		return false
	}
	return slices.ContainsFunc(list.Content, func(n *yaml.Node) bool { return strings.HasPrefix(n.Value, "--") })
}

// ensureHostPathMount mounts host directory dir at the same path in the apiserver container,
// unless a mount of that path already exists. An existing hostPath volume of that directory is
// mounted under its own name; otherwise a volume called name is added.
func ensureHostPathMount(src []byte, name, dir string, readOnly bool) ([]byte, error) {
	pod, err := ParsePod(src)
	if err != nil {
		return nil, err
	}
	c := apiserverContainer(pod)
	if c == nil {
		return nil, fmt.Errorf("the manifest has no container named %s", APIServerContainer)
	}
	volume, exists := hostPathVolume(pod, dir)
	if !exists {
		for _, v := range pod.Spec.Volumes {
			if v.Name == name {
				return nil, fmt.Errorf("the volume name %s is already used for another volume", name)
			}
		}
		volume = name
	}
	if m := mountFor(c, dir); m == nil {
		if !exists {
			for _, v := range c.VolumeMounts {
				if v.Name == name {
					return nil, fmt.Errorf("the volume mount name %s is already used for %s", name, v.MountPath)
				}
			}
		}
		ro := ""
		if readOnly {
			ro = "readOnly: true\n"
		}
		if src, err = appendItem(src, "volumeMounts", true, "mountPath: "+scalar(dir)+"\nname: "+scalar(volume)+"\n"+ro); err != nil {
			return nil, err
		}
	}
	if exists {
		return src, nil
	}
	return appendItem(src, "volumes", false, "hostPath:\n  path: "+scalar(dir)+"\n  type: DirectoryOrCreate\nname: "+name+"\n")
}

// hostPathVolume names the pod's hostPath volume of directory dir.
func hostPathVolume(p *corev1.Pod, dir string) (string, bool) {
	for _, v := range p.Spec.Volumes {
		if v.HostPath != nil && path.Clean(v.HostPath.Path) == dir {
			return v.Name, true
		}
	}
	return "", false
}

// appendItem appends a mapping, given as block YAML at indentation 0, to the sequence under key
// in the apiserver container (inContainer) or in spec.
func appendItem(src []byte, key string, inContainer bool, item string) ([]byte, error) {
	t, err := parseText(src)
	if err != nil {
		return nil, err
	}
	parent := t.spec()
	if inContainer {
		if parent, err = t.container(); err != nil {
			return nil, err
		}
	}
	if parent == nil {
		return nil, fmt.Errorf("the manifest has no spec")
	}
	k, seq := mapGet(parent, key)
	var dash int
	var after int
	switch {
	case seq == nil:
		ind := parent.Content[0].Column - 1
		t.insertAfter(t.extent(parent.Content[len(parent.Content)-1], ind), strings.Repeat(" ", ind)+key+":\n")
		t2, err := parseText(t.bytes())
		if err != nil {
			return nil, err
		}
		return appendItemAt(t2, t2.lineCount(), ind, item)
	case seq.Kind == yaml.SequenceNode && !isFlow(seq) && len(seq.Content) > 0:
		dash = seq.Content[0].Column - 3
		if dash < 0 || !t.dashAt(seq.Content[0].Line, dash) {
			return nil, fmt.Errorf("line %d: unsupported layout of %s", k.Line, key)
		}
		after = t.extent(seq.Content[len(seq.Content)-1], dash)
	default:
		return nil, fmt.Errorf("line %d: %s is not a block sequence", k.Line, key)
	}
	return appendItemAt(t, after, dash, item)
}

func appendItemAt(t *text, after, dash int, item string) ([]byte, error) {
	var b strings.Builder
	for i, l := range strings.Split(strings.TrimSuffix(item, "\n"), "\n") {
		b.WriteString(strings.Repeat(" ", dash))
		if i == 0 {
			b.WriteString("- ")
		} else {
			b.WriteString("  ")
		}
		b.WriteString(l + "\n")
	}
	t.insertAfter(after, b.String())
	return t.bytes(), nil
}

// PolicyFileInManifest finds where the manifest's kube-apiserver reads its audit policy: the
// value of --audit-policy-file in the container and, through the volume mounts, the host path.
func PolicyFileInManifest(manifest []byte) (containerPath, hostPath string, err error) {
	pod, err := ParsePod(manifest)
	if err != nil {
		return "", "", err
	}
	c := apiserverContainer(pod)
	if c == nil {
		return "", "", fmt.Errorf("the manifest has no container named %s", APIServerContainer)
	}
	args := append(slices.Clone(c.Command), c.Args...)
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "--audit-policy-file="):
			containerPath = strings.TrimPrefix(a, "--audit-policy-file=")
		case a == "--audit-policy-file" && i+1 < len(args):
			containerPath = args[i+1]
		}
	}
	if containerPath == "" {
		return "", "", fmt.Errorf("kube-apiserver has no --audit-policy-file flag: add it with a hostPath directory volume, or set spec.manageAPIServerFlags: true on AuditPolicy %q", "cluster")
	}
	containerPath = path.Clean(containerPath)
	best := ""
	var bestMount corev1.VolumeMount
	for _, m := range c.VolumeMounts {
		mp := path.Clean(m.MountPath)
		if (containerPath == mp || strings.HasPrefix(containerPath, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best, bestMount = mp, m
		}
	}
	if best == "" {
		return containerPath, "", fmt.Errorf("--audit-policy-file=%s is not under any volume mount of kube-apiserver, so the agent cannot tell its host path", containerPath)
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name != bestMount.Name {
			continue
		}
		if v.HostPath == nil {
			return containerPath, "", fmt.Errorf("--audit-policy-file=%s is on volume %q, which is not a hostPath volume", containerPath, v.Name)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(containerPath, best), "/")
		if bestMount.SubPath != "" {
			rel = path.Join(bestMount.SubPath, rel)
		}
		return containerPath, path.Join(v.HostPath.Path, rel), nil
	}
	return containerPath, "", fmt.Errorf("volume mount %q of --audit-policy-file=%s has no volume", bestMount.Name, containerPath)
}

// verifyEdit checks that edited decodes to original with exactly change applied.
func verifyEdit(original, edited []byte, change func(*corev1.Pod) error) error {
	want, err := ParsePod(original)
	if err != nil {
		return err
	}
	if apiserverContainer(want) == nil {
		return fmt.Errorf("the manifest has no container named %s", APIServerContainer)
	}
	if err := change(want); err != nil {
		return err
	}
	got, err := ParsePod(edited)
	if err != nil {
		return fmt.Errorf("edited manifest: %w", err)
	}
	if !equality.Semantic.DeepEqual(want, got) {
		return fmt.Errorf("edited manifest differs from the intended change: the manifest's layout is not supported")
	}
	if orig, err := ParsePod(original); err == nil && mountsResolve(orig) != nil {
		return nil // already broken before the edit: not the edit's doing (a rollback must still work)
	}
	return mountsResolve(got)
}

// mountsResolve checks that every volume mount names a volume of the pod: kubelet rejects a
// static pod that mounts a volume it does not define, and the apiserver would never start.
func mountsResolve(p *corev1.Pod) error {
	volumes := map[string]bool{}
	for _, v := range p.Spec.Volumes {
		volumes[v.Name] = true
	}
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			for _, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					return fmt.Errorf("edited manifest: container %s mounts volume %q at %s, but the pod has no volume of that name", c.Name, m.Name, m.MountPath)
				}
			}
		}
	}
	return nil
}

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
