package staticpod

import (
	"bytes"
	"strings"
	"testing"
)

func TestEnsureFlagsAddsOnlyAuditFlagsAndMounts(t *testing.T) {
	for _, name := range manifests {
		t.Run(name, func(t *testing.T) {
			in := readTestdata(t, name)
			out, err := EnsureFlags(in, managed)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(name, ".yaml")+".flags.golden", out)
			if !isSubsequence(removeReplaced(in, out), out) {
				t.Error("original lines were reordered")
			}
			for _, l := range changedLines(in, out) {
				if strings.Contains(l, "- --") && !strings.Contains(l, "--audit-") {
					t.Errorf("a non-audit flag changed: %q", l)
				}
			}
			again, err := EnsureFlags(out, managed)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, out) {
				t.Errorf("EnsureFlags is not idempotent; second run changed:\n%q", changedLines(out, again))
			}
			c, host, err := PolicyFileInManifest(out)
			if err != nil || c != managed.PolicyFile || host != managed.PolicyFile {
				t.Errorf("PolicyFileInManifest() = %q, %q, %v", c, host, err)
			}
		})
	}
}

func TestEnsureFlagsChangesAValueInPlaceKeepingItsComment(t *testing.T) {
	in := readTestdata(t, "hand-edited-audit.yaml")
	s := managed
	s.PolicyFile = "/etc/kubernetes/policies/audit-policy.yaml"
	out, err := EnsureFlags(in, s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("    - --audit-log-maxage=7\n")) || bytes.Contains(out, []byte("maxage=30")) {
		t.Errorf("maxage not replaced in place:\n%s", out)
	}
	if !bytes.Contains(out, []byte("    - --secure-port=6443 # keep in sync with the load balancer\n")) {
		t.Error("an untouched flag's comment was lost")
	}
	if bytes.Contains(out, []byte(VolumePolicy)) || bytes.Contains(out, []byte(VolumeLog)) {
		t.Errorf("existing mounts of the same directories must be reused:\n%s", out)
	}
}

func TestPolicyFileInManifestMapsThroughTheVolumeMount(t *testing.T) {
	c, host, err := PolicyFileInManifest(readTestdata(t, "hand-edited-audit.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c != "/etc/kubernetes/policies/audit-policy.yaml" || host != "/etc/kubernetes/policies/audit-policy.yaml" {
		t.Errorf("got %q, %q", c, host)
	}
	_, _, err = PolicyFileInManifest(readTestdata(t, "kubeadm-v1.33.yaml"))
	if err == nil || !strings.Contains(err.Error(), "manageAPIServerFlags") {
		t.Errorf("a manifest without --audit-policy-file must say how to fix it, got %v", err)
	}
	moved := bytes.Replace(readTestdata(t, "hand-edited-audit.yaml"), []byte("      path: /etc/kubernetes/policies\n"), []byte("      path: /srv/audit\n"), 1)
	if _, host, err := PolicyFileInManifest(moved); err != nil || host != "/srv/audit/audit-policy.yaml" {
		t.Errorf("host path through a volume at another path: got %q, %v", host, err)
	}
	unmounted := bytes.Replace(readTestdata(t, "hand-edited-audit.yaml"), []byte("policies/audit-policy.yaml"), []byte("elsewhere/p.yaml"), 1)
	if _, _, err := PolicyFileInManifest(unmounted); err == nil || !strings.Contains(err.Error(), "not under any volume mount") {
		t.Errorf("unmounted policy: got %v", err)
	}
}

// The layout the Kubernetes documentation shows mounts the policy file alone: the agent could
// not replace it, so the error says what to change instead of leaving a write to fail.
func TestPolicyFileInManifestRefusesAPolicyFileMountedAlone(t *testing.T) {
	_, _, err := PolicyFileInManifest(readTestdata(t, "docs-single-file-audit.yaml"))
	for _, want := range []string{"/etc/kubernetes/audit-policy.yaml as a single file", `volume "audit"`, "mount that directory instead", "manageAPIServerFlags: true"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("PolicyFileInManifest() = %v, want an error saying %q", err, want)
		}
	}
}

