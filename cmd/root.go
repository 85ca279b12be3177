// Package cmd holds the kaudit subcommands, one file each.
package cmd

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// subcommands are added by each subcommand's file, so that files never edit each other.
var subcommands []func() *cobra.Command

func register(newCommand func() *cobra.Command) {
	subcommands = append(subcommands, newCommand)
}

// NewRootCommand builds the kaudit command tree.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "kaudit",
		Short: "Manage the Kubernetes API server's audit policy as code",
		Long: `kaudit merges AuditPolicyModule resources into one validated audit.k8s.io/v1 Policy,
rolls it out to control-plane nodes one at a time, and tests policies offline.`,
		Example: `  # Offline: the policy file the modules make, its problems, and who decides a request
  kaudit render config/modules/baseline
  kaudit lint config/modules/baseline
  kaudit explain config/modules/baseline --user alice --verb get --resource secrets --namespace default

  # What a policy would keep of a recorded audit log
  kaudit simulate --policy config/modules/baseline /var/log/kubernetes/audit/audit.log`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, newCommand := range subcommands {
		root.AddCommand(newCommand())
	}
	return root
}

// Execute runs the command line and returns the process exit code.
func Execute() int {
	if err := NewRootCommand().Execute(); err != nil {
		var exit *ExitError
		if errors.As(err, &exit) {
			if exit.Err != nil {
				fmt.Fprintln(os.Stderr, "kaudit:", exit.Err)
			}
			return exit.Code
		}
		fmt.Fprintln(os.Stderr, "kaudit:", err)
		return 1
	}
	return 0
}

// ExitError makes a command exit with a given code (lint findings, for example) after
// printing Err, if any.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }
