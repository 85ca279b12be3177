package staticpod

import (
	"fmt"
	"path"
	"strings"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
)

// Volume names kaudit adds when it manages the flags.
const (
	VolumePolicy = "kaudit-audit-policy"
	VolumeLog    = "kaudit-audit-log"
)

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

// mountFor is the apiserver container's mount of directory dir, or nil.
func mountFor(c *corev1.Container, dir string) *corev1.VolumeMount {
	for i, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) == dir {
			return &c.VolumeMounts[i]
		}
	}
	return nil
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

// appendItemAt inserts item as a sequence item, its dash at column dash, after line after.
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

// addMount is the meaning of ensureHostPathMount's text edit, used to verify it.
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
