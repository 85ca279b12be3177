package drift_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kaudit/kaudit/internal/agent"
	"github.com/kaudit/kaudit/internal/drift"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/staticpod"
)

const revisionPolicy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n# module test, rule 0\n- level: RequestResponse\n  namespaces: [team-a]\n- level: Metadata\n"

func managedFlags() *staticpod.FlagSettings {
	return &staticpod.FlagSettings{PolicyFile: agent.DefaultPolicyFile, LogPath: "/var/log/kubernetes/audit/audit.log", MaxAge: 7, MaxBackup: 10, MaxSize: 100}
}

// node lays out a node that runs the revision as a rollout leaves it: the manifest from
// internal/staticpod's testdata with the managed flags (when flags is not nil) and the
// annotation, and the policy file.
type node struct {
	t       *testing.T
	root    string
	applied drift.Applied
	policy  string // host path
}

func newNode(t *testing.T, testdata string, flags *staticpod.FlagSettings) *node {
	t.Helper()
	hash, err := policy.HashOf([]byte(revisionPolicy))
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, root: t.TempDir(), applied: drift.Applied{Revision: 3, Hash: hash, Policy: []byte(revisionPolicy), Flags: flags}}
	manifest, err := os.ReadFile(filepath.Join("..", "staticpod", "testdata", testdata))
	if err != nil {
		t.Fatal(err)
	}
	if flags != nil {
		if manifest, err = staticpod.EnsureFlags(manifest, *flags); err != nil {
			t.Fatal(err)
		}
	}
	if manifest, err = staticpod.SetAnnotation(manifest, staticpod.AnnotationPolicyHash, policy.ShortHash(hash)+"-r2"); err != nil {
		t.Fatal(err)
	}
	if _, n.policy, err = staticpod.PolicyFileInManifest(manifest); err != nil {
		t.Fatal(err)
	}
	n.write(agent.DefaultManifest, string(manifest))
	n.write(n.policy, revisionPolicy)
	return n
}

func (n *node) local(host string) string { return filepath.Join(n.root, host) }

func (n *node) write(host, content string) {
	n.t.Helper()
	if err := os.MkdirAll(filepath.Dir(n.local(host)), 0o755); err != nil {
		n.t.Fatal(err)
	}
	if err := os.WriteFile(n.local(host), []byte(content), 0o600); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) read(host string) string {
	n.t.Helper()
	b, err := os.ReadFile(n.local(host))
	if err != nil {
		n.t.Fatal(err)
	}
	return string(b)
}

// editManifest replaces old by new in the manifest, once, as a hand edit would.
func (n *node) editManifest(old, new string) {
	n.t.Helper()
	m := n.read(agent.DefaultManifest)
	if !strings.Contains(m, old) {
		n.t.Fatalf("the manifest has no %q", old)
	}
	n.write(agent.DefaultManifest, strings.Replace(m, old, new, 1))
}

func (n *node) check() drift.Report {
	n.t.Helper()
	r, err := drift.Check(drift.Node{FS: agent.OSFS{}, Root: n.root, Manifest: agent.DefaultManifest}, n.applied)
	if err != nil {
		n.t.Fatal(err)
	}
	return r
}

// expectOne checks that r has exactly one finding, on file, whose change contains each of want.
func expectOne(t *testing.T, r drift.Report, file drift.File, want ...string) {
	t.Helper()
	if len(r.Findings) != 1 {
		t.Fatalf("findings: %q, want one on the %s", r.Message(), file)
	}
	f := r.Findings[0]
	if f.File != file {
		t.Errorf("finding on the %s (%s), want the %s", f.File, f, file)
	}
	for _, w := range want {
		if !strings.Contains(f.Change, w) {
			t.Errorf("finding %q does not say %q", f, w)
		}
	}
	if !r.Drifted(file) {
		t.Errorf("Drifted(%s) is false", file)
	}
}

func TestNodeAsTheRolloutLeftItHasNoDrift(t *testing.T) {
	for _, tc := range []struct {
		testdata string
		flags    *staticpod.FlagSettings
	}{
		{"kind-v1.30.yaml", managedFlags()},
		{"kubeadm-v1.33.yaml", managedFlags()},
		{"hand-edited-audit.yaml", nil},
		{"hand-edited-audit.yaml", managedFlags()},
	} {
		n := newNode(t, tc.testdata, tc.flags)
		r := n.check()
		if len(r.Findings) != 0 {
			t.Errorf("%s (managed flags %t): %s", tc.testdata, tc.flags != nil, r.Message())
		}
		if r.PolicyFile != n.policy {
			t.Errorf("%s: policy file %s, want %s", tc.testdata, r.PolicyFile, n.policy)
		}
	}
}

func TestPolicyEditedByHand(t *testing.T) {
	n := newNode(t, "kind-v1.30.yaml", managedFlags())
	before := time.Now().Add(-time.Second)
	n.write(n.policy, strings.Replace(revisionPolicy, "level: RequestResponse", "level: None", 1))
	r := n.check()
	expectOne(t, r, drift.Policy, "rules differ from revision 3's", policy.ShortHash(n.applied.Hash))
	if r.Findings[0].Path != agent.DefaultPolicyFile {
		t.Errorf("path %s, want %s", r.Findings[0].Path, agent.DefaultPolicyFile)
	}
	if !r.PolicyAuditsOtherwise {
		t.Error("PolicyAuditsOtherwise is false for changed rules")
	}
	if r.PolicyModTime.Before(before) {
		t.Errorf("PolicyModTime %s is before the edit", r.PolicyModTime)
	}
}

