package staticpod

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
)

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

// AnnotationBase is the policy's short hash in a value of AnnotationPolicyHash: the value without
// the suffix that makes it unique (-r<n>, -rollback-<n>; see docs/design.md, "Restart and
// rollback").
func AnnotationBase(v string) string {
	base, _, _ := strings.Cut(v, "-")
	return base
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
