package cmd

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kaudit/kaudit/internal/lint"
	"github.com/kaudit/kaudit/internal/policy"
)

func init() { register(newLintCommand) }

// lintReport is the machine output of lint.
type lintReport struct {
	Findings []lint.Finding `json:"findings"`
	Errors   int            `json:"errors"`
	Warnings int            `json:"warnings"`
	Infos    int            `json:"infos"`
}

func newLintCommand() *cobra.Command {
	var (
		format, failOn, kubeconfig string
		resources                  []string
	)
	c := &cobra.Command{
		Use:   "lint PATH...",
		Short: "Find mistakes in audit policy modules before they reach a cluster",
		Long: `Lint merges the modules (or reads a plain audit.k8s.io/v1 Policy) and reports, with severity, module,
rule and a one-line fix:

  invalid                       what kube-apiserver's loader rejects (error)
  shadowed-rule, duplicate-rule rules that never decide a request: earlier rules match all of it
  shadowed-default              a module's catch-all makes the default level unreachable
  secrets-above-metadata        secrets, tokens, tokenreviews (error) or configmaps (warning) logged with bodies
  blinds-audit                  level None for system:masters or for everyone's writes (error)
  no-catch-all                  requests no module matches are not logged
  request-received-not-omitted  every request logged twice
  wildcard-requestresponse      bodies of whole API groups or of every resource
  list-watch-requestresponse    list and watch responses logged whole
  unknown-group, unknown-resource, unknown-verb
                                typos, checked against kube-apiserver's resources (and the
                                cluster's with --kubeconfig)

Reachability is decided by kube-apiserver's own evaluator on requests built from each rule's values.
The exit code is 1 when a finding is at or above --fail-on (default: error).`,
		Example: `  # Lint the preset modules
  kaudit lint config/modules

  # In CI: JSON, fail on warnings too
  kaudit lint modules/ --format json --fail-on warning

  # Know the cluster's custom resources
  kaudit lint modules/ --kubeconfig ~/.kube/config`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: must be text or json", format)
			}
			threshold, ok := map[string]int{"error": 0, "warning": 1, "info": 2, "never": -1}[failOn]
			if !ok {
				return fmt.Errorf("--fail-on %q: must be error, warning, info or never", failOn)
			}
			if kubeconfig != "" {
				more, err := discoverResources(kubeconfig)
				if err != nil {
					return fmt.Errorf("--kubeconfig: %w", err)
				}
				resources = append(resources, more...)
			}
			in, err := readModules(cmd.InOrStdin(), args)
			if err != nil {
				return err
			}
			findings, err := lintModules(in, lint.Options{Resources: resources})
			if err != nil {
				return err
			}
			rep := lintReport{Findings: findings}
			if rep.Findings == nil {
				rep.Findings = []lint.Finding{}
			}
			fail := false
			for _, f := range findings {
				switch f.Severity {
				case lint.Error:
					rep.Errors++
				case lint.Warning:
					rep.Warnings++
				default:
					rep.Infos++
				}
				if rank := map[lint.Severity]int{lint.Error: 0, lint.Warning: 1, lint.Info: 2}[f.Severity]; rank <= threshold {
					fail = true
				}
			}
			if format == "json" {
				err = writeJSON(cmd.OutOrStdout(), rep)
			} else {
				err = writeLintText(cmd.OutOrStdout(), rep)
			}
			if err != nil {
				return err
			}
			if fail {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&format, "format", "text", "output format: text or json")
	f.StringVar(&failOn, "fail-on", "error", "exit with code 1 when a finding has this severity or a higher one: error, warning, info or never")
	f.StringVar(&kubeconfig, "kubeconfig", "", "read the cluster's API resources (custom resources too) through this kubeconfig")
	f.StringSliceVar(&resources, "resources", nil, "more known resources, as GROUP/RESOURCE (e.g. cert-manager.io/certificates)")
	_ = c.RegisterFlagCompletionFunc("format", fixedCompletion("text", "json"))
	_ = c.RegisterFlagCompletionFunc("fail-on", fixedCompletion("error", "warning", "info", "never"))
	return c
}

// lintModules validates each module on its own (so one bad module does not hide the others'
// findings), then lints the policy merged from the valid ones.
func lintModules(in *moduleInput, opts lint.Options) ([]lint.Finding, error) {
	var findings []lint.Finding
	var valid []policy.Module
	for _, m := range in.Modules {
		if err := policy.ValidateModule(m); err != nil {
			findings = append(findings, lint.FromError(err)...)
			continue
		}
		valid = append(valid, m)
	}
	settings := in.Settings
	if err := policy.ValidateSettings(settings); err != nil {
		findings = append(findings, lint.FromError(err)...)
		settings = policy.Settings{}
	}
	merged, err := policy.Merge(valid, settings)
	if err != nil {
		return append(findings, lint.FromError(err)...), nil
	}
	more, err := lint.Lint(merged, opts)
	if err != nil {
		return nil, err
	}
	return append(findings, more...), nil
}

func writeLintText(w io.Writer, rep lintReport) error {
	var b strings.Builder
	for _, f := range rep.Findings {
		fmt.Fprintf(&b, "%-7s %s: %s [%s]\n        fix: %s\n", strings.ToUpper(string(f.Severity)), f.Where(), f.Message, f.Check, f.Fix)
	}
	fmt.Fprintf(&b, "%d errors, %d warnings, %d infos\n", rep.Errors, rep.Warnings, rep.Infos)
	_, err := io.WriteString(w, b.String())
	return err
}

// discoverResources lists the cluster's resources as GROUP/RESOURCE.
func discoverResources(kubeconfig string) ([]string, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	lists, err := dc.ServerPreferredResources()
	if err != nil && len(lists) == 0 {
		return nil, err
	}
	var out []string
	for _, l := range lists {
		group, _, _ := strings.Cut(l.GroupVersion, "/")
		if !strings.Contains(l.GroupVersion, "/") {
			group = ""
		}
		for _, r := range l.APIResources {
			out = append(out, group+"/"+r.Name)
		}
	}
	return out, nil
}
