package cmd

import (
	"fmt"

	"github.com/spf13/cobra"
)

func init() { register(newCompletionCommand) }

// newCompletionCommand replaces cobra's default completion command, to give it examples like
// every other subcommand. Flag values (formats, verbs) complete too.
func newCompletionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Generate the shell completion script",
		Long: `Completion prints a script that makes your shell complete kaudit's subcommands, flags and flag
values. Load it in the current shell, or install it where your shell loads completions from.`,
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
