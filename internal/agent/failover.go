package agent

import (
	"context"
	"errors"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Failover is a client that sends each request to its first client, and again to the second
// when the first did not handle it (see Unanswered), or, for the node's own apiserver, answered
// as a starting apiserver may (see startingAnswer): the apiserver on the agent's own node first
// and the kubernetes Service after it, or the other way round (see docs/design.md, "One node at a
// time"). A write that timed out may have been applied by the first; sent again, it ends in a
// conflict or AlreadyExists, which the agent's callers already take as "try again".
type Failover struct {
	first, second client.WithWatch
	// firstMayBeStarting: the first is the node's own apiserver, whose early answers are worth
	// asking the second about (see worthAskingAgain).
	firstMayBeStarting bool
}

// NewFailover returns a client that tries first, then second when first does not answer.
func NewFailover(first, second client.WithWatch) *Failover {
	return &Failover{first: first, second: second}
}

// NewLocalFirst returns a client that tries the node's own apiserver, then service when local
// does not answer or answers as an apiserver that has just started may.
func NewLocalFirst(local, service client.WithWatch) *Failover {
	return &Failover{first: local, second: service, firstMayBeStarting: true}
}

var _ client.WithWatch = &Failover{}

// Unanswered reports whether err says that an apiserver did not handle the request, so another
// one may: no HTTP answer at all (connection refused or reset, a timeout, TLS, discovery), or an
// answer that it cannot serve now (429, 5xx). A cancelled context is the caller's, not the
// apiserver's, and is not unanswered.
func Unanswered(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return true
	}
	code := status.Status().Code
	return code == http.StatusTooManyRequests || code >= http.StatusInternalServerError
}

// startingAnswer reports whether err is what a kube-apiserver that has just started may answer
// before its caches are filled, so that another apiserver may answer otherwise: 401 or 403 before authentication and authorization know the
// agent, 404 before it serves the custom resources (kubernetes#115241). A real denial or a real
// absence costs one more request, which the second answers the same way.
func startingAnswer(err error) bool {
	return apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err) || apierrors.IsNotFound(err)
}

// do runs call on the first client, then on the second when the first did not answer, or
// answered as a starting apiserver may when it is the node's own. When neither answers, the
// error holds both reasons.
func (f *Failover) do(ctx context.Context, call func(client.WithWatch) error) error {
	err := call(f.first)
	if !Unanswered(err) && !(f.firstMayBeStarting && startingAnswer(err)) || ctx.Err() != nil {
		return err
	}
	err2 := call(f.second)
	if !Unanswered(err2) {
		return err2
	}
	return errors.Join(err, err2)
}

func (f *Failover) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	return f.do(ctx, func(c client.WithWatch) error { return c.Get(ctx, key, obj, opts...) })
}

func (f *Failover) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return f.do(ctx, func(c client.WithWatch) error { return c.List(ctx, list, opts...) })
}

func (f *Failover) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	return f.do(ctx, func(c client.WithWatch) error { return c.Apply(ctx, obj, opts...) })
}

func (f *Failover) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	return f.do(ctx, func(c client.WithWatch) error { return c.Create(ctx, obj, opts...) })
}

func (f *Failover) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	return f.do(ctx, func(c client.WithWatch) error { return c.Delete(ctx, obj, opts...) })
}

func (f *Failover) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	return f.do(ctx, func(c client.WithWatch) error { return c.Update(ctx, obj, opts...) })
}

func (f *Failover) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	return f.do(ctx, func(c client.WithWatch) error { return c.Patch(ctx, obj, patch, opts...) })
}

func (f *Failover) DeleteAllOf(ctx context.Context, obj client.Object, opts ...client.DeleteAllOfOption) error {
	return f.do(ctx, func(c client.WithWatch) error { return c.DeleteAllOf(ctx, obj, opts...) })
}

func (f *Failover) Watch(ctx context.Context, list client.ObjectList, opts ...client.ListOption) (watch.Interface, error) {
	var w watch.Interface
	err := f.do(ctx, func(c client.WithWatch) error {
		var err error
		w, err = c.Watch(ctx, list, opts...)
		return err
	})
	return w, err
}

func (f *Failover) Status() client.SubResourceWriter { return f.SubResource("status") }

func (f *Failover) SubResource(subResource string) client.SubResourceClient {
	return &failoverSubResource{f: f, name: subResource}
}

// Scheme, RESTMapper, GroupVersionKindFor and IsObjectNamespaced are the first client's: both
// clients are made from one scheme.
func (f *Failover) Scheme() *runtime.Scheme { return f.first.Scheme() }

func (f *Failover) RESTMapper() meta.RESTMapper { return f.first.RESTMapper() }

func (f *Failover) GroupVersionKindFor(obj runtime.Object) (schema.GroupVersionKind, error) {
	return f.first.GroupVersionKindFor(obj)
}

func (f *Failover) IsObjectNamespaced(obj runtime.Object) (bool, error) {
	return f.first.IsObjectNamespaced(obj)
}

type failoverSubResource struct {
	f    *Failover
	name string
}

func (s *failoverSubResource) Get(ctx context.Context, obj, subResource client.Object, opts ...client.SubResourceGetOption) error {
	return s.f.do(ctx, func(c client.WithWatch) error { return c.SubResource(s.name).Get(ctx, obj, subResource, opts...) })
}

func (s *failoverSubResource) Create(ctx context.Context, obj, subResource client.Object, opts ...client.SubResourceCreateOption) error {
	return s.f.do(ctx, func(c client.WithWatch) error { return c.SubResource(s.name).Create(ctx, obj, subResource, opts...) })
}

func (s *failoverSubResource) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	return s.f.do(ctx, func(c client.WithWatch) error { return c.SubResource(s.name).Update(ctx, obj, opts...) })
}

func (s *failoverSubResource) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	return s.f.do(ctx, func(c client.WithWatch) error { return c.SubResource(s.name).Patch(ctx, obj, patch, opts...) })
}

func (s *failoverSubResource) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
	return s.f.do(ctx, func(c client.WithWatch) error { return c.SubResource(s.name).Apply(ctx, obj, opts...) })
}
