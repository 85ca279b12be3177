package cmd

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/kaudit/kaudit/internal/advise"
	"github.com/kaudit/kaudit/internal/simulate"
)

func init() { register(newAdviseCommand) }

func newAdviseCommand() *cobra.Command {
	var (
		policyPaths    []string
		dropWrites     bool
		maxRules, cpus int
	)
	format := newFormatFlag("yaml", "json")
	c := &cobra.Command{
		Use:   "advise --policy PATH... [LOG...]",
		Short: "Suggest modules that cut a policy's volume, from recorded audit logs",
		Long: `Advise reads recorded kube-apiserver audit logs (JSON lines, plain or gzip, recorded at any level;
files, directories of rotated logs, or - for stdin) and a starting policy (--policy: modules,
directories, kustomizations, an AuditPolicy manifest, or a plain audit.k8s.io/v1 Policy, read as
render reads them), and suggests AuditPolicyModules that cut the volume the policy writes.

It groups the events by identity (a user, or the kubelets as the group system:nodes), verb,
resource and namespace, weighs each group in bytes as simulate estimates them, and proposes None
rules for reads and Metadata rules for writes (None too with --drop-writes), one module per
identity, at most --max-rules rules, those that save the most. A rule is never proposed if it
would drop or lower a security-relevant request of the logs (R1-R6 of docs/modules.md), or make
the merged policy break a guardrail that the starting policy keeps: the built-in guardrails, and
those of the AuditPolicy "cluster" manifest when --policy includes it. Each module is ordered
right before the starting module that decides what it takes over, so that the starting modules
ordered before it (Secrets, privilege changes, system:masters) still decide first.

The output is the modules as YAML, ready to apply and accepted by render, with a comment per rule
(the events and bytes it saves, what it stops recording) under a header that compares the
starting policy with the result as simulate --against does: events and bytes written, and the
security-relevant requests each records at the required level. --format json writes the same as
one object. Suggestions come from what the logs hold, and a rule also matches requests of the
same kind that they do not: give logs of the cluster's usual work, and review each rule. For a
plain policy file, the modules go with those "kaudit import" makes of it.

The exit code is 1 when an input cannot be read or holds no audit event.`,
		Example: `  # Suggestions for the baseline from a control-plane node's rotated logs, and the policy with them
  kaudit advise --policy config/modules/baseline /var/log/kubernetes/audit/ > advised.yaml
  kaudit render config/modules/baseline advised.yaml

  # For the policy file in force, dropping writes that are not security-relevant too
  kaudit advise --policy /etc/kubernetes/audit/policy.yaml --drop-writes audit.log.gz

  # The 10 rules that save the most, as JSON
  kaudit advise -p modules/ --max-rules 10 -o json audit-1.log.gz audit.log`,
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := format.get()
			if err != nil {
				return err
			}
			if len(policyPaths) == 0 {
				return fmt.Errorf("--policy is required")
			}
			if maxRules < 0 || cpus < 0 {
				return fmt.Errorf("--max-rules %d, --cpus %d: give 0 or more", maxRules, cpus)
			}
			in, err := readModules(cmd, policyPaths)
			if err != nil {
				return fmt.Errorf("--policy: %w", err)
			}
			if cpus > 0 {
				runtime.GOMAXPROCS(cpus)
			}
			if len(args) == 0 {
				args = []string{"-"}
				if isTerminal(cmd.InOrStdin()) {
					fmt.Fprintln(cmd.ErrOrStderr(), "kaudit advise: reading audit events from stdin (Ctrl-D ends them); give log files or directories to read those instead")
				}
			}
			var inputs []simulate.Input
			for _, a := range args {
				files, err := expandLogs(a)
				if err != nil {
					return err
				}
				for _, f := range files {
					inputs = append(inputs, logInput(cmd.InOrStdin(), f))
				}
			}
			advice, err := advise.Run(cmd.Context(), inputs, advise.Options{
				Start: advise.Start{Name: in.Name, Modules: in.Modules, Settings: in.Settings.Policy},
				// The singleton's guardrails, as the manager reads them (the built-in ones when none was given).
				Guardrails: in.Settings.Guardrails,
				DropWrites: dropWrites,
				MaxRules:   maxRules,
				Workers:    cpus,
			})
			if err != nil {
				return err
			}
			if out == "json" {
				return writeJSON(cmd.OutOrStdout(), advice)
			}
			return advice.WriteYAML(cmd.OutOrStdout())
		},
	}
	f := c.Flags()
	f.StringSliceVarP(&policyPaths, "policy", "p", nil, "the starting policy: module files or directories, an AuditPolicy manifest, or an audit.k8s.io/v1 Policy (repeatable)")
	f.BoolVar(&dropWrites, "drop-writes", false, "also suggest None for writes that are not security-relevant (by default writes keep Metadata, so the timeline has them)")
	f.IntVar(&maxRules, "max-rules", 30, "the most rules to suggest (up to 200), those that save the most bytes; 0 means 30")
	f.IntVar(&cpus, "cpus", 0, "cores to use; 0 means all")
	format.addTo(c)
	_ = c.RegisterFlagCompletionFunc("max-rules", fixedCompletion("10", "30", "100"))
	_ = c.RegisterFlagCompletionFunc("cpus", cpuCompletion)
	return c
}