// A hostPath volume of the log directory that is mounted elsewhere, or not at all, is mounted
// under its own name: a mount naming a volume the pod lacks makes kubelet reject the pod.
func TestEnsureFlagsMountsAnExistingLogVolumeUnderItsOwnName(t *testing.T) {
	in := readTestdata(t, "kubeadm-v1.33.yaml")
	withVolume, err := appendItem(in, "volumes", false, "hostPath:\n  path: /var/log/kubernetes/audit\n  type: DirectoryOrCreate\nname: audit-logs\n")
	if err != nil {
		t.Fatal(err)
	}
	elsewhere, err := appendItem(withVolume, "volumeMounts", true, "mountPath: /logs\nname: audit-logs\n")
	if err != nil {
		t.Fatal(err)
	}
	for name, manifest := range map[string][]byte{"not mounted": withVolume, "mounted elsewhere": elsewhere} {
		t.Run(name, func(t *testing.T) {
			out, err := EnsureFlags(manifest, managed)
			if err != nil {
				t.Fatal(err)
			}
			pod, err := ParsePod(out)
			if err != nil {
				t.Fatal(err)
			}
			if err := mountsResolve(pod); err != nil {
				t.Fatal(err)
			}
			m := mountFor(apiserverContainer(pod), "/var/log/kubernetes/audit")
			if m == nil || m.Name != "audit-logs" {
				t.Errorf("log directory mount = %+v, want the existing volume audit-logs", m)
			}
			for _, v := range pod.Spec.Volumes {
				if v.Name == VolumeLog {
					t.Errorf("a second volume %s was added for the same directory", VolumeLog)
				}
			}
		})
	}
}

func TestEnsureFlagsSetsTheShutdownDelayOnlyWhenAsked(t *testing.T) {
	in := readTestdata(t, "kind-v1.30.yaml")
	s := managed
	s.ShutdownDelay = "15s"
	out, err := EnsureFlags(in, s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("    - --shutdown-delay-duration=15s\n    - --tls-cert-file=")) {
		t.Errorf("--shutdown-delay-duration=15s not inserted in sorted position:\n%s", out)
	}
	s.ShutdownDelay = "5s"
	changed, err := EnsureFlags(out, s)
	if err != nil {
		t.Fatal(err)
	}
	if got := changedLines(out, changed); len(got) != 1 || got[0] != "    - --shutdown-delay-duration=5s" {
		t.Errorf("changing the delay changed %q", got)
	}
	unset, err := EnsureFlags(changed, managed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(unset, changed) {
		t.Errorf("an unset delay must leave the flag as it is; changed %q", changedLines(changed, unset))
	}
}

// kubelet kills kube-apiserver at the end of the termination grace period (30 s unless the
// manifest sets it): a delay that long is refused, with what to change, and nothing is edited.
func TestEnsureFlagsRefusesAShutdownDelayTheGracePeriodCannotHold(t *testing.T) {
	in := readTestdata(t, "kind-v1.30.yaml")
	s := managed
	s.ShutdownDelay = "30s"
	if _, err := EnsureFlags(in, s); err == nil || !strings.Contains(err.Error(), "termination grace period (30 s)") {
		t.Errorf("a 30s delay under the default 30 s grace period: %v", err)
	}
	longer := bytes.Replace(in, []byte("spec:\n"), []byte("spec:\n  terminationGracePeriodSeconds: 60\n"), 1)
	if _, err := EnsureFlags(longer, s); err != nil {
		t.Errorf("a 30s delay under a 60 s grace period: %v", err)
	}
}

func TestAuditLogPathInManifestMapsThroughTheVolumeMount(t *testing.T) {
	c, host, err := AuditLogPathInManifest(readTestdata(t, "hand-edited-audit.yaml"))
	if err != nil || c == "" || host == "" {
		t.Fatalf("AuditLogPathInManifest() = %q, %q, %v", c, host, err)
	}
	manifest := string(readTestdata(t, "hand-edited-audit.yaml"))
	for _, tc := range []struct{ name, from, to, want string }{
		{"absent", "--audit-log-path=" + c, "--v=2", "no --audit-log-path flag"},
		{"stdout", "--audit-log-path=" + c, "--audit-log-path=-", "standard output"},
		{"unmounted", "--audit-log-path=" + c, "--audit-log-path=/nowhere/audit.log", "not under any volume mount"},
	} {
		_, _, err := AuditLogPathInManifest([]byte(strings.Replace(manifest, tc.from, tc.to, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to say %q", tc.name, err, tc.want)
		}
	}
}
