package argocd

import (
	"path/filepath"
	"strconv"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The sync waves (docs/gitops.md): namespace and CRDs, then the operator, then the policy.
const (
	waveFirst    = -2
	waveOperator = -1
	wavePolicy   = 1
)

func wave(u *unstructured.Unstructured) int {
	GinkgoHelper()
	value, ok := u.GetAnnotations()[waveAnnotation]
	Expect(ok).To(BeTrue(), "%s %s has no %s annotation", u.GetKind(), u.GetName(), waveAnnotation)
	n, err := strconv.Atoi(value)
	Expect(err).NotTo(HaveOccurred(), "%s %s: %s", u.GetKind(), u.GetName(), waveAnnotation)
	return n
}

// expectWaves checks that every object carries the wave of its role.
func expectWaves(objs []*unstructured.Unstructured) {
	GinkgoHelper()
	Expect(objs).NotTo(BeEmpty())
	for _, o := range objs {
		want := waveOperator
		switch o.GetKind() {
		case "Namespace", "CustomResourceDefinition":
			want = waveFirst
		case "AuditPolicy", "AuditPolicyModule", "NamespacedAuditPolicyModule":
			want = wavePolicy
		}
		Expect(wave(o)).To(Equal(want), "%s %s", o.GetKind(), o.GetName())
	}
}

func syncWaveSpecs() {
	Describe("Argo CD sync waves", func() {
		It("config/default: the namespace and the CRDs first, then RBAC, the manager and the agent", func() {
			objs := kustomize(filepath.Join(configDir, "default"))
			kinds := map[string]bool{}
			for _, o := range objs {
				kinds[o.GetKind()] = true
			}
			Expect(kinds).To(HaveKey("CustomResourceDefinition"))
			Expect(kinds).To(HaveKey("Deployment"))
			Expect(kinds).To(HaveKey("DaemonSet"))
			expectWaves(objs)
		})

		for _, dir := range []string{"samples", "modules", "modules/baseline", "modules/managed-cloud-example", "modules/optional"} {
			It("config/"+dir+": the singleton and the modules after the operator, in one wave", func() {
				objs := kustomize(filepath.Join(configDir, dir))
				expectWaves(objs)
			})
		}

		It("the example GitOps repository renders the operator and the baseline in order", func() {
			objs := kustomize(filepath.Join(argocdDir, "examples", "gitops-repo"))
			seen := map[int]int{}
			for _, o := range objs {
				seen[wave(o)]++
			}
			Expect(seen).To(HaveKey(waveFirst))
			Expect(seen).To(HaveKey(waveOperator))
			Expect(seen).To(HaveKey(wavePolicy))
			expectWaves(objs)
		})
	})
}
