// Package drift compares a control-plane node's files with the revision the node applied: the
// policy file, and the parts of the kube-apiserver static pod manifest that kaudit owns (the
// policy-hash annotation; the audit flags and their mounts when kaudit manages them). It only
// reads files; the agent reports what it finds and repairs it (see docs/design.md, "Drift").
package drift

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/staticpod"
)

// File is a node file that can drift, as the metrics label it.
type File string

// The node files that can drift.
const (
	Policy   File = "policy"
	Manifest File = "manifest"
)

// Files are the files that can drift, in the order findings list them.
var Files = []File{Policy, Manifest}

// FS reads the node's files. The agent's OSFS never follows a symbolic link and caps what it
// reads (see docs/design.md, "Node paths and files").
type FS interface {
	ReadFile(name string) ([]byte, error)
	Stat(name string) (os.FileInfo, error)
}

// Node is where the node's files are.
type Node struct {
	FS FS
	// Root is where the host's file system is seen.
	Root string
	// Manifest is the host path of the kube-apiserver static pod manifest.
	Manifest string
}

func (n Node) local(host string) string { return filepath.Join(n.Root, filepath.FromSlash(host)) }

// Applied is what the node's applied revision says its files hold.
type Applied struct {
	Revision int64
	// Hash is the revision's full policy hash; the manifest's annotation carries its short form.
	Hash   string
	Policy []byte
	// Flags are the managed apiserver flags, nil when kaudit does not manage them: then neither
	// the flags nor the mounts are kaudit's.
	Flags *staticpod.FlagSettings
}

// Finding is one difference between a file and the applied revision.
type Finding struct {
	File File
	// Path is the file's host path.
	Path string
	// Change says what differs, in one line.
	Change string
}

func (f Finding) String() string { return f.Path + ": " + f.Change }

// Report is what Check found.
type Report struct {
	Findings []Finding
	// PolicyFile is the host path of the policy file that the manifest, with the revision's
	// flags, makes kube-apiserver read.
	PolicyFile string
	// PolicyAuditsOtherwise says that a kube-apiserver that loads the policy file as it is now
	// audits otherwise than the revision, or does not start: its rules differ, it does not
	// parse, or it is missing. A file that differs only in comments or layout does not.
	PolicyAuditsOtherwise bool
	// PolicyModTime is the policy file's modification time; zero when it is missing.
	PolicyModTime time.Time
}

// Drifted says whether file differs from the revision.
func (r Report) Drifted(file File) bool {
	return slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.File == file })
}

// Message is every finding, one after the other.
func (r Report) Message() string {
	parts := make([]string, len(r.Findings))
	for i, f := range r.Findings {
		parts[i] = f.String()
	}
	return strings.Join(parts, "; ")
}

// Check compares the node's files with a. Its error is a manifest it cannot read or work with
// (the agent reports those as a rollout would), never a difference.
func Check(n Node, a Applied) (Report, error) {
	var r Report
	cur, err := n.FS.ReadFile(n.local(n.Manifest))
	if err != nil {
		return r, fmt.Errorf("reading %s: %w", n.Manifest, err)
	}
	desired := cur
	if a.Flags != nil {
		// The managed flags as the rollout sets them: staticpod.EnsureFlags leaves a manifest
		// that has them all unchanged.
		if desired, err = staticpod.EnsureFlags(cur, *a.Flags); err != nil {
			return r, fmt.Errorf("%s: %w", n.Manifest, err)
		}
	}
	manifest, err := manifestFindings(cur, desired, a)
	if err != nil {
		return r, fmt.Errorf("%s: %w", n.Manifest, err)
	}
	for _, change := range manifest {
		r.Findings = append(r.Findings, Finding{File: Manifest, Path: n.Manifest, Change: change})
	}
	if _, r.PolicyFile, err = staticpod.PolicyFileInManifest(desired); err != nil {
		return r, fmt.Errorf("%s: %w", n.Manifest, err)
	}
	change, err := r.checkPolicy(n, a)
	if err != nil {
		return r, err
	}
	if change != "" {
		// The policy first: it is what the apiserver audits with.
		r.Findings = slices.Insert(r.Findings, 0, Finding{File: Policy, Path: r.PolicyFile, Change: change})
	}
	return r, nil
}

