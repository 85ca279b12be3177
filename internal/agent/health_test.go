package agent

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/staticpod"
)

// readyzServer is a local /readyz; ready decides each answer.
func readyzServer(t *testing.T, ready func() bool) ReadyzOptions {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if !ready() {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte("[+]ping ok\n[-]poststarthook/start-apiserver-admission-initializer failed: reason withheld\nreadyz check failed\n"))
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	// httptest's certificate is for example.com, as kubeadm's is for "kubernetes", not 127.0.0.1.
	return ReadyzOptions{URL: srv.URL + "/readyz", CAFile: ca, ServerName: "example.com", Timeout: time.Second}
}

func runningPod(annotation string, started time.Time) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-apiserver-node1", Annotations: map[string]string{staticpod.AnnotationPolicyHash: annotation}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name: staticpod.APIServerContainer, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}},
		}}},
	}
}

func TestHealthWaitSucceedsOnceReadyzComesBack(t *testing.T) {
	var calls atomic.Int32
	readyz, err := NewReadyz(readyzServer(t, func() bool { return calls.Add(1) > 3 }))
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	h := &APIServerHealth{
		MirrorPod: func(context.Context) (*corev1.Pod, error) { return runningPod("abc", since.Add(time.Second)), nil },
		Readyz:    readyz, Clock: clock.RealClock{}, Interval: 10 * time.Millisecond,
	}
	if err := h.Wait(context.Background(), "abc", since, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 4 {
		t.Errorf("readyz called %d times, want 4", calls.Load())
	}
}

func TestHealthWaitTimesOutWhenReadyzNeverAnswersOK(t *testing.T) {
	readyz, err := NewReadyz(readyzServer(t, func() bool { return false }))
	if err != nil {
		t.Fatal(err)
	}
	// One call first, so the TLS handshake (slow under -race on a loaded machine) is not what
	// the timeout measures: the error must carry /readyz's own answer.
	if err := readyz(context.Background()); err == nil {
		t.Fatal("the test server's /readyz answered ok")
	}
	since := time.Now()
	h := &APIServerHealth{
		MirrorPod: func(context.Context) (*corev1.Pod, error) { return runningPod("abc", since), nil },
		Readyz:    readyz, Clock: clock.RealClock{}, Interval: 10 * time.Millisecond,
	}
	err = h.Wait(context.Background(), "abc", since, 500*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "/readyz") || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "admission-initializer") {
		t.Fatalf("err = %v", err)
	}
}

func TestHealthWaitNeedsTheNewAnnotationAndANewContainer(t *testing.T) {
	readyz, err := NewReadyz(readyzServer(t, func() bool { return true }))
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	for name, pod := range map[string]*corev1.Pod{
		"old annotation":          runningPod("old", since.Add(time.Second)),
		"container not restarted": runningPod("abc", since.Add(-time.Hour)),
		"container not running":   {ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{staticpod.AnnotationPolicyHash: "abc"}}},
	} {
		h := &APIServerHealth{
			MirrorPod: func(context.Context) (*corev1.Pod, error) { return pod, nil },
			Readyz:    readyz, Clock: clock.RealClock{}, Interval: 10 * time.Millisecond,
		}
		if err := h.Wait(context.Background(), "abc", since, 50*time.Millisecond); err == nil {
			t.Errorf("%s: a ready /readyz alone must not count as success", name)
		}
	}
}

func TestReadyzVerifiesTheServingCertificate(t *testing.T) {
	o := readyzServer(t, func() bool { return true })
	o.ServerName = "kubernetes"
	readyz, err := NewReadyz(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := readyz(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a certificate for another name must fail, got %v", err)
	}
	o.InsecureSkipVerify = true
	readyz, _ = NewReadyz(o)
	if err := readyz(context.Background()); err != nil {
		t.Errorf("insecure skip verify: %v", err)
	}
}

func TestHealthWaitEndsAnAPICallThatNeverAnswersAtTheDeadline(t *testing.T) {
	h := &APIServerHealth{
		MirrorPod: func(ctx context.Context) (*corev1.Pod, error) { <-ctx.Done(); return nil, ctx.Err() },
		Readyz:    func(context.Context) error { return nil },
		Clock:     clock.RealClock{}, Interval: 10 * time.Millisecond,
	}
	done := make(chan error, 1)
	go func() { done <- h.Wait(context.Background(), "abc", time.Now(), 200*time.Millisecond) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "mirror pod") {
			t.Errorf("Wait() = %v, want the mirror pod's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait() did not return after its 200ms timeout: an API call without deadline blocks it")
	}
}

// kubeletHealth plays kubelet for APIServerHealth: the mirror pod carries the annotation of the
// manifest on disk and a container started when the manifest last changed.
func kubeletHealth(t *testing.T, tn *testNode, ready func(annotation string) bool) *APIServerHealth {
	t.Helper()
	current := func() string {
		b, err := os.ReadFile(tn.manifest)
		if err != nil {
			return ""
		}
		a, _ := staticpod.Annotation(b, staticpod.AnnotationPolicyHash)
		return a
	}
	readyz, err := NewReadyz(readyzServer(t, func() bool { return ready(current()) }))
	if err != nil {
		t.Fatal(err)
	}
	return &APIServerHealth{
		MirrorPod: func(context.Context) (*corev1.Pod, error) {
			fi, err := os.Stat(tn.manifest)
			if err != nil {
				return nil, err
			}
			return runningPod(current(), fi.ModTime().Add(time.Second)), nil
		},
		Readyz: readyz, Clock: clock.RealClock{}, Interval: 10 * time.Millisecond,
	}
}

func TestRolloutAgainstReadyz(t *testing.T) {
	newShort := policy.ShortHash(newHash)
	// The timeouts leave room for a TLS handshake under -race on a loaded machine: a success
	// ends as soon as /readyz answers, only the failures wait the whole timeout.
	for _, tc := range []struct {
		name    string
		ready   func(annotation string) bool
		timeout time.Duration
		want    v1alpha1.NodePhase
	}{
		{"apiserver comes back", func(string) bool { return true }, 30 * time.Second, v1alpha1.NodeApplied},
		{"new policy never ready", func(a string) bool { return !strings.HasPrefix(a, newShort) }, 3 * time.Second, v1alpha1.NodeRolledBack},
		{"never ready at all", func(string) bool { return false }, time.Second, v1alpha1.NodeFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
			r := &Rollout{Files: tn.files(OSFS{}), Health: kubeletHealth(t, tn, tc.ready), Clock: clock.RealClock{}}
			res, err := r.Apply(context.Background(), tn.target(), tc.timeout)
			if err != nil {
				t.Fatal(err)
			}
			if res.Phase != tc.want {
				t.Fatalf("phase = %s, want %s: %s", res.Phase, tc.want, res.Message)
			}
			t.Log(res.Message)
			wantPolicy := oldPolicy
			if tc.want == v1alpha1.NodeApplied {
				wantPolicy = newPolicy
			}
			if got := tn.read(t, tn.policyFile); got != wantPolicy {
				t.Errorf("policy = %q", got)
			}
			st, _ := r.Files.LoadState()
			if tc.want != v1alpha1.NodeApplied && (st.Failed == nil || st.Failed.RolledBack != (tc.want == v1alpha1.NodeRolledBack)) {
				t.Errorf("state.Failed = %+v", st.Failed)
			}
		})
	}
}
