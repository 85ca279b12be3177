package argocd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/revision"
)

const (
	// gitManager is the field manager of Argo CD's server-side apply.
	gitManager = "argocd-controller"
	// diffManager is a different field manager for the dry runs, as a second Argo CD or a
	// `kubectl diff --server-side` would use.
	diffManager = "argocd-drift-check"
	// waveAnnotation orders Argo CD's sync.
	waveAnnotation = "argocd.argoproj.io/sync-wave"
)

var configDir = filepath.Join("..", "..", "config")

// kustomize renders a kustomization with the kubectl of the envtest assets (`kubectl kustomize`),
// so the test needs nothing beyond KUBEBUILDER_ASSETS.
func kustomize(dir string) []*unstructured.Unstructured {
	GinkgoHelper()
	kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	out, err := exec.Command(kubectl, "kustomize", dir).Output()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		Fail("kubectl kustomize " + dir + ": " + string(exitErr.Stderr))
	}
	Expect(err).NotTo(HaveOccurred())
	return decodeAll(out)
}

func decodeAll(data []byte) []*unstructured.Unstructured {
	GinkgoHelper()
	var objs []*unstructured.Unstructured
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		Expect(err).NotTo(HaveOccurred())
		var obj map[string]any
		Expect(yaml.Unmarshal(doc, &obj)).To(Succeed())
		if len(obj) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: obj})
		}
	}
}

// applyAsGit server-side applies the manifests as Argo CD does with ServerSideApply=true.
func applyAsGit(objs []*unstructured.Unstructured) {
	GinkgoHelper()
	for _, o := range objs {
		Expect(k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
			client.FieldOwner(gitManager), client.ForceOwnership)).To(Succeed(), "%s %s", o.GetKind(), o.GetName())
	}
}

// waitReconciled waits until the manager has validated every module of the manifests, included
// the accepted ones in a revision and observed the singleton.
func waitReconciled(objs []*unstructured.Unstructured) {
	GinkgoHelper()
	for _, o := range objs {
		switch o.GetKind() {
		case "AuditPolicyModule", "NamespacedAuditPolicyModule":
			eventuallyAt(o.GetKind(), client.ObjectKeyFromObject(o), func(g Gomega, u *unstructured.Unstructured) {
				st := asModuleStatus(u)
				g.Expect(st.ObservedGeneration).To(Equal(u.GetGeneration()))
				c := condition(st.Conditions, v1alpha1.ConditionAccepted)
				g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
				if c.Reason == v1alpha1.ReasonValid {
					g.Expect(st.IncludedInRevision).NotTo(BeNil())
				}
			})
		case "AuditPolicy":
			eventually(o.GetKind(), o.GetName(), func(g Gomega, u *unstructured.Unstructured) {
				p := asPolicy(u)
				g.Expect(p.Status.ObservedGeneration).To(Equal(p.Generation))
				g.Expect(condition(p.Status.Conditions, v1alpha1.ConditionProgressing).Reason).NotTo(Equal(v1alpha1.ReasonDebouncing))
			})
		}
	}
}

// drift server-side applies each manifest again as a dry run under another field manager and
// returns what the dry run would change outside status, managedFields and resourceVersion.
// Without force, a conflict (a field another manager set to a different value) is drift too.
func drift(objs []*unstructured.Unstructured, force bool) map[string]string {
	GinkgoHelper()
	out := map[string]string{}
	for _, o := range objs {
		key := o.GetKind() + "/" + o.GetName()
		current := &unstructured.Unstructured{}
		current.SetGroupVersionKind(o.GroupVersionKind())
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(o), current)).To(Succeed())
		predicted := o.DeepCopy()
		opts := []client.ApplyOption{client.FieldOwner(diffManager), client.DryRunAll}
		if force {
			opts = append(opts, client.ForceOwnership)
		}
		if err := k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(predicted), opts...); err != nil {
			out[key] = err.Error()
			continue
		}
		if d := cmp.Diff(withoutVolatile(current), withoutVolatile(predicted)); d != "" {
			out[key] = d
		}
	}
	return out
}

// latestRevisionNumber is the newest revision's number, 0 when there is none.
func latestRevisionNumber() int64 {
	var cms corev1.ConfigMapList
	Expect(k8s.List(ctx, &cms, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: revision.Selector()})).To(Succeed())
	var latest int64
	for i := range cms.Items {
		r, err := revision.FromConfigMap(&cms.Items[i])
		Expect(err).NotTo(HaveOccurred())
		latest = max(latest, r.Number)
	}
	return latest
}

