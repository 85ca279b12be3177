package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/kaudit/kaudit/internal/manifest"
	"github.com/kaudit/kaudit/internal/policy"
)

// policyInput is a merged policy read from manifests, with a name for reports.
type policyInput struct {
	Name   string
	Merged *policy.Merged
}

// readPolicy reads modules, the AuditPolicy settings and plain audit.k8s.io/v1 policies from
// paths and merges them as the controller does.
func readPolicy(stdin io.Reader, paths []string) (*policyInput, error) {
	in, err := readModules(stdin, paths)
	if err != nil {
		return nil, err
	}
	merged, err := policy.Merge(in.Modules, in.Settings)
	if err != nil {
		return nil, err
	}
	return &policyInput{Name: in.Name, Merged: merged}, nil
}

// moduleInput is what was read from paths, before the merge.
type moduleInput struct {
	Name     string
	Modules  []policy.Module
	Settings policy.Settings
}

// readModules reads modules, the AuditPolicy settings and plain audit.k8s.io/v1 policies (split
// into modules as "kaudit import" does) from paths, without merging them.
func readModules(stdin io.Reader, paths []string) (*moduleInput, error) {
	if len(paths) == 0 {
		return nil, errors.New("no policy given: pass module files or directories, or an audit.k8s.io/v1 Policy file")
	}
	set, err := manifest.Read(stdin, paths...)
	if err != nil {
		return nil, err
	}
	in := &moduleInput{Name: strings.Join(paths, ",")}
	for _, m := range set.Modules {
		in.Modules = append(in.Modules, policy.Module{Name: m.Name, Spec: m.Spec})
	}
	if set.Policy != nil {
		in.Settings = policy.SettingsFrom(set.Policy.Spec)
	}
	switch len(set.Upstream) {
	case 0:
	case 1:
		up := set.Upstream[0]
		// The apiserver's own loader first, so a bad file gets the message kube-apiserver would print.
		b, err := json.Marshal(up.Policy)
		if err != nil {
			return nil, err
		}
		if _, err := policy.Load(b); err != nil {
			return nil, fmt.Errorf("%s: %w", up.Source, err)
		}
		imp := policy.Import(up.Policy, policy.ImportOptions{Prefix: importPrefix(up.Source), Source: up.Source})
		in.Modules = append(in.Modules, imp.Modules...)
		if set.Policy == nil {
			in.Settings = imp.Settings
		}
	default:
		return nil, fmt.Errorf("%d audit.k8s.io/v1 Policy documents given (%s, %s): give at most one", len(set.Upstream), set.Upstream[0].Source, set.Upstream[1].Source)
	}
	if len(in.Modules) == 0 && set.Policy == nil {
		return nil, fmt.Errorf("no AuditPolicyModule or audit.k8s.io/v1 Policy found in %s", strings.Join(paths, ", "))
	}
	return in, nil
}

// importPrefix names imported modules after the file they came from.
func importPrefix(source string) string {
	file, _, _ := strings.Cut(source, ":")
	base := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	if base == "" || base == "<stdin>" || base == "." {
		return "imported"
	}
	return base
}
