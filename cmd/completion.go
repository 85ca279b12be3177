package cmd

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/apiresources"
	"github.com/kaudit/kaudit/internal/manifest"
	"github.com/kaudit/kaudit/internal/policy"
)

func init() { register(newCompletionCommand) }

// newCompletionCommand replaces cobra's default completion command, to give it examples like
// every other subcommand. Flag values (formats, verbs) complete too.
func newCompletionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Generate the shell completion script",
		Long: `Completion prints a script that makes your shell complete kaudit's subcommands, flags and flag
values (resources, API groups, verbs, well-known users, groups and namespaces, and those the
policy files on the command line name). Load it in the current shell, or install it where your
shell loads completions from.

bash needs the bash-completion package (version 2; "type _init_completion" tells whether it is
loaded): install it with your system's package manager (bash-completion) and start a new shell.`,
		Example: `  # bash, current shell
  source <(kaudit completion bash)

  # bash, every new shell
  kaudit completion bash > /etc/bash_completion.d/kaudit

  # zsh
  kaudit completion zsh > "${fpath[1]}/_kaudit"

  # fish
  kaudit completion fish > ~/.config/fish/completions/kaudit.fish`,
		ValidArgs:             []string{"bash", "zsh", "fish", "powershell"},
		Args:                  cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(out)
			}
			return fmt.Errorf("unsupported shell %q", args[0])
		},
	}
}

// Completions of flag values. None of them falls back to file names.

// cpuCompletion offers 1 to the number of cores.
func cpuCompletion(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	var out []string
	for n := 1; n <= runtime.NumCPU(); n++ {
		out = append(out, strconv.Itoa(n))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// resourceCompletion offers the resources of --api-group if given; otherwise the core group's
// and, as RESOURCE.GROUP, the other built-in groups'.
func resourceCompletion(c *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	var out []string
	if f := c.Flags().Lookup("api-group"); f != nil && f.Changed {
		out = apiresources.Resources(f.Value.String())
	} else {
		for _, g := range apiresources.Groups() {
			for _, r := range apiresources.Resources(g) {
				if g != "" {
					base, sub, found := strings.Cut(r, "/")
					r = base + "." + g
					if found {
						r += "/" + sub
					}
				}
				out = append(out, r)
			}
		}
	}
	return withPrefix(out, toComplete), cobra.ShellCompDirectiveNoFileComp
}

func groupCompletion(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return withPrefix(apiresources.Groups()[1:], toComplete), cobra.ShellCompDirectiveNoFileComp // not "" (the core group)
}

// Identities and namespaces every cluster has; the policy files given add those they name.
var (
	wellKnownUsers = []string{
		"system:anonymous", "system:apiserver", "system:kube-controller-manager", "system:kube-scheduler",
		"system:kube-proxy", "system:serviceaccount:", "system:node:",
	}
	wellKnownGroups = []string{
		"system:masters", "system:authenticated", "system:unauthenticated", "system:nodes",
		"system:serviceaccounts", "system:bootstrappers",
	}
	wellKnownNamespaces = []string{"default", "kube-system", "kube-public", "kube-node-lease"}
)

// namesCompletion offers the well-known values and those that the rules of the policy files
// among the positional arguments name (pick chooses them from a rule).
func namesCompletion(wellKnown []string, pick func(v1alpha1.PolicyRule) []string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		out := slices.Clone(wellKnown)
		// Best effort: what cannot be read offers nothing more. Stdin is not read.
		if set, err := manifest.ReadLenient(strings.NewReader(""), slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == manifest.Stdin })...); err == nil {
			var rules []v1alpha1.PolicyRule
			for _, m := range set.Modules {
				rules = append(rules, m.Spec.Rules...)
			}
			for _, up := range set.Upstream {
				for _, r := range up.Policy.Rules {
					rules = append(rules, policy.FromUpstream(r))
				}
			}
			for _, r := range rules {
				out = append(out, pick(r)...)
			}
		}
		slices.Sort(out)
		return withPrefix(slices.Compact(out), toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

func withPrefix(values []string, prefix string) []string {
	return slices.DeleteFunc(values, func(v string) bool { return !strings.HasPrefix(v, prefix) })
}
