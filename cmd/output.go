package cmd

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// formatFlag is the --format (-o) flag of every command that can write more than one format.
type formatFlag struct {
	value  string
	values []string
}

// newFormatFlag takes the formats a command writes, its default first.
func newFormatFlag(values ...string) *formatFlag {
	return &formatFlag{value: values[0], values: values}
}

// addTo adds --format and its shorthand -o to c, with completion of the values.
func (f *formatFlag) addTo(c *cobra.Command) {
	c.Flags().StringVarP(&f.value, "format", "o", f.value, "output format: "+orList(f.values))
	_ = c.RegisterFlagCompletionFunc("format", fixedCompletion(f.values...))
}

// get returns the format asked for, or an error naming the ones there are.
func (f *formatFlag) get() (string, error) {
	for _, v := range f.values {
		if f.value == v {
			return v, nil
		}
	}
	return "", fmt.Errorf("--format %q: must be %s", f.value, orList(f.values))
}

// orList writes values as "a, b or c".
func orList(values []string) string {
	if len(values) < 2 {
		return strings.Join(values, "")
	}
	return strings.Join(values[:len(values)-1], ", ") + " or " + values[len(values)-1]
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// noCompletion offers nothing, and no file names, for a free-form value.
func noCompletion(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveNoFileComp
}

func fixedCompletion(values ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

// count writes "1 module", "2 modules".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
