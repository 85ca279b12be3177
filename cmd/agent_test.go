package cmd

import (
	"bytes"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

func TestAgentNeedsANodeName(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	root := NewRootCommand()
	root.SetArgs([]string{"agent"})
	root.SetOut(&bytes.Buffer{})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "NODE_NAME") {
		t.Fatalf("err = %v, want one naming NODE_NAME", err)
	}
}

func TestAgentCollectsGarbageSoonerUnlessGOGCIsSet(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "200")
	debug.SetGCPercent(200)
	setAgentGCPercent()
	if got := debug.SetGCPercent(100); got != 200 {
		t.Errorf("with GOGC=200 the agent's GC percent is %d, want 200", got)
	}
	if err := os.Unsetenv("GOGC"); err != nil {
		t.Fatal(err)
	}
	setAgentGCPercent()
	if got := debug.SetGCPercent(100); got != agentGCPercent {
		t.Errorf("without GOGC the agent's GC percent is %d, want %d", got, agentGCPercent)
	}
}

func TestAgentHelpDocumentsEveryPathAndTheReadyzSettings(t *testing.T) {
	root := NewRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"agent", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--root", "--manifest", "--policy-file", "--state-dir", "--readyz-url", "--readyz-insecure-skip-verify", "--readyz-token-file", "Example", "/etc/kubernetes/manifests/kube-apiserver.yaml"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestAgentAPIRequestsHaveADeadlineButNotItsWatch(t *testing.T) {
	api, watch := agentConfigs(&rest.Config{Host: "https://127.0.0.1:6443", Timeout: time.Hour})
	if api.Timeout != 30*time.Second {
		t.Errorf("API request timeout = %s, want 30s", api.Timeout)
	}
	if watch.Timeout != 0 {
		t.Errorf("watch timeout = %s, want none (a watch stays open)", watch.Timeout)
	}
}

func TestAgentLocalAPIServerHasShorterDeadlinesAndTheSameCredentials(t *testing.T) {
	cfg := &rest.Config{Host: "https://10.96.0.1:443", BearerTokenFile: "/token", TLSClientConfig: rest.TLSClientConfig{CAFile: "/ca.crt"}}
	api, watch := localConfigs(cfg, "https://172.18.0.4:6443")
	for _, c := range []*rest.Config{api, watch} {
		if c.Host != "https://172.18.0.4:6443" || c.BearerTokenFile != "/token" || c.CAFile != "/ca.crt" || c.Dial == nil {
			t.Errorf("local config %+v", c)
		}
	}
	if api.Timeout != localAPITimeout || watch.Timeout != 0 {
		t.Errorf("timeouts %s and %s, want %s and none", api.Timeout, watch.Timeout, localAPITimeout)
	}
	if cfg.Host != "https://10.96.0.1:443" {
		t.Error("the configured address changed")
	}
}

func TestAgentLocalAPIServerIsExplicitOrKubeadmsInTheCluster(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	cfg := &rest.Config{Host: "https://127.0.0.1:6443"}
	for value, want := range map[string]string{"none": "", "https://10.0.0.10:6443": "https://10.0.0.10:6443", localAPIServerAuto: ""} {
		got, err := localAPIServerURL(agentOptions{localAPIServer: value}, cfg, nil)
		if err != nil || got != want {
			t.Errorf("--local-apiserver=%s outside the cluster: got %q, %v, want %q", value, got, err, want)
		}
	}
}

func TestAgentRefusesALocalAPIServerThatIsNotAnHTTPSURL(t *testing.T) {
	for value, ok := range map[string]bool{
		"auto": true, "none": true, "https://10.0.0.2:6443": true,
		"10.0.0.2:6443": false, "http://10.0.0.2:6443": false, "https://": false, "autо": false,
	} {
		if err := checkLocalAPIServer(value); (err == nil) != ok {
			t.Errorf("--local-apiserver %q: %v", value, err)
		}
	}
}
