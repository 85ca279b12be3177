package staticpod

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestVerifyEditRejectsAMountWithoutAVolume(t *testing.T) {
	in := readTestdata(t, "kubeadm-v1.33.yaml")
	out, err := appendItem(in, "volumeMounts", true, "mountPath: /x\nname: nowhere\n")
	if err != nil {
		t.Fatal(err)
	}
	err = verifyEdit(in, out, func(p *corev1.Pod) error {
		c := apiserverContainer(p)
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "nowhere", MountPath: "/x"})
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), `"nowhere"`) {
		t.Errorf("verifyEdit() = %v, want an error naming the volume", err)
	}
}
