package cli

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/cmd"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/revision"
	"github.com/kaudit/kaudit/internal/testenv"
)

var (
	configDir    = filepath.Join("..", "..", "config")
	modulesDir   = filepath.Join(configDir, "modules")
	managedDir   = filepath.Join(modulesDir, "managed-cloud-example")
	guardrails   = filepath.Join("..", "..", "cmd", "testdata", "guardrails")
	docsExample  = filepath.Join("..", "presets", "testdata", "docs-example-policy.yaml")
	fieldManager = client.FieldOwner("kaudit-cli-test")
)

// Each entry is applied in turn to the same cluster, with the settings of its AuditPolicy: the
// manager decides with the previous entry's revision in force.
var _ = Describe("kaudit render", Ordered, func() {
	DescribeTable("renders what the manager stores in a revision, byte for byte",
		func(paths func() []string) {
			files := paths()
			rendered := kaudit("render", files...)
			objs := manifests(files)
			apply(objs)
			expectRevision(moduleIDs(objs), rendered)
		},
		Entry("the baseline", func() []string { return []string{filepath.Join(modulesDir, "baseline")} }),
		Entry("the samples, a team module among them", func() []string { return []string{filepath.Join(configDir, "samples")} }),
		Entry("the baseline and the optional modules", func() []string {
			return []string{filepath.Join(modulesDir, "baseline"), filepath.Join(modulesDir, "optional")}
		}),
		Entry("the managed-cloud example, with the built-in guardrails it breaks switched off", func() []string {
			return append(managedModules(), filepath.Join("testdata", "managed-cloud-guardrails-off.yaml"))
		}),
		Entry("the Kubernetes docs example, imported", func() []string {
			dir := GinkgoT().TempDir()
			kaudit("import", docsExample, "--output-dir", dir)
			return []string{dir}
		}),
		Entry("team modules in two namespaces and a custom guardrail", func() []string {
			return []string{filepath.Join(guardrails, "accepted"), filepath.Join("testdata", "team-b-statefulsets.yaml")}
		}),
	)

	// base is applied first and must be accepted; then more, whose modules render refuses. The
	// manager rejects the same modules, with the same reasons and messages, and keeps base's
	// revision.
	DescribeTable("refuses what the manager rejects, with the manager's reasons and messages",
		func(base, more func() []string) {
			files := base()
			rendered := kaudit("render", files...)
			objs := manifests(files)
			apply(objs)
			expectRevision(moduleIDs(objs), rendered)

			all := append(files, more()...)
			refused := kauditFails("render", all...)
			apply(manifests(all))
			rejected := moduleIDs(manifests(more()))
			Eventually(func(g Gomega) {
				for _, id := range rejected {
					noun, c := accepted(g, id)
					g.Expect(c.Status).To(Equal(metav1.ConditionFalse), "%s is accepted", noun)
					g.Expect(refused).To(ContainSubstring("%s is rejected (%s): %s", noun, c.Reason, c.Message))
				}
			}).WithTimeout(time.Minute).WithPolling(500 * time.Millisecond).Should(Succeed())
			Expect(strings.Count(refused, " is rejected (")).To(Equal(len(rejected)), "render refuses other modules too:\n%s", refused)
			expectRevision(moduleIDs(objs), rendered)
		},
		Entry("modules that break a guardrail or lower logging, over team modules and a custom guardrail",
			func() []string { return []string{filepath.Join(guardrails, "accepted")} },
			func() []string { return []string{filepath.Join(guardrails, "rejected")} }),
		Entry("the managed-cloud example with the built-in guardrails on",
			func() []string {
				return []string{filepath.Join(managedDir, "cluster.yaml"), filepath.Join(managedDir, "managed-sensitive-metadata.yaml")}
			},
			func() []string {
				return []string{filepath.Join(managedDir, "managed-component-noise.yaml"), filepath.Join(managedDir, "managed-known-groups.yaml"),
					filepath.Join(managedDir, "managed-status-updates.yaml")}
			}),
	)
})

