package staticpod

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
)

// FlagSettings are the apiserver flags kaudit manages when spec.manageAPIServerFlags is true.
type FlagSettings struct {
	// PolicyFile is --audit-policy-file, a host path mounted at the same path in the pod.
	PolicyFile string `json:"policyFile"`
	// LogPath is --audit-log-path, likewise.
	LogPath   string `json:"logPath"`
	MaxAge    int32  `json:"maxAge"`
	MaxBackup int32  `json:"maxBackup"`
	MaxSize   int32  `json:"maxSize"`
	// ShutdownDelay is --shutdown-delay-duration (spec.shutdownDelayDuration); empty leaves
	// the flag as the manifest has it.
	ShutdownDelay string `json:"shutdownDelay,omitempty"`
}

// flags are every flag kaudit may manage with s's values, in alphabetical order; an empty value
// leaves its flag alone.
func (s FlagSettings) flags() [][2]string {
	return [][2]string{
		{"--audit-log-maxage", fmt.Sprint(s.MaxAge)},
		{"--audit-log-maxbackup", fmt.Sprint(s.MaxBackup)},
		{"--audit-log-maxsize", fmt.Sprint(s.MaxSize)},
		{"--audit-log-path", s.LogPath},
		{"--audit-policy-file", s.PolicyFile},
		{"--shutdown-delay-duration", s.ShutdownDelay},
	}
}

// set are the flags of s that EnsureFlags sets.
func (s FlagSettings) set() [][2]string {
	return slices.DeleteFunc(s.flags(), func(f [2]string) bool { return f[1] == "" })
}

// EnsureFlags returns the manifest with the flags of s set on the kube-apiserver container and
// hostPath directory volumes mounted for the policy and the log. It never touches any other
// flag, and is idempotent: a manifest that already has them comes back unchanged.
func EnsureFlags(manifest []byte, s FlagSettings) ([]byte, error) {
	if !path.IsAbs(s.PolicyFile) || !path.IsAbs(s.LogPath) {
		return nil, fmt.Errorf("audit policy file %q and log path %q must be absolute", s.PolicyFile, s.LogPath)
	}
	out := manifest
	var err error
	for _, f := range s.set() {
		if out, err = ensureFlag(out, f[0], f[1]); err != nil {
			return nil, fmt.Errorf("setting flag %s: %w", f[0], err)
		}
	}
	mounts := []struct {
		name, dir string
		readOnly  bool
	}{
		{VolumePolicy, path.Dir(s.PolicyFile), true},
		{VolumeLog, path.Dir(s.LogPath), false},
	}
	for _, m := range mounts {
		if out, err = ensureHostPathMount(out, m.name, m.dir, m.readOnly); err != nil {
			return nil, fmt.Errorf("mounting %s: %w", m.dir, err)
		}
	}
	return out, verifyEdit(manifest, out, func(p *corev1.Pod) error {
		if err := shutdownDelayFits(p, s.ShutdownDelay); err != nil {
			return err
		}
		c := apiserverContainer(p)
		for _, f := range s.set() {
			setFlag(c, f[0], f[1])
		}
		for _, m := range mounts {
			addMount(p, c, m.name, m.dir, m.readOnly)
		}
		return nil
	})
}

// shutdownDelayFits refuses a --shutdown-delay-duration that the pod's termination grace period
// (kubelet's default 30 s when unset) does not leave time for: kubelet would kill kube-apiserver
// in the middle of the delay, with its listener still open, which is what the delay avoids.
func shutdownDelayFits(p *corev1.Pod, delay string) error {
	if delay == "" {
		return nil
	}
	d, err := time.ParseDuration(delay)
	if err != nil {
		return fmt.Errorf("--shutdown-delay-duration %q: %w", delay, err)
	}
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if p.Spec.TerminationGracePeriodSeconds != nil {
		grace = *p.Spec.TerminationGracePeriodSeconds
	}
	if d >= time.Duration(grace)*time.Second {
		return fmt.Errorf("spec.shutdownDelayDuration %s is not below the static pod's termination grace period (%d s): kubelet would kill kube-apiserver before it stops serving; lower it, or raise terminationGracePeriodSeconds in the manifest", delay, grace)
	}
	return nil
}

