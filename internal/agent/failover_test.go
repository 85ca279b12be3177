package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

func refused() error {
	return &url.Error{Op: "Get", URL: "https://172.18.0.4:6443/api", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
}

func TestUnansweredTellsAnApiserverThatDidNotHandleTheRequest(t *testing.T) {
	gr := schema.GroupResource{Resource: "pods"}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{refused(), true},
		{fmt.Errorf("getting lease: %w", refused()), true},
		{context.DeadlineExceeded, true},
		{apierrors.NewServiceUnavailable("starting"), true},
		{apierrors.NewTooManyRequests("later", 1), true},
		{apierrors.NewInternalError(errors.New("etcdserver: leader changed")), true},
		{context.Canceled, false},
		{apierrors.NewNotFound(gr, "x"), false},
		{apierrors.NewConflict(gr, "x", errors.New("changed")), false},
		{apierrors.NewForbidden(gr, "x", errors.New("no")), false},
	} {
		if got := Unanswered(tc.err); got != tc.want {
			t.Errorf("Unanswered(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// failing is a client whose every call fails with err, counting calls.
func failing(err error, calls *int) client.WithWatch {
	fail := func() error { *calls++; return err }
	return interceptor.NewClient(fake.NewClientBuilder().Build(), interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return fail()
		},
		Update: func(context.Context, client.WithWatch, client.Object, ...client.UpdateOption) error { return fail() },
		SubResourcePatch: func(context.Context, client.Client, string, client.Object, client.Patch, ...client.SubResourcePatchOption) error {
			return fail()
		},
	})
}

func TestFailoverAsksTheSecondWhenTheFirstDidNotAnswerOrWasStarting(t *testing.T) {
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kaudit-system", Name: "kaudit-policy-1"}}
	second := fake.NewClientBuilder().WithObjects(cm.DeepCopy()).WithStatusSubresource(&corev1.Pod{}).Build()

	var calls int
	f := NewFailover(failing(refused(), &calls), second)
	if err := f.Get(ctx, client.ObjectKeyFromObject(cm), &corev1.ConfigMap{}); err != nil {
		t.Errorf("Get through the second after the first refused: %v", err)
	}
	if err := f.Update(ctx, cm.DeepCopy()); err != nil {
		t.Errorf("Update through the second after the first refused: %v", err)
	}

	// A starting apiserver may answer 401, 403 or 404 before its caches are filled.
	gr := schema.GroupResource{Resource: "configmaps"}
	for _, early := range []error{apierrors.NewNotFound(gr, cm.Name), apierrors.NewForbidden(gr, cm.Name, errors.New("RBAC: not yet")), apierrors.NewUnauthorized("not yet")} {
		calls = 0
		f = NewLocalFirst(failing(early, &calls), second)
		if err := f.Get(ctx, client.ObjectKeyFromObject(cm), &corev1.ConfigMap{}); err != nil || calls != 1 {
			t.Errorf("after %v from the node's own apiserver: got %v after %d calls of it", early, err, calls)
		}
		// The Service's answer is final: its apiservers are up (the Lease is asked there first).
		calls = 0
		f = NewFailover(failing(early, &calls), second)
		if err := f.Get(ctx, client.ObjectKeyFromObject(cm), &corev1.ConfigMap{}); !errors.Is(err, early) {
			t.Errorf("after %v from the Service: got %v", early, err)
		}
	}

	conflict := apierrors.NewConflict(gr, cm.Name, errors.New("changed"))
	var secondCalls int
	calls = 0
	f = NewLocalFirst(failing(conflict, &calls), failing(conflict, &secondCalls))
	if err := f.Update(ctx, cm.DeepCopy()); !apierrors.IsConflict(err) || calls != 1 || secondCalls != 0 {
		t.Errorf("a conflict of the first is final: got %v after %d and %d calls", err, calls, secondCalls)
	}

	secondCalls = 0
	f = NewFailover(failing(refused(), &calls), failing(apierrors.NewServiceUnavailable("starting"), &secondCalls))
	err := f.Status().Patch(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}, client.Merge)
	if !errors.Is(err, syscall.ECONNREFUSED) || !apierrors.IsServiceUnavailable(err) || secondCalls != 1 {
		t.Errorf("neither answered: the error must hold both reasons, got %v", err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	calls, secondCalls = 0, 0
	f = NewFailover(failing(refused(), &calls), failing(refused(), &secondCalls))
	_ = f.Get(cancelled, client.ObjectKeyFromObject(cm), &corev1.ConfigMap{})
	if secondCalls != 0 {
		t.Error("the second was asked after the caller gave up")
	}
}