// managedModules are the managed-cloud example's modules, without its AuditPolicy.
func managedModules() []string {
	GinkgoHelper()
	files, err := filepath.Glob(filepath.Join(managedDir, "managed-*.yaml"))
	Expect(err).NotTo(HaveOccurred())
	return files
}

// expectRevision waits for the latest revision to hold the modules ids and the policy rendered.
func expectRevision(ids []string, rendered string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		r := latestRevision(g)
		var got []string
		for _, m := range r.Modules {
			got = append(got, policy.ModuleID(m.Namespace, m.Name))
		}
		slices.Sort(got)
		g.Expect(got).To(Equal(ids), "the modules of the latest revision")
		g.Expect(string(r.Policy)).To(Equal(rendered), "policy.yaml of revision %d", r.Number)
	}).WithTimeout(time.Minute).WithPolling(500 * time.Millisecond).Should(Succeed())
}

// accepted reads the Accepted condition of the module id (namespace/name for a namespaced one)
// for its current generation, and names the module as render does.
func accepted(g Gomega, id string) (string, metav1.Condition) {
	namespace, name, namespaced := strings.Cut(id, "/")
	var obj client.Object = &v1alpha1.AuditPolicyModule{}
	key, noun := client.ObjectKey{Name: id}, fmt.Sprintf("AuditPolicyModule %q", id)
	if namespaced {
		obj = &v1alpha1.NamespacedAuditPolicyModule{}
		key, noun = client.ObjectKey{Namespace: namespace, Name: name}, fmt.Sprintf("NamespacedAuditPolicyModule %q", id)
	}
	g.Expect(k8s.Get(ctx, key, obj)).To(Succeed())
	var conditions []metav1.Condition
	switch o := obj.(type) {
	case *v1alpha1.AuditPolicyModule:
		conditions = o.Status.Conditions
	case *v1alpha1.NamespacedAuditPolicyModule:
		conditions = o.Status.Conditions
	}
	c := meta.FindStatusCondition(conditions, v1alpha1.ConditionAccepted)
	g.Expect(c).NotTo(BeNil(), "%s has no Accepted condition", noun)
	g.Expect(c.ObservedGeneration).To(Equal(obj.GetGeneration()), "%s: the condition is about another generation", noun)
	return noun, *c
}

// kaudit runs the command line in-process and returns its output; it must succeed.
func kaudit(command string, args ...string) string {
	GinkgoHelper()
	root := cmd.NewRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{command}, args...))
	Expect(root.Execute()).To(Succeed(), "kaudit %s %v: %s", command, args, errOut.String())
	return out.String()
}

// kauditFails runs the command line in-process; it must fail. It returns what it says.
func kauditFails(command string, args ...string) string {
	GinkgoHelper()
	root := cmd.NewRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{command}, args...))
	err := root.Execute()
	Expect(err).To(HaveOccurred(), "kaudit %s %v succeeded:\n%s", command, args, out.String())
	return err.Error()
}

// manifests reads the objects of paths as kubectl would apply them: kustomize directories with
// the envtest assets' kubectl, files as they are.
func manifests(paths []string) []*unstructured.Unstructured {
	GinkgoHelper()
	var objs []*unstructured.Unstructured
	for _, p := range paths {
		var data []byte
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			out, err := exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), "kustomize", p).Output()
			var exitErr *exec.ExitError
			if errors.As(err, &exitErr) {
				Fail("kubectl kustomize " + p + ": " + string(exitErr.Stderr))
			}
			Expect(err).NotTo(HaveOccurred())
			data = out
		} else {
			data, err = os.ReadFile(p)
			Expect(err).NotTo(HaveOccurred())
		}
		reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			Expect(err).NotTo(HaveOccurred())
			u := &unstructured.Unstructured{}
			Expect(yaml.Unmarshal(doc, &u.Object)).To(Succeed())
			if len(u.Object) > 0 {
				objs = append(objs, u)
			}
		}
	}
	return objs
}

