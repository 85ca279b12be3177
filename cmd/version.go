package cmd

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

func init() { register(newVersionCommand) }

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print kaudit's version, the commit it was built from and the Go version",
		Long: `Version prints the module version kaudit was built as, the VCS commit and its time (with
"modified" when the working tree had changes), and the Go version, as the Go toolchain recorded
them in the binary.`,
		Example: `  kaudit version`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), versionLine())
			return err
		},
	}
}

// versionLine is "kaudit VERSION (commit REV, TIME, modified) GOVERSION", from what the Go
// toolchain recorded in the binary.
func versionLine() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "kaudit (no build information)"
	}
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var vcs []string
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		vcs = append(vcs, "commit "+rev)
	}
	if t := settings["vcs.time"]; t != "" {
		vcs = append(vcs, t)
	}
	if settings["vcs.modified"] == "true" {
		vcs = append(vcs, "modified")
	}
	line := "kaudit " + version
	if len(vcs) > 0 {
		line += " (" + strings.Join(vcs, ", ") + ")"
	}
	return line + " " + info.GoVersion
}
