package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/staticpod"
)

// secret stands for any file of the host the agent must never copy or overwrite (a key).
const secret = "-----BEGIN PRIVATE KEY-----\n"

// plantSecret writes the secret in the node's /etc/kubernetes/pki and returns its path.
func plantSecret(t *testing.T, tn *testNode) string {
	t.Helper()
	p := tn.local("/etc/kubernetes/pki/sa.key")
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Remove(link); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// assertNoSecretCopied checks that the secret appears nowhere under the node's root but in its
// own file.
func assertNoSecretCopied(t *testing.T, tn *testNode, secretFile string) {
	t.Helper()
	_ = filepath.WalkDir(tn.root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Type()&os.ModeSymlink != 0 || p == secretFile {
			return nil
		}
		if b, _ := os.ReadFile(p); strings.Contains(string(b), secret) {
			t.Errorf("the secret was copied into %s", p)
		}
		return nil
	})
	if b, _ := os.ReadFile(secretFile); string(b) != secret {
		t.Errorf("the secret file was overwritten: %q", b)
	}
}

// A symbolic link planted at the old fixed temporary name made a policy write overwrite the
// manifest; temporary names are now random, and created exclusively.
func TestALinkAtTheTemporaryNameNeverRedirectsAWrite(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	symlink(t, tn.manifest, filepath.Join(filepath.Dir(tn.local(tn.policyFile)), TempPrefix+"policy.yaml"))
	r := &Rollout{Files: tn.files(OSFS{}), Health: &fakeKubelet{tn: tn}, Clock: clock.RealClock{}}
	res, err := r.Apply(context.Background(), tn.target(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Phase != v1alpha1.NodeApplied {
		t.Fatalf("result = %+v", res)
	}
	if _, err := staticpod.ParsePod([]byte(tn.read(t, DefaultManifest))); err != nil {
		t.Errorf("the manifest was overwritten through the link: %v", err)
	}
}

// plantingFS plants a symbolic link to target at the very name of each temporary file just
// before the agent creates it, as a second writer racing the agent could.
type plantingFS struct {
	FS
	target string
}

func (p plantingFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if flag&os.O_CREATE != 0 && strings.HasPrefix(filepath.Base(name), TempPrefix) {
		_ = os.Symlink(p.target, name)
	}
	return p.FS.OpenFile(name, flag, perm)
}

func TestATemporaryFileIsCreatedExclusivelyNeverThroughALink(t *testing.T) {
	tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
	r := &Rollout{Files: tn.files(plantingFS{FS: OSFS{}, target: tn.manifest}), Health: &fakeKubelet{tn: tn}, Clock: clock.RealClock{}}
	res, err := r.Apply(context.Background(), tn.target(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Phase != v1alpha1.NodeFailed || res.Restarted || !strings.Contains(res.Message, "file exists") {
		t.Fatalf("result = %+v", res)
	}
	if tn.read(t, DefaultManifest) != string(tn.original) || tn.read(t, tn.policyFile) != oldPolicy {
		t.Error("the node changed")
	}
}

// No read for a backup and no write ever follows a symbolic link at a file the agent uses.
func TestALinkAtAnyNodeFileIsNeverFollowed(t *testing.T) {
	for _, tc := range []struct {
		name string
		// file is replaced with a link to the secret before the rollout or, with afterChanges,
		// once the rollout has changed the files and the agent was killed (the next agent
		// finishes it).
		file         string
		afterChanges bool
	}{
		{"policy file", "/etc/kubernetes/audit/policy.yaml", false},
		{"manifest", DefaultManifest, false},
		{"state", DefaultStateDir + "/" + stateFile, false},
		{"policy backup", DefaultStateDir + "/" + backupPolicyFile, true},
		{"manifest backup", DefaultStateDir + "/" + backupManifestFile, true},
		{"journal", DefaultStateDir + "/" + journalFile, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := newTestNode(t, "kubeadm-v1.33.yaml", true)
			secretFile := plantSecret(t, tn)
			files := tn.files(OSFS{})
			r := &Rollout{Files: files, Health: &fakeKubelet{tn: tn, bad: badNew}, Clock: clock.RealClock{}}
			var res *Result
			var err error
			if tc.afterChanges {
				changeFiles(t, files, tn.target())
				symlink(t, secretFile, tn.local(tc.file))
				res, err = r.Resume(context.Background(), time.Second)
			} else {
				symlink(t, secretFile, tn.local(tc.file))
				var applied Result
				applied, err = r.Apply(context.Background(), tn.target(), time.Second)
				res = &applied
			}
			msg := ""
			if err != nil {
				msg = err.Error()
			} else if res != nil {
				msg = res.Message
			}
			if !strings.Contains(msg, "symbolic link") {
				t.Errorf("got %+v, %v; want a failure naming the symbolic link", res, err)
			}
			assertNoSecretCopied(t, tn, secretFile)
			if fi, err := os.Lstat(tn.local(tc.file)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("the link at %s was replaced: %v", tc.file, err)
			}
		})
	}
}