// checkPolicy compares the policy file with the revision's and returns what differs, or "".
func (r *Report) checkPolicy(n Node, a Applied) (string, error) {
	name := n.local(r.PolicyFile)
	b, err := n.FS.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		r.PolicyAuditsOtherwise = true
		return fmt.Sprintf("missing; revision %d's policy belongs here", a.Revision), nil
	}
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", r.PolicyFile, err)
	}
	if fi, err := n.FS.Stat(name); err == nil {
		r.PolicyModTime = fi.ModTime()
	}
	if string(b) == string(a.Policy) {
		return "", nil
	}
	h, err := policy.HashOf(b)
	switch {
	case err != nil:
		r.PolicyAuditsOtherwise = true
		return fmt.Sprintf("not revision %d's policy, and not a policy kube-apiserver loads: %v", a.Revision, err), nil
	case h != a.Hash:
		r.PolicyAuditsOtherwise = true
		return fmt.Sprintf("rules differ from revision %d's (policy hash %s, the revision's %s)", a.Revision, policy.ShortHash(h), policy.ShortHash(a.Hash)), nil
	default:
		return fmt.Sprintf("differs from revision %d's policy in comments or layout only (same rules)", a.Revision), nil
	}
}

// manifestFindings describes how cur differs from what the revision makes of it (desired): the
// annotation, then each managed flag, volume mount and volume.
func manifestFindings(cur, desired []byte, a Applied) ([]string, error) {
	var out []string
	ann, err := staticpod.Annotation(cur, staticpod.AnnotationPolicyHash)
	if err != nil {
		return nil, err
	}
	// A suffix (-r<n>, -rollback-<n>) only made a rollout's value unique: the hash is what counts.
	if want := policy.ShortHash(a.Hash); staticpod.AnnotationBase(ann) != want {
		is := fmt.Sprintf("%q", ann)
		if ann == "" {
			is = "missing"
		}
		out = append(out, fmt.Sprintf("annotation %s is %s; revision %d's policy hash is %s", staticpod.AnnotationPolicyHash, is, a.Revision, want))
	}
	if string(cur) == string(desired) {
		return out, nil
	}
	was, err := apiserver(cur)
	if err != nil {
		return nil, err
	}
	want, err := apiserver(desired)
	if err != nil {
		return nil, err
	}
	n := len(out)
	have := flagValues(was.container)
	for _, f := range flagValues(want.container).sorted() {
		if v, ok := have[f.name]; !ok {
			out = append(out, fmt.Sprintf("flag %s is missing; revision %d sets %s", f.name, a.Revision, f.value))
		} else if v != f.value {
			out = append(out, fmt.Sprintf("flag %s is %s; revision %d sets %s", f.name, v, a.Revision, f.value))
		}
	}
	for _, m := range want.container.VolumeMounts {
		i := slices.IndexFunc(was.container.VolumeMounts, func(c corev1.VolumeMount) bool { return c.Name == m.Name })
		switch {
		case i < 0:
			out = append(out, fmt.Sprintf("volume mount %s (%s) is missing", m.Name, m.MountPath))
		case !equality.Semantic.DeepEqual(was.container.VolumeMounts[i], m):
			out = append(out, fmt.Sprintf("volume mount %s differs from what revision %d sets (%s, readOnly %t)", m.Name, a.Revision, m.MountPath, m.ReadOnly))
		}
	}
	for _, v := range want.pod.Spec.Volumes {
		i := slices.IndexFunc(was.pod.Spec.Volumes, func(c corev1.Volume) bool { return c.Name == v.Name })
		switch {
		case i < 0:
			out = append(out, fmt.Sprintf("volume %s is missing", v.Name))
		case !equality.Semantic.DeepEqual(was.pod.Spec.Volumes[i].VolumeSource, v.VolumeSource):
			out = append(out, fmt.Sprintf("volume %s differs from what revision %d sets", v.Name, a.Revision))
		}
	}
	if len(out) == n {
		// EnsureFlags changed something none of the above names: say so rather than nothing.
		out = append(out, fmt.Sprintf("the audit flags or their mounts differ from what revision %d sets", a.Revision))
	}
	return out, nil
}

type apiserverPod struct {
	pod       *corev1.Pod
	container *corev1.Container
}

func apiserver(manifest []byte) (apiserverPod, error) {
	p, err := staticpod.ParsePod(manifest)
	if err != nil {
		return apiserverPod{}, err
	}
	for i, c := range p.Spec.Containers {
		if c.Name == staticpod.APIServerContainer {
			return apiserverPod{pod: p, container: &p.Spec.Containers[i]}, nil
		}
	}
	return apiserverPod{}, fmt.Errorf("the manifest has no container named %s", staticpod.APIServerContainer)
}

type flagValue struct{ name, value string }

type flagSet map[string]string

// flagValues are the container's --name=value arguments.
func flagValues(c *corev1.Container) flagSet {
	out := flagSet{}
	for _, arg := range append(slices.Clone(c.Command), c.Args...) {
		if name, value, ok := strings.Cut(arg, "="); ok && strings.HasPrefix(name, "--") {
			out[name] = value
		}
	}
	return out
}

func (s flagSet) sorted() []flagValue {
	out := make([]flagValue, 0, len(s))
	for name, value := range s {
		out = append(out, flagValue{name, value})
	}
	slices.SortFunc(out, func(a, b flagValue) int { return strings.Compare(a.name, b.name) })
	return out
}
