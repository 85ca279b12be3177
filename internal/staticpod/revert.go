package staticpod

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/utils/ptr"
)

// RevertFlags undoes on current what EnsureFlags changed from before to after, and keeps every
// other change current holds: the manifest may have been changed by someone else since after
// was written (a kubeadm upgrade changing the image). Each audit flag that the edit set goes
// back to its value in before, or is removed if before had none, and each volume mount and
// volume that the edit added is removed, but only where current still holds them as after does;
// where current holds what before did, there is nothing to undo. A flag, mount or volume that
// current holds in a third form was changed by someone else as well, and RevertFlags returns an
// error naming it rather than guess. It also refuses when before and after differ in anything
// but those and the policy-hash annotation, which the caller sets itself.
func RevertFlags(current, before, after []byte) ([]byte, error) {
	e, err := editBetween(before, after)
	if err != nil {
		return nil, err
	}
	pod, err := ParsePod(current)
	if err != nil {
		return nil, err
	}
	steps, err := e.stepsOn(pod)
	if err != nil {
		return nil, err
	}
	t, err := parseText(current)
	if err != nil {
		return nil, err
	}
	for _, key := range []string{"command", "args", "volumeMounts", "volumes"} {
		if err := t.revert(key, steps); err != nil {
			return nil, err
		}
	}
	out := t.bytes()
	return out, verifyEdit(current, out, func(p *corev1.Pod) error {
		steps, err := e.stepsOn(p)
		if err != nil {
			return err
		}
		applySteps(p, steps)
		return nil
	})
}

// flagEdit is one audit flag that an edit set; nil values are absent flags.
type flagEdit struct {
	name          string
	before, after *string
}

// edit is what EnsureFlags changed: flags set, volume mounts of the apiserver container and
// volumes added.
type edit struct {
	flags   []flagEdit
	mounts  []corev1.VolumeMount
	volumes []corev1.Volume
}

// editBetween finds the edit that made after from before, and checks that it is nothing else.
func editBetween(before, after []byte) (edit, error) {
	var e edit
	b, err := ParsePod(before)
	if err != nil {
		return e, fmt.Errorf("the manifest before kaudit's edit: %w", err)
	}
	a, err := ParsePod(after)
	if err != nil {
		return e, fmt.Errorf("the manifest kaudit wrote: %w", err)
	}
	cb, ca := apiserverContainer(b), apiserverContainer(a)
	if cb == nil || ca == nil {
		return e, fmt.Errorf("the manifest has no container named %s", APIServerContainer)
	}
	for _, f := range (FlagSettings{}).flags() {
		vb, va := flagValue(cb, f[0]), flagValue(ca, f[0])
		if !sameValue(vb, va) {
			e.flags = append(e.flags, flagEdit{name: f[0], before: vb, after: va})
		}
	}
	for _, m := range ca.VolumeMounts {
		if !slices.ContainsFunc(cb.VolumeMounts, func(o corev1.VolumeMount) bool { return equality.Semantic.DeepEqual(o, m) }) {
			e.mounts = append(e.mounts, m)
		}
	}
	for _, v := range a.Spec.Volumes {
		if !slices.ContainsFunc(b.Spec.Volumes, func(o corev1.Volume) bool { return equality.Semantic.DeepEqual(o, v) }) {
			e.volumes = append(e.volumes, v)
		}
	}
	steps, err := e.stepsOn(a)
	if err != nil {
		return e, err
	}
	applySteps(a, steps)
	delete(a.Annotations, AnnotationPolicyHash)
	delete(b.Annotations, AnnotationPolicyHash)
	if !equality.Semantic.DeepEqual(a, b) {
		return e, fmt.Errorf("kaudit's edit of the manifest changed more than the audit flags, their mounts and the %s annotation", AnnotationPolicyHash)
	}
	return e, nil
}

// revertStep changes one item of a list of the Pod: "command", "args" and "volumeMounts" of
// the apiserver container, "volumes" of spec. A nil value removes the item; otherwise the
// item, a flag, becomes value.
type revertStep struct {
	key   string
	index int
	value *string
}

