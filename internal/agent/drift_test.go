package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaudit/kaudit/internal/staticpod"
)

func TestAPIServerHealthStartedIsTheRunningContainersStart(t *testing.T) {
	started := time.Date(2026, 3, 1, 10, 0, 5, 0, time.UTC)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-apiserver-cp-1"}}
	h := &APIServerHealth{MirrorPod: func(context.Context) (*corev1.Pod, error) { return pod, nil }}

	if _, err := h.Started(context.Background()); err == nil || !strings.Contains(err.Error(), "is not running") {
		t.Errorf("no container status: %v, want an error saying it is not running", err)
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{
		{Name: "sidecar", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started.Add(time.Hour))}}},
		{Name: staticpod.APIServerContainer, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}}},
	}
	got, err := h.Started(context.Background())
	if err != nil || !got.Equal(started) {
		t.Errorf("Started() = %s, %v; want %s", got, err, started)
	}
}