// setFlag is the meaning of ensureFlag's text edit, used to verify it.
func setFlag(c *corev1.Container, flag, value string) {
	for _, list := range []*[]string{&c.Command, &c.Args} {
		for i, a := range *list {
			if strings.HasPrefix(a, flag+"=") {
				(*list)[i] = flag + "=" + value
				return
			}
		}
	}
	list := &c.Command
	if !hasFlags(c.Command) && hasFlags(c.Args) {
		list = &c.Args
	}
	item := flag + "=" + value
	at := len(*list)
	for i, a := range *list {
		if i > 0 && strings.HasPrefix(a, "--") && a > item {
			at = i
			break
		}
	}
	*list = slices.Insert(*list, at, item)
}

// hasFlags reports whether a command or args list holds a flag.
func hasFlags(list []string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.HasPrefix(s, "--") })
}

// ensureFlag sets flag=value in the apiserver container's command or args: in place where the
// flag is, otherwise as a new item before the first flag that sorts after it.
func ensureFlag(src []byte, flag, value string) ([]byte, error) {
	t, err := parseText(src)
	if err != nil {
		return nil, err
	}
	c, err := t.container()
	if err != nil {
		return nil, err
	}
	_, cmd := mapGet(c, "command")
	_, args := mapGet(c, "args")
	for _, list := range []*yaml.Node{cmd, args} {
		if list == nil {
			continue
		}
		if list.Kind != yaml.SequenceNode || isFlow(list) {
			return nil, fmt.Errorf("line %d: command/args is not a block sequence", list.Line)
		}
		for _, item := range list.Content {
			if item.Kind != yaml.ScalarNode {
				continue
			}
			if item.Value == flag {
				return nil, fmt.Errorf("line %d: %s is given as a separate argument; write it as %s=VALUE", item.Line, flag, flag)
			}
			if strings.HasPrefix(item.Value, flag+"=") {
				if item.Value == flag+"="+value {
					return src, nil
				}
				if err := t.replaceScalar(item, flag+"="+value); err != nil {
					return nil, err
				}
				return t.bytes(), nil
			}
		}
	}
	list := cmd
	if list == nil || (!nodeHasFlags(cmd) && nodeHasFlags(args)) {
		list = args
	}
	if list == nil || len(list.Content) == 0 {
		return nil, fmt.Errorf("line %d: the %s container has no command or args to add %s to", c.Line, APIServerContainer, flag)
	}
	item := flag + "=" + value
	dash := list.Content[0].Column - 3
	if dash < 0 || !t.dashAt(list.Content[0].Line, dash) {
		return nil, fmt.Errorf("line %d: unsupported layout of the command list", list.Line)
	}
	text := strings.Repeat(" ", dash) + "- " + scalar(item) + "\n"
	for i, n := range list.Content {
		if i > 0 && strings.HasPrefix(n.Value, "--") && n.Value > item {
			t.insertBefore(n.Line, text)
			return t.bytes(), nil
		}
	}
	t.insertAfter(t.extent(list.Content[len(list.Content)-1], dash), text)
	return t.bytes(), nil
}

// nodeHasFlags is hasFlags on a command or args sequence of the parse tree.
func nodeHasFlags(list *yaml.Node) bool {
	if list == nil {
		return false
	}
	return slices.ContainsFunc(list.Content, func(n *yaml.Node) bool { return strings.HasPrefix(n.Value, "--") })
}

// PolicyFileInManifest finds where the manifest's kube-apiserver reads its audit policy: the
// value of --audit-policy-file in the container and, through the volume mounts, the host path.
func PolicyFileInManifest(manifest []byte) (containerPath, hostPath string, err error) {
	pod, c, err := parseAPIServer(manifest)
	if err != nil {
		return "", "", err
	}
	containerPath = flagArg(c, "--audit-policy-file")
	if containerPath == "" {
		return "", "", fmt.Errorf("kube-apiserver has no --audit-policy-file flag: add it with a hostPath directory volume, or set spec.manageAPIServerFlags: true on AuditPolicy %q", "cluster")
	}
	containerPath = path.Clean(containerPath)
	hostPath, v, err := hostPathOf(pod, c, "--audit-policy-file", containerPath)
	if err == nil && v != nil {
		return containerPath, "", singleFileMountError(containerPath, *v)
	}
	return containerPath, hostPath, err
}

