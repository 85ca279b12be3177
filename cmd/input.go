package cmd

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/inforce"
	"github.com/kaudit/kaudit/internal/lint"
	"github.com/kaudit/kaudit/internal/manifest"
	"github.com/kaudit/kaudit/internal/policy"
)

// policyInput is a merged policy read from manifests, with a name for reports.
type policyInput struct {
	Name   string
	Merged *policy.Merged
}

// readPolicy reads modules of both kinds, the AuditPolicy settings and plain audit.k8s.io/v1
// policies from paths ("-" is the command's stdin) and merges them as written: every module, as
// if the manager accepted them all (decide says which it would). Warnings about what was read
// go to the command's stderr.
func readPolicy(cmd *cobra.Command, paths []string) (*policyInput, error) {
	in, err := readModules(cmd, paths)
	if err != nil {
		return nil, err
	}
	merged, err := policy.Merge(in.Modules, in.Settings.Policy)
	if err != nil {
		return nil, err
	}
	return &policyInput{Name: in.Name, Merged: merged}, nil
}

// moduleInput is what was read from paths, before the merge.
type moduleInput struct {
	Name string
	// Modules are the modules of both kinds.
	Modules []policy.Module
	// Settings are the AuditPolicy's, with its defaults when none was given (guardrails: the
	// built-in ones), exactly as the manager reads the singleton; for a plain policy without an
	// AuditPolicy, those that "kaudit import" writes for it (importedSpec).
	Settings inforce.Settings
	// UnknownFields were dropped, as kube-apiserver drops them (readModulesLenient only).
	UnknownFields []lint.UnknownField
}

// decide decides, with the manager's own code, which spec of each module the manager would put
// in force on a cluster that has no revision yet: offline there is no last known good. It
// fails, as the manager makes no revision, when the settings are invalid.
func decide(in *moduleInput) (*inforce.Result, []inforce.Module, error) {
	if err := in.Settings.Validate(); err != nil {
		return nil, nil, err
	}
	modules := make([]inforce.Module, len(in.Modules))
	for i, m := range in.Modules {
		modules[i] = inforce.Module{Module: m, Invalid: policy.ValidateModule(m)}
	}
	r, err := inforce.Decide(inforce.Input{Modules: modules, Settings: in.Settings}, nil)
	if err != nil {
		return nil, nil, err
	}
	return r, modules, nil
}

