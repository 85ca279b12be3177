//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

const (
	mainCluster = "kaudit-e2e"
	bareCluster = "kaudit-e2e-bare"
)

var (
	img    = envOr("IMG", "kaudit.local/kaudit:dev")
	reuse  = os.Getenv("KAUDIT_E2E_REUSE") == "true"
	keep   = os.Getenv("KAUDIT_E2E_KEEP") == "true"
	failed bool

	// kc is the main cluster: kube-apiserver's audit flags come from the kind
	// config, as a kind user would set them.
	kc *cluster
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "kaudit e2e on kind")
}

var _ = BeforeSuite(func() {
	if os.Getenv("KAUDIT_E2E_BUILD_IMAGE") != "false" {
		Expect(runLogged(nil, "hack/kind/image.sh", img)).To(Succeed(), "building %s", img)
	}
	// The three-control-plane specs (Label "ha") make their own cluster; this one is for the
	// specs without a label.
	if Label().MatchesLabelFilter(GinkgoLabelFilter()) {
		kc = newCluster(mainCluster, "audit", reuse)
	}
})

var _ = ReportAfterEach(func(r SpecReport) {
	if r.Failed() {
		failed = true
	}
})

var _ = AfterSuite(func() {
	if kc == nil {
		return
	}
	if failed {
		kc.saveArtifacts("a spec failed")
	}
	if !keep {
		kc.delete()
	}
})

var _ = ReportAfterSuite("timings", func(r Report) {
	measureMu.Lock()
	defer measureMu.Unlock()
	if len(measures) == 0 {
		return
	}
	text := "kaudit e2e timings\n" + strings.Join(measures, "\n") + "\n"
	fmt.Print("\n" + text)
	_ = os.MkdirAll(artifactsRoot(), 0o755)
	_ = os.WriteFile(filepath.Join(artifactsRoot(), "timings.txt"), []byte(text), 0o644)
})