// AuditLogPathInManifest finds where the manifest's kube-apiserver writes its audit log: the value
// of --audit-log-path in the container and, through the volume mounts, the host path. The
// container path is "" when the flag is absent and "-" for standard output, which have no host
// path; err says so.
func AuditLogPathInManifest(manifest []byte) (containerPath, hostPath string, err error) {
	pod, c, err := parseAPIServer(manifest)
	if err != nil {
		return "", "", err
	}
	switch containerPath = flagArg(c, "--audit-log-path"); containerPath {
	case "":
		return "", "", errors.New("kube-apiserver has no --audit-log-path flag: it writes no audit log file")
	case "-":
		return "-", "", errors.New("kube-apiserver writes its audit log to standard output (--audit-log-path=-), not to a file")
	}
	containerPath = path.Clean(containerPath)
	hostPath, v, err := hostPathOf(pod, c, "--audit-log-path", containerPath)
	if err == nil && v != nil {
		return containerPath, "", fmt.Errorf("--audit-log-path=%s is mounted as a single file (volume %q), so its rotated files are not on the host: mount its directory instead", containerPath, v.Name)
	}
	return containerPath, hostPath, err
}

// parseAPIServer parses the manifest and finds its kube-apiserver container.
func parseAPIServer(manifest []byte) (*corev1.Pod, *corev1.Container, error) {
	pod, err := ParsePod(manifest)
	if err != nil {
		return nil, nil, err
	}
	c := apiserverContainer(pod)
	if c == nil {
		return nil, nil, fmt.Errorf("the manifest has no container named %s", APIServerContainer)
	}
	return pod, c, nil
}

// flagArg is the last value of flag in the container's command and args, "--flag=value" or
// "--flag value"; "" when it is absent.
func flagArg(c *corev1.Container, flag string) string {
	value := ""
	args := append(slices.Clone(c.Command), c.Args...)
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, flag+"="):
			value = strings.TrimPrefix(a, flag+"=")
		case a == flag && i+1 < len(args):
			value = args[i+1]
		}
	}
	return value
}

// hostPathOf maps containerPath, the value of flag, to a host path through the container's
// deepest volume mount that holds it. When that mount is the file itself, it returns the volume
// instead of a host path.
func hostPathOf(pod *corev1.Pod, c *corev1.Container, flag, containerPath string) (hostPath string, singleFile *corev1.Volume, err error) {
	best := ""
	var bestMount corev1.VolumeMount
	for _, m := range c.VolumeMounts {
		mp := path.Clean(m.MountPath)
		if (containerPath == mp || strings.HasPrefix(containerPath, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best, bestMount = mp, m
		}
	}
	if best == "" {
		return "", nil, fmt.Errorf("%s=%s is not under any volume mount of kube-apiserver, so the agent cannot tell its host path", flag, containerPath)
	}
	for i, v := range pod.Spec.Volumes {
		if v.Name != bestMount.Name {
			continue
		}
		if v.HostPath == nil {
			return "", nil, fmt.Errorf("%s=%s is on volume %q, which is not a hostPath volume", flag, containerPath, v.Name)
		}
		if best == containerPath {
			return "", &pod.Spec.Volumes[i], nil
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(containerPath, best), "/")
		if bestMount.SubPath != "" {
			rel = path.Join(bestMount.SubPath, rel)
		}
		return path.Join(v.HostPath.Path, rel), nil, nil
	}
	return "", nil, fmt.Errorf("volume mount %q of %s=%s has no volume", bestMount.Name, flag, containerPath)
}

// singleFileMountError explains why the agent cannot write a policy file that kube-apiserver
// mounts as a single file (the layout the Kubernetes documentation shows): the agent sees the
// host through directory mounts and replaces files by renaming a new one over them, so it needs
// the file's directory mounted, into kube-apiserver and into the agent alike.
func singleFileMountError(policyFile string, v corev1.Volume) error {
	return fmt.Errorf("kube-apiserver mounts the audit policy file %s as a single file (volume %q, hostPath %s), "+
		"which the agent cannot replace: move the policy into a directory of its own and mount that directory instead "+
		"(hostPath type DirectoryOrCreate, in kube-apiserver and in the kaudit agent, which mounts /etc/kubernetes/audit), "+
		"or set spec.manageAPIServerFlags: true on AuditPolicy %q to let kaudit set the flag and mount its directory",
		policyFile, v.Name, v.HostPath.Path, "cluster")
}