// rejections names every module whose current spec the manager would not put in force, with the
// reason and message of its Accepted condition (an invalid module with the loader's error); nil
// when the manager would accept them all.
func rejections(r *inforce.Result, modules []inforce.Module) error {
	sorted := slices.Clone(modules)
	slices.SortFunc(sorted, func(a, b inforce.Module) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	var errs []error
	for _, m := range sorted {
		o := r.Outcomes[m.ID()]
		switch {
		case o.Accepted:
		case o.Reason == v1alpha1.ReasonInvalid && m.Invalid != nil:
			errs = append(errs, m.Invalid)
		default:
			errs = append(errs, fmt.Errorf("%s is rejected (%s): %s", moduleNoun(m.Module), o.Reason, o.Message))
		}
	}
	return errors.Join(errs...)
}

// moduleNoun names a module with its kind: AuditPolicyModule "x", NamespacedAuditPolicyModule
// "team-a/x".
func moduleNoun(m policy.Module) string {
	if m.Namespace != "" {
		return fmt.Sprintf("NamespacedAuditPolicyModule %q", m.ID())
	}
	return fmt.Sprintf("AuditPolicyModule %q", m.Name)
}

// readModules reads modules of both kinds, the AuditPolicy settings and plain audit.k8s.io/v1
// policies (split into modules as "kaudit import" does) from paths, without merging them. A field that an
// object's type does not have is an error.
func readModules(cmd *cobra.Command, paths []string) (*moduleInput, error) {
	return readModulesWith(cmd, paths, manifest.Read)
}

// readModulesLenient is readModules, but drops unknown fields as kube-apiserver would, and
// lists them with the module and rule they are in.
func readModulesLenient(cmd *cobra.Command, paths []string) (*moduleInput, error) {
	return readModulesWith(cmd, paths, manifest.ReadLenient)
}

func readModulesWith(cmd *cobra.Command, paths []string, read func(io.Reader, ...string) (*manifest.Set, error)) (*moduleInput, error) {
	if len(paths) == 0 {
		return nil, errors.New("no policy given: pass module files or directories, or an audit.k8s.io/v1 Policy file")
	}
	set, err := read(cmd.InOrStdin(), paths...)
	if err != nil {
		return nil, err
	}
	warn(cmd, set)
	in := &moduleInput{Name: strings.Join(paths, ",")}
	for _, u := range set.UnknownFields {
		in.UnknownFields = append(in.UnknownFields, lint.UnknownField{Module: u.Module, Rule: u.Rule, Problem: u.Problem})
	}
	for _, m := range set.Modules {
		in.Modules = append(in.Modules, policy.Module{Name: m.Name, Spec: m.Spec})
	}
	for _, m := range set.NamespacedModules {
		in.Modules = append(in.Modules, policy.NamespacedModule(m.Namespace, m.Name, m.Spec))
	}
	var spec v1alpha1.AuditPolicySpec
	if set.Policy != nil {
		spec = set.Policy.Spec
	}
	in.Settings = inforce.SettingsFrom(spec)
	switch len(set.Upstream) {
	case 0:
	case 1:
		up := set.Upstream[0]
		if err := loadUpstream(up); err != nil {
			return nil, err
		}
		imp := policy.Import(up.Policy, policy.ImportOptions{Prefix: importPrefix(up.Source), Source: up.Source})
		in.Modules = append(in.Modules, imp.Modules...)
		if set.Policy == nil {
			spec, _, err := importedSpec(imp)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", up.Source, err)
			}
			in.Settings = inforce.SettingsFrom(spec)
		}
		for i, u := range in.UnknownFields {
			// A rule of the policy file: name the module and rule it became, and keep its place
			// in the file in the message.
			if u.Module == "" && u.Rule >= 0 && u.Rule < len(imp.Sources) {
				src := imp.Sources[u.Rule]
				in.UnknownFields[i] = lint.UnknownField{Module: src.Module, Rule: src.Rule, Problem: fmt.Sprintf("rules[%d]: %s", u.Rule, u.Problem)}
				if src.IsDefault() {
					in.UnknownFields[i].Rule = -1
				}
			}
		}
	default:
		return nil, fmt.Errorf("%d audit.k8s.io/v1 Policy documents given (%s, %s): give at most one", len(set.Upstream), set.Upstream[0].Source, set.Upstream[1].Source)
	}
	if len(in.Modules) == 0 && set.Policy == nil {
		return nil, fmt.Errorf("no AuditPolicyModule, NamespacedAuditPolicyModule or audit.k8s.io/v1 Policy found in %s", strings.Join(paths, ", "))
	}
	return in, nil
}

// readSet reads the manifests of paths once (stdin can be read only once) and writes the
// warnings about them to the command's stderr.
func readSet(cmd *cobra.Command, paths []string) (*manifest.Set, error) {
	set, err := manifest.Read(cmd.InOrStdin(), paths...)
	if err != nil {
		return nil, err
	}
	warn(cmd, set)
	return set, nil
}

// warn writes the warnings about what was read to the command's stderr.
func warn(cmd *cobra.Command, set *manifest.Set) {
	for _, w := range set.Warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
}

// loadUpstream checks a plain policy with the apiserver's own loader first, so that a bad file
// gets the message kube-apiserver would print.
func loadUpstream(up manifest.UpstreamPolicy) error {
	b, err := json.Marshal(up.Policy)
	if err != nil {
		return err
	}
	if _, err := policy.Load(b); err != nil {
		return fmt.Errorf("%s: %w", up.Source, err)
	}
	return nil
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