// withoutVolatile drops what every write or dry run changes (managedFields, resourceVersion) and
// status, which Git does not hold.
func withoutVolatile(u *unstructured.Unstructured) map[string]any {
	c := u.DeepCopy()
	c.SetManagedFields(nil)
	c.SetResourceVersion("")
	unstructured.RemoveNestedField(c.Object, "status")
	return c.Object
}

func driftSpecs() {
	Describe("no drift after the controller reconciles", Ordered, func() {
		It("config/samples: a server-side dry run of the Git manifests changes nothing but status", func() {
			objs := kustomize(filepath.Join(configDir, "samples"))
			Expect(objs).To(HaveLen(6))
			applyAsGit(objs)
			waitReconciled(objs)
			Expect(drift(objs, false)).To(BeEmpty())
			for _, o := range objs {
				u := liveAt(o.GetKind(), client.ObjectKeyFromObject(o))
				AddReportEntry("samples "+o.GetKind()+"/"+o.GetName(), fmt.Sprintf("generation %d after apply and reconcile", u.GetGeneration()))
			}
		})

		It("config/modules/baseline: a server-side dry run of the Git manifests changes nothing but status", func() {
			objs := kustomize(filepath.Join(configDir, "modules", "baseline"))
			Expect(len(objs)).To(BeNumerically(">", 10))
			before := latestRevisionNumber()
			applyAsGit(objs)
			applied := time.Now()
			Eventually(latestRevisionNumber, timeout, poll).Should(Equal(before + 1))
			made := time.Since(applied)
			waitReconciled(objs)
			Consistently(latestRevisionNumber, "1s", "100ms").Should(Equal(before+1), "one sync, one revision")
			AddReportEntry("baseline sync", fmt.Sprintf("%d objects server-side applied, 1 revision %s after the last apply (debounce 2s)", len(objs), made.Round(time.Millisecond)))
			Expect(drift(objs, false)).To(BeEmpty())
			for _, o := range objs {
				if o.GetKind() == "AuditPolicyModule" {
					Expect(live(o.GetKind(), o.GetName()).GetGeneration()).To(BeNumerically("<=", 2),
						"generation counts only the two Git versions (samples, then baseline) of %s: the controller never wrote its spec", o.GetName())
				}
			}
		})

		It("would report a controller that writes a user's spec (the check is not vacuous)", func() {
			objs := kustomize(filepath.Join(configDir, "modules", "baseline"))
			var target *unstructured.Unstructured
			for _, o := range objs {
				if o.GetKind() == "AuditPolicyModule" {
					target = o
					break
				}
			}
			Expect(target).NotTo(BeNil())
			// What a controller that "fixes" specs would do: change a field Git holds.
			patch := []byte(`{"spec":{"description":"rewritten by a controller"}}`)
			Expect(k8s.Patch(ctx, target.DeepCopy(), client.RawPatch(types.MergePatchType, patch), client.FieldOwner("some-controller"))).To(Succeed())
			found := drift([]*unstructured.Unstructured{target}, false)
			Expect(found).To(HaveKey("AuditPolicyModule/" + target.GetName()))
			Expect(found["AuditPolicyModule/"+target.GetName()]).To(ContainSubstring(`conflict with "some-controller"`))
			Expect(found["AuditPolicyModule/"+target.GetName()]).To(ContainSubstring(".spec.description"))
			forced := drift([]*unstructured.Unstructured{target}, true)
			Expect(forced["AuditPolicyModule/"+target.GetName()]).To(ContainSubstring("rewritten by a controller"), "a forced dry run shows the change too")
			applyAsGit([]*unstructured.Unstructured{target})
			Expect(drift([]*unstructured.Unstructured{target}, false)).To(BeEmpty(), "Git applied again: in sync")
		})

		It("the singleton's spec holds exactly what Git and the schema defaults say", func() {
			p := asPolicy(live("AuditPolicy", v1alpha1.SingletonName))
			Expect(p.Spec.DefaultLevel).To(Equal(v1alpha1.LevelMetadata))
			Expect(p.Spec.OmitStages).To(ConsistOf(v1alpha1.Stage("RequestReceived")))
			Expect(p.Spec.Rollout.Debounce).NotTo(BeNil(), "defaults come from the CRD schema")
		})

		It("config/default (dist/install.yaml): a forced server-side dry run, as Argo CD's ServerSideDiff makes, changes nothing", func() {
			objs := kustomize(filepath.Join(configDir, "default"))
			applyAsGit(objs)
			// Forced like Argo CD's diff: the agent's env fieldRef omits apiVersion, which the
			// apiserver defaults inside an atomic struct, so an unforced apply under a second
			// manager conflicts on it (not a change: the forced dry run shows none).
			Expect(drift(objs, true)).To(BeEmpty())
		})
	})
}
