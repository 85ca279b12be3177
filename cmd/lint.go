package cmd

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kaudit/kaudit/internal/lint"
)

func init() { register(newLintCommand) }

func newLintCommand() *cobra.Command {
	var (
		failOn, kubeconfig string
		resources          []string
	)
	format := newFormatFlag("text", "json")
	c := &cobra.Command{
		Use:   "lint PATH...",
		Short: "Find mistakes in audit policy modules before they reach a cluster",
		Long: `Lint merges the modules of both kinds (or reads a plain audit.k8s.io/v1 Policy) and reports, with
severity, module, rule and a one-line fix, what these checks find:

` + checkTable() + `
What the manager would reject is decided by the manager's own code, on a cluster without a
revision yet, with the guardrails and namespaced-module settings of the AuditPolicy manifest given
(without one, the built-in guardrails hold; a plain policy file is read with the AuditPolicy
"kaudit import" writes for it); the messages are those of the modules' Accepted conditions.
Resources, API groups and verbs are checked against kube-apiserver's own (and the cluster's custom
resources, with --kubeconfig or --resources). Reachability is decided by kube-apiserver's own
evaluator on requests built from each rule's values.
The exit code is 1 when a finding is at or above --fail-on (default: error).`,
		Example: `  # Lint the preset modules
  kaudit lint config/modules

  # In CI: JSON, fail on warnings too
  kaudit lint modules/ --format json --fail-on warning

  # Know the cluster's custom resources
  kaudit lint modules/ --kubeconfig ~/.kube/config`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := format.get()
			if err != nil {
				return err
			}
			threshold, err := lint.ParseFailOn(failOn)
			if err != nil {
				return fmt.Errorf("--fail-on %w", err)
			}
			if kubeconfig != "" {
				more, err := discoverResources(kubeconfig)
				if err != nil {
					return fmt.Errorf("--kubeconfig: %w", err)
				}
				resources = append(resources, more...)
			}
			in, err := readModulesLenient(cmd, args)
			if err != nil {
				return err
			}
			findings, err := lint.Modules(in.Modules, in.Settings, lint.Options{Resources: resources, UnknownFields: in.UnknownFields})
			if err != nil {
				return err
			}
			rep := lint.NewReport(findings)
			if out == "json" {
				err = writeJSON(cmd.OutOrStdout(), rep)
			} else {
				err = rep.WriteText(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			if threshold.Fails(findings) {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	f := c.Flags()
	format.addTo(c)
	f.StringVar(&failOn, "fail-on", "error", "exit with code 1 when a finding has this severity or a higher one: "+orList(lint.FailOnValues))
	f.StringVar(&kubeconfig, "kubeconfig", "", "read the cluster's API resources (custom resources too) through this kubeconfig")
	f.StringSliceVar(&resources, "resources", nil, "more known resources, as GROUP/RESOURCE (e.g. cert-manager.io/certificates)")
	_ = c.RegisterFlagCompletionFunc("fail-on", fixedCompletion(lint.FailOnValues...))
	return c
}

// checkTable lists the catalogue of checks for --help.
func checkTable() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "  CHECK\tSEVERITY\tFINDS")
	for _, c := range lint.Checks() {
		fmt.Fprintf(w, "  %s\t%s\t%s\n", c.Name, c.Severity, c.Summary)
	}
	_ = w.Flush() // a strings.Builder does not fail
	return b.String()
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