// apply makes the cluster hold exactly objs: the modules are applied server-side (the
// namespaces of namespaced modules created first), the modules of both kinds that are not among
// them are deleted, and the AuditPolicy's spec is replaced by objs' (replaceSingleton).
func apply(objs []*unstructured.Unstructured) {
	GinkgoHelper()
	for _, o := range objs {
		if ns := o.GetNamespace(); ns != "" {
			err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
			Expect(client.IgnoreAlreadyExists(err)).To(Succeed())
		}
	}
	for _, o := range objs {
		if o.GetKind() == "AuditPolicy" {
			replaceSingleton(o)
			continue
		}
		Expect(k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), fieldManager, client.ForceOwnership)).To(Succeed(), "%s %s", o.GetKind(), o.GetName())
	}
	keep := moduleIDs(objs)
	var modules v1alpha1.AuditPolicyModuleList
	Expect(k8s.List(ctx, &modules)).To(Succeed())
	for i := range modules.Items {
		if !slices.Contains(keep, modules.Items[i].Name) {
			Expect(k8s.Delete(ctx, &modules.Items[i])).To(Succeed())
		}
	}
	var namespaced v1alpha1.NamespacedAuditPolicyModuleList
	Expect(k8s.List(ctx, &namespaced)).To(Succeed())
	for i := range namespaced.Items {
		if m := &namespaced.Items[i]; !slices.Contains(keep, policy.ModuleID(m.Namespace, m.Name)) {
			Expect(k8s.Delete(ctx, m)).To(Succeed())
		}
	}
}

// replaceSingleton makes the AuditPolicy's spec exactly o's, so that settings an earlier spec
// set and o does not are dropped. Not by server-side apply: under load, an apply that dropped
// every custom guardrail of an earlier apply by the same manager was refused once with
// "spec.guardrails: Invalid value: null".
func replaceSingleton(o *unstructured.Unstructured) {
	GinkgoHelper()
	// The manager creates the singleton when it starts: a create may race it, as an update may
	// race its writes.
	racing := func(err error) bool { return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) }
	Expect(retry.OnError(retry.DefaultRetry, racing, func() error {
		cur := &unstructured.Unstructured{}
		cur.SetGroupVersionKind(o.GroupVersionKind())
		err := k8s.Get(ctx, client.ObjectKeyFromObject(o), cur)
		if apierrors.IsNotFound(err) {
			return k8s.Create(ctx, o.DeepCopy())
		}
		if err != nil {
			return err
		}
		cur.Object["spec"] = o.Object["spec"]
		return k8s.Update(ctx, cur)
	})).To(Succeed(), "AuditPolicy %s", o.GetName())
}

// moduleIDs are the IDs of the modules among objs, sorted: names, and namespace/name for
// namespaced modules.
func moduleIDs(objs []*unstructured.Unstructured) []string {
	var ids []string
	for _, o := range objs {
		switch o.GetKind() {
		case "AuditPolicyModule":
			ids = append(ids, o.GetName())
		case "NamespacedAuditPolicyModule":
			ids = append(ids, policy.ModuleID(o.GetNamespace(), o.GetName()))
		}
	}
	slices.Sort(ids)
	return ids
}

// latestRevision reads the revision the manager made last.
func latestRevision(g Gomega) *revision.Revision {
	var p v1alpha1.AuditPolicy
	g.Expect(k8s.Get(ctx, client.ObjectKey{Name: v1alpha1.SingletonName}, &p)).To(Succeed())
	g.Expect(p.Status.ObservedGeneration).To(Equal(p.Generation), "the manager has not seen the AuditPolicy's spec yet")
	g.Expect(p.Status.LatestRevision).NotTo(BeNil(), "no revision yet")
	var cm corev1.ConfigMap
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: testenv.Namespace, Name: revision.Name(*p.Status.LatestRevision)}, &cm)).To(Succeed())
	r, err := revision.FromConfigMap(&cm)
	g.Expect(err).NotTo(HaveOccurred())
	return r
}
