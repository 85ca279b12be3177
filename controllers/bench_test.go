package controllers_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/testenv"
)

// BenchmarkModuleChangeToRevision measures the time from a module change to the revision that
// holds it, with 10, 100 and 1000 modules in the cluster, against a real kube-apiserver. The
// debounce is set to 0 so the number is the manager's own work plus API round trips. It also
// reports the resident memory of this process (manager and test client) with the modules loaded.
func BenchmarkModuleChangeToRevision(b *testing.B) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		b.Skip("KUBEBUILDER_ASSETS is not set: run `make bench`")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := testenv.Start(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	c := env.Client
	if err := c.Create(ctx, &v1alpha1.AuditPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SingletonName},
		Spec:       v1alpha1.AuditPolicySpec{Rollout: v1alpha1.RolloutSpec{Debounce: &metav1.Duration{}}},
	}); err != nil {
		b.Fatal(err)
	}
	if _, err := env.StartManager(ctx, 10); err != nil {
		b.Fatal(err)
	}

	latest := func() int64 {
		var ap v1alpha1.AuditPolicy
		if err := c.Get(ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, &ap); err != nil || ap.Status.LatestRevision == nil {
			return 0
		}
		return *ap.Status.LatestRevision
	}
	waitFor := func(n int64) {
		deadline := time.Now().Add(2 * time.Minute)
		for latest() < n {
			if time.Now().After(deadline) {
				b.Fatalf("revision %d not made within 2 minutes", n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	created := 0
	for _, n := range []int{10, 100, 1000} {
		for ; created < n; created++ {
			m := newModule(fmt.Sprintf("team-%04d", created), int32(created%10),
				v1alpha1.PolicyRule{Level: v1alpha1.LevelRequest, Verbs: []string{"create", "update"},
					Users:     []string{fmt.Sprintf("system:serviceaccount:team-%d:deployer", created)},
					Resources: []v1alpha1.GroupResources{{Group: "apps", Resources: []string{"deployments"}}}})
			if err := c.Create(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("modules=%d", n), func(b *testing.B) {
			// Let the creation burst settle into its revision first.
			settled := latest()
			for {
				time.Sleep(time.Second)
				if now := latest(); now == settled && now > 0 {
					break
				} else {
					settled = now
				}
			}
			i := 0
			for b.Loop() {
				i++
				before := latest()
				patch := fmt.Sprintf(`{"spec":{"rules":[{"level":"Request","verbs":["create","update","verb%d-%d"],"resources":[{"group":"apps","resources":["deployments"]}]}]}}`, n, i)
				if err := c.Patch(ctx, &v1alpha1.AuditPolicyModule{ObjectMeta: metav1.ObjectMeta{Name: "team-0000"}}, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
					b.Fatal(err)
				}
				waitFor(before + 1)
			}
			b.ReportMetric(float64(rssKiB())/1024, "RSS-MiB")
		})
	}
}

// rssKiB reads this process's resident set size from /proc.
func rssKiB() int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			v, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return v
		}
	}
	return 0
}
