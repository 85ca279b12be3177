package staticpod

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	sigsyaml "sigs.k8s.io/yaml"
)

// AnnotationPolicyHash is the static pod annotation whose change makes kubelet restart
// kube-apiserver (see docs/design.md, "Restart and rollback").
const AnnotationPolicyHash = "audit.kaudit.io/policy-hash"

// AnnotationKubeadmEndpoint is where kubeadm writes, as host:port, the address at which the
// node's apiserver serves; its serving certificate covers that host (see docs/design.md, "One
// node at a time").
const AnnotationKubeadmEndpoint = "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"

// APIServerContainer is the name of the apiserver container in kubeadm's manifest.
const APIServerContainer = "kube-apiserver"

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

// apiserverContainer is the pod's kube-apiserver container, or nil.
func apiserverContainer(p *corev1.Pod) *corev1.Container {
	for i, c := range p.Spec.Containers {
		if c.Name == APIServerContainer {
			return &p.Spec.Containers[i]
		}
	}
	return nil
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