func TestPolicyCommentsEditedByHandDoNotChangeAuditing(t *testing.T) {
	n := newNode(t, "kind-v1.30.yaml", managedFlags())
	n.write(n.policy, "# edited on the node\n"+revisionPolicy)
	r := n.check()
	expectOne(t, r, drift.Policy, "comments or layout only")
	if r.PolicyAuditsOtherwise {
		t.Error("PolicyAuditsOtherwise is true for a comment")
	}
}

func TestPolicyThatDoesNotParseOrIsMissing(t *testing.T) {
	n := newNode(t, "hand-edited-audit.yaml", nil)
	n.write(n.policy, "rules: [")
	r := n.check()
	expectOne(t, r, drift.Policy, "not a policy kube-apiserver loads")
	if !r.PolicyAuditsOtherwise {
		t.Error("PolicyAuditsOtherwise is false for a policy that does not parse")
	}

	if err := os.Remove(n.local(n.policy)); err != nil {
		t.Fatal(err)
	}
	r = n.check()
	expectOne(t, r, drift.Policy, "missing")
	if !r.PolicyAuditsOtherwise || !r.PolicyModTime.IsZero() {
		t.Errorf("missing file: PolicyAuditsOtherwise %t, PolicyModTime %s", r.PolicyAuditsOtherwise, r.PolicyModTime)
	}
}

func TestAnnotationRemovedOrChanged(t *testing.T) {
	n := newNode(t, "kind-v1.30.yaml", managedFlags())
	short := policy.ShortHash(n.applied.Hash)
	n.editManifest("    "+staticpod.AnnotationPolicyHash+": "+short+"-r2\n", "")
	expectOne(t, n.check(), drift.Manifest, "annotation "+staticpod.AnnotationPolicyHash+" is missing", short)

	n = newNode(t, "hand-edited-audit.yaml", nil)
	n.editManifest(short+"-r2", "0123456789abcdef")
	expectOne(t, n.check(), drift.Manifest, `is "0123456789abcdef"`, short)

	// Another suffix is not drift: it only makes a rollout's value unique.
	n = newNode(t, "kind-v1.30.yaml", managedFlags())
	n.editManifest(short+"-r2", short+"-rollback-4")
	if r := n.check(); len(r.Findings) != 0 {
		t.Errorf("a suffix reported as drift: %s", r.Message())
	}
}

func TestManagedFlagChanged(t *testing.T) {
	n := newNode(t, "kind-v1.30.yaml", managedFlags())
	n.editManifest("--audit-log-maxage=7", "--audit-log-maxage=30")
	expectOne(t, n.check(), drift.Manifest, "flag --audit-log-maxage is 30; revision 3 sets 7")

	n = newNode(t, "kind-v1.30.yaml", managedFlags())
	n.editManifest("    - --audit-log-maxbackup=10\n", "")
	expectOne(t, n.check(), drift.Manifest, "flag --audit-log-maxbackup is missing; revision 3 sets 10")
}

func TestManagedMountRemoved(t *testing.T) {
	n := newNode(t, "kind-v1.30.yaml", managedFlags())
	m := n.read(agent.DefaultManifest)
	// The policy directory's mount, as EnsureFlags adds it to kind's manifest.
	mount := "    - mountPath: /etc/kubernetes/audit\n      name: kaudit-audit-policy\n      readOnly: true\n"
	if !strings.Contains(m, mount) {
		t.Fatalf("the manifest has no mount\n%s\nin\n%s", mount, m)
	}
	n.editManifest(mount, "")
	r := n.check()
	if !r.Drifted(drift.Manifest) || !strings.Contains(r.Message(), "volume mount kaudit-audit-policy (/etc/kubernetes/audit) is missing") {
		t.Errorf("findings: %s", r.Message())
	}
}

func TestFlagChangedWhenNotManagedIsNotDrift(t *testing.T) {
	n := newNode(t, "hand-edited-audit.yaml", nil)
	n.editManifest("--audit-log-maxage=30", "--audit-log-maxage=3")
	if r := n.check(); len(r.Findings) != 0 {
		t.Errorf("an unmanaged flag reported as drift: %s", r.Message())
	}
	// The same manifest, flags managed: the revision sets maxage 7.
	n.applied.Flags = managedFlags()
	n.applied.Flags.PolicyFile = "/etc/kubernetes/policies/audit-policy.yaml"
	r := n.check()
	if !r.Drifted(drift.Manifest) || !strings.Contains(r.Message(), "flag --audit-log-maxage is 3; revision 3 sets 7") {
		t.Errorf("findings: %s", r.Message())
	}
}

func TestFindingsListThePolicyFirst(t *testing.T) {
	n := newNode(t, "kind-v1.30.yaml", managedFlags())
	n.write(n.policy, "# edited\n"+revisionPolicy)
	n.editManifest("--audit-log-maxsize=100", "--audit-log-maxsize=1")
	r := n.check()
	if len(r.Findings) != 2 || r.Findings[0].File != drift.Policy || r.Findings[1].File != drift.Manifest {
		t.Fatalf("findings: %s", r.Message())
	}
	want := agent.DefaultPolicyFile + ": differs from revision 3's policy in comments or layout only (same rules); " +
		agent.DefaultManifest + ": flag --audit-log-maxsize is 1; revision 3 sets 100"
	if r.Message() != want {
		t.Errorf("message\n%s\nwant\n%s", r.Message(), want)
	}
}

func TestManifestItCannotReadIsAnError(t *testing.T) {
	n := newNode(t, "kind-v1.30.yaml", managedFlags())
	n.write(agent.DefaultManifest, "kind: [")
	if _, err := drift.Check(drift.Node{FS: agent.OSFS{}, Root: n.root, Manifest: agent.DefaultManifest}, n.applied); err == nil {
		t.Error("no error for a manifest that does not parse")
	}
}