// stepsOn is how to undo e on p, which holds each change as e made it or as it was before.
func (e edit) stepsOn(p *corev1.Pod) ([]revertStep, error) {
	c := apiserverContainer(p)
	if c == nil {
		return nil, fmt.Errorf("the manifest has no container named %s", APIServerContainer)
	}
	var steps []revertStep
	for _, f := range e.flags {
		key, i := flagIndex(c, f.name)
		cur := flagValue(c, f.name)
		switch {
		case sameValue(cur, f.before):
		case !sameValue(cur, f.after):
			return nil, fmt.Errorf("flag %s is %s in the manifest, neither what kaudit wrote (%s) nor what was there before (%s)", f.name, show(cur), show(f.after), show(f.before))
		case f.before == nil:
			steps = append(steps, revertStep{key: key, index: i})
		default:
			steps = append(steps, revertStep{key: key, index: i, value: ptr.To(f.name + "=" + *f.before)})
		}
	}
	for _, m := range e.mounts {
		switch i := slices.IndexFunc(c.VolumeMounts, func(o corev1.VolumeMount) bool { return o.MountPath == m.MountPath }); {
		case i < 0:
		case !equality.Semantic.DeepEqual(c.VolumeMounts[i], m):
			return nil, fmt.Errorf("the volume mount at %s is no longer the one kaudit added", m.MountPath)
		default:
			steps = append(steps, revertStep{key: "volumeMounts", index: i})
		}
	}
	for _, v := range e.volumes {
		switch i := slices.IndexFunc(p.Spec.Volumes, func(o corev1.Volume) bool { return o.Name == v.Name }); {
		case i < 0:
		case !equality.Semantic.DeepEqual(p.Spec.Volumes[i], v):
			return nil, fmt.Errorf("volume %q is no longer the one kaudit added", v.Name)
		default:
			steps = append(steps, revertStep{key: "volumes", index: i})
		}
	}
	return steps, nil
}

// applySteps is the meaning of the text edits of text.revert, used to verify them.
func applySteps(p *corev1.Pod, steps []revertStep) {
	c := apiserverContainer(p)
	for _, s := range steps {
		if s.value != nil {
			if s.key == "command" {
				c.Command[s.index] = *s.value
			} else {
				c.Args[s.index] = *s.value
			}
		}
	}
	c.Command = deleteAt(c.Command, "command", steps)
	c.Args = deleteAt(c.Args, "args", steps)
	c.VolumeMounts = deleteAt(c.VolumeMounts, "volumeMounts", steps)
	p.Spec.Volumes = deleteAt(p.Spec.Volumes, "volumes", steps)
}

// deleteAt removes from list the items that steps remove from key.
func deleteAt[T any](list []T, key string, steps []revertStep) []T {
	var out []T
	for i, item := range list {
		if !slices.ContainsFunc(steps, func(s revertStep) bool { return s.key == key && s.index == i && s.value == nil }) {
			out = append(out, item)
		}
	}
	return out
}

// revert applies the steps on key to the text: item i of a sequence is item i of the decoded list.
func (t *text) revert(key string, steps []revertStep) error {
	var mine []revertStep
	for _, s := range steps {
		if s.key == key {
			mine = append(mine, s)
		}
	}
	if len(mine) == 0 {
		return nil
	}
	parent := t.spec()
	if key != "volumes" {
		var err error
		if parent, err = t.container(); err != nil {
			return err
		}
	}
	k, seq := mapGet(parent, key)
	if seq == nil || seq.Kind != yaml.SequenceNode || isFlow(seq) || len(seq.Content) == 0 {
		return fmt.Errorf("%s is not a block sequence", key)
	}
	dash := seq.Content[0].Column - 3
	removed := 0
	for _, s := range mine {
		if s.index >= len(seq.Content) {
			return fmt.Errorf("line %d: unsupported layout of %s", k.Line, key)
		}
		item := seq.Content[s.index]
		if s.value != nil {
			if err := t.replaceScalar(item, *s.value); err != nil {
				return err
			}
			continue
		}
		if dash < 0 || !t.dashAt(item.Line, dash) {
			return fmt.Errorf("line %d: unsupported layout of %s", item.Line, key)
		}
		t.removeLines(item.Line, t.extent(item, dash))
		removed++
	}
	// An emptied sequence loses its key too, as EnsureFlags adds the key when it is missing.
	if removed == len(seq.Content) {
		if k.Line == seq.Content[0].Line {
			return fmt.Errorf("line %d: unsupported layout of %s", k.Line, key)
		}
		t.removeLines(k.Line, k.Line)
	}
	return nil
}

// flagValue is the value of flag=value in the container's command, then args (where setFlag
// looks), or nil.
func flagValue(c *corev1.Container, flag string) *string {
	if key, i := flagIndex(c, flag); key != "" {
		list := c.Command
		if key == "args" {
			list = c.Args
		}
		return ptr.To(strings.TrimPrefix(list[i], flag+"="))
	}
	return nil
}

// flagIndex is where flagValue finds flag: "command" or "args" and the index, or "".
func flagIndex(c *corev1.Container, flag string) (string, int) {
	if i := slices.IndexFunc(c.Command, func(a string) bool { return strings.HasPrefix(a, flag+"=") }); i >= 0 {
		return "command", i
	}
	if i := slices.IndexFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, flag+"=") }); i >= 0 {
		return "args", i
	}
	return "", -1
}

func sameValue(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func show(v *string) string {
	if v == nil {
		return "absent"
	}
	return fmt.Sprintf("%q", *v)
}
