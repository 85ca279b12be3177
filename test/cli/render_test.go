package cli

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/cmd"
	"github.com/kaudit/kaudit/internal/revision"
	"github.com/kaudit/kaudit/internal/testenv"
)

var (
	configDir    = filepath.Join("..", "..", "config")
	modulesDir   = filepath.Join(configDir, "modules")
	docsExample  = filepath.Join("..", "presets", "testdata", "docs-example-policy.yaml")
	fieldManager = client.FieldOwner("kaudit-cli-test")
)

var _ = Describe("kaudit render", Ordered, func() {
	DescribeTable("renders what the manager stores in a revision, byte for byte",
		func(paths func() []string) {
			files := paths()
			rendered := kaudit("render", files...)
			objs := manifests(files)
			apply(objs)
			want := moduleNames(objs)
			Eventually(func(g Gomega) {
				r := latestRevision(g)
				var got []string
				for _, m := range r.Modules {
					got = append(got, m.Name)
				}
				slices.Sort(got)
				g.Expect(got).To(Equal(want), "the modules of the latest revision")
				g.Expect(string(r.Policy)).To(Equal(rendered), "policy.yaml of revision %d", r.Number)
			}).WithTimeout(time.Minute).WithPolling(500 * time.Millisecond).Should(Succeed())
		},
		Entry("the baseline", func() []string { return []string{filepath.Join(modulesDir, "baseline")} }),
		Entry("the samples", func() []string { return []string{filepath.Join(configDir, "samples")} }),
		Entry("the baseline and the optional modules", func() []string {
			return []string{filepath.Join(modulesDir, "baseline"), filepath.Join(modulesDir, "optional")}
		}),
		Entry("the managed-cloud example", func() []string { return []string{filepath.Join(modulesDir, "managed-cloud-example")} }),
		Entry("the Kubernetes docs example, imported", func() []string {
			dir := GinkgoT().TempDir()
			kaudit("import", docsExample, "--output-dir", dir)
			return []string{dir}
		}),
	)
})

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

// apply makes the cluster hold exactly objs: they are applied server-side, and the modules
// that are not among them are deleted.
func apply(objs []*unstructured.Unstructured) {
	GinkgoHelper()
	for _, o := range objs {
		Expect(k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), fieldManager, client.ForceOwnership)).To(Succeed(), "%s %s", o.GetKind(), o.GetName())
	}
	keep := moduleNames(objs)
	var modules v1alpha1.AuditPolicyModuleList
	Expect(k8s.List(ctx, &modules)).To(Succeed())
	for i := range modules.Items {
		if !slices.Contains(keep, modules.Items[i].Name) {
			Expect(k8s.Delete(ctx, &modules.Items[i])).To(Succeed())
		}
	}
}

func moduleNames(objs []*unstructured.Unstructured) []string {
	var names []string
	for _, o := range objs {
		if o.GetKind() == "AuditPolicyModule" {
			names = append(names, o.GetName())
		}
	}
	slices.Sort(names)
	return names
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
