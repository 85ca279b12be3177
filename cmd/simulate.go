package cmd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kaudit/kaudit/internal/manifest"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/simulate"
)

func init() { register(newSimulateCommand) }

func newSimulateCommand() *cobra.Command {
	var (
		policyPaths, againstPaths []string
		progress, engine          string
		cpus, examples            int
	)
	format := newFormatFlag("text", "json")
	c := &cobra.Command{
		Use:   "simulate --policy PATH... [LOG...]",
		Short: "Replay recorded audit logs through a policy: volume per level and rule, drops, diff",
		Long: `Simulate streams recorded kube-apiserver audit logs (JSON lines, plain or gzip; files, directories
of rotated logs, or - for stdin) and decides every event with the apiserver's own policy evaluator, as the policy given with
--policy (modules, directories, an AuditPolicy manifest, or a plain audit.k8s.io/v1 Policy) would.
A node's policy file that kaudit rendered is read as kube-apiserver reads it, its rules named
after the modules it was rendered from, as the agent's metrics name them.

It reports events and estimated bytes per level and per rule, rules never hit, the top users, verbs
and resources by bytes kept, the security-relevant requests (R1-R6 of docs/modules.md: privilege
and admission changes, secret access, interactive pod access, system:masters, writes by
non-components, pod placement) and how many the policy and the baseline record at the level each
needs, with examples of those the policy misses, and, compared with the recorded log or with the
policy given with --against, what is dropped, added and how the volume changes.

The exit code is 1, after the report of what could be read, when an input cannot be read
(missing, unreadable, a truncated gzip stream, an I/O error) or when no event was read at all;
stderr says which. Malformed lines are counted, never fatal.

Byte estimates drop request bodies below Request, response bodies below RequestResponse, and
events of omitted stages. Events recorded at a lower level than the policy asks lack the bodies it
would add; the report counts them instead of guessing. Malformed lines and events of another
apiVersion are counted and the first few shown with their line numbers.`,
		Example: `  # What would the preset modules keep of yesterday's log?
  kaudit simulate --policy config/modules /var/log/kubernetes/audit/audit.log

  # Compare a change with the policy in force, on every rotated (gzipped) log of a directory
  kaudit simulate --policy modules/ --against /etc/kubernetes/audit/policy.yaml /var/log/kubernetes/audit/

  # Machine-readable, from stdin, on one core
  zcat audit.log.gz | kaudit simulate --policy policy.yaml --format json --cpus 1 -`,
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := format.get()
			if err != nil {
				return err
			}
			if len(policyPaths) == 0 {
				return fmt.Errorf("--policy is required")
			}
			cand, err := simulationTarget(cmd, policyPaths)
			if err != nil {
				return fmt.Errorf("--policy: %w", err)
			}
			opts := simulate.Options{Policy: *cand, Engine: simulate.Engine(engine), Examples: examples}
			if len(againstPaths) > 0 {
				if opts.Against, err = simulationTarget(cmd, againstPaths); err != nil {
					return fmt.Errorf("--against: %w", err)
				}
			}
			switch opts.Engine {
			case simulate.EngineFast, simulate.EngineNaive:
			default:
				return fmt.Errorf("--engine %q: must be fast or naive", engine)
			}
			if cpus < 0 || examples < 0 {
				return fmt.Errorf("--cpus %d, --examples %d: give 0 or more", cpus, examples)
			}
			if cpus > 0 {
				runtime.GOMAXPROCS(cpus)
				opts.Workers = cpus
			}
			switch progress {
			case "auto":
				if isTerminal(cmd.ErrOrStderr()) {
					opts.Progress = cmd.ErrOrStderr()
				}
			case "always":
				opts.Progress = cmd.ErrOrStderr()
			case "never":
			default:
				return fmt.Errorf("--progress %q: must be auto, always or never", progress)
			}
			inputs, err := logInputs(cmd, args)
			if err != nil {
				return err
			}
			report, err := simulate.Run(cmd.Context(), inputs, opts)
			if err != nil {
				return err
			}
			if out == "json" {
				err = writeJSON(cmd.OutOrStdout(), report)
			} else {
				err = report.WriteText(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			return readFailure(report)
		},
	}
	f := c.Flags()
	f.StringSliceVarP(&policyPaths, "policy", "p", nil, "the policy to simulate: module files or directories, an AuditPolicy manifest, or an audit.k8s.io/v1 Policy (repeatable)")
	f.StringSliceVar(&againstPaths, "against", nil, "compare with this policy instead of the recorded log (same kinds of paths as --policy)")
	format.addTo(c)
	f.StringVar(&progress, "progress", "auto", "progress on stderr: auto (when stderr is a terminal), always or never")
	f.IntVar(&cpus, "cpus", 0, "cores to use; 0 means all")
	f.IntVar(&examples, "examples", 5, "how many malformed lines and security-relevant drops to show")
	f.StringVar(&engine, "engine", "fast", "decoder: fast, or naive (encoding/json per event, no cache; the reference used by tests and make bench)")
	_ = f.MarkHidden("engine")
	_ = c.RegisterFlagCompletionFunc("progress", fixedCompletion("auto", "always", "never"))
	_ = c.RegisterFlagCompletionFunc("cpus", cpuCompletion)
	_ = c.RegisterFlagCompletionFunc("examples", fixedCompletion("5", "20", "100"))
	return c
}

// logInputs are the audit logs named by args, directories expanded; none means stdin, and on a
// terminal the command says it is reading it, so a forgotten argument does not look like a hang.
func logInputs(cmd *cobra.Command, args []string) ([]simulate.Input, error) {
	if len(args) == 0 {
		args = []string{"-"}
		if isTerminal(cmd.InOrStdin()) {
			fmt.Fprintf(cmd.ErrOrStderr(), "kaudit %s: reading audit events from stdin (Ctrl-D ends them); give log files or directories to read those instead\n", cmd.Name())
		}
	}
	var inputs []simulate.Input
	for _, a := range args {
		files, err := expandLogs(a)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			inputs = append(inputs, logInput(cmd.InOrStdin(), f))
		}
	}
	return inputs, nil
}

// expandLogs turns a directory into its files (and the files its symbolic links point to),
// sorted by name, which puts kube-apiserver's rotated logs
// (audit-2026-11-25T10-00-00.000.log.gz) before the current audit.log.
func expandLogs(path string) ([]string, error) {
	if path == "-" {
		return []string{path}, nil
	}
	st, err := os.Stat(path)
	if err != nil || !st.IsDir() {
		return []string{path}, nil // a missing file is reported with the other inputs
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		// Stat follows symbolic links: a link to a log is a log.
		if st, err := os.Stat(filepath.Join(path, e.Name())); err == nil && st.Mode().IsRegular() {
			out = append(out, filepath.Join(path, e.Name()))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no log files in the directory", path)
	}
	return out, nil
}

func logInput(stdin io.Reader, path string) simulate.Input {
	if path == "-" {
		return simulate.Input{Name: "<stdin>", Open: func() (io.ReadCloser, error) { return io.NopCloser(stdin), nil }}
	}
	in := simulate.Input{Name: path, Open: func() (io.ReadCloser, error) { return os.Open(path) }}
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() {
		in.Size = st.Size()
	}
	return in
}

// readFailure is the error that makes simulate exit non-zero: inputs that could not be read, or
// no event read at all. A report of zeros must not pass a CI gate.
func readFailure(r *simulate.Report) error {
	var failed []string
	for _, in := range r.Inputs {
		if in.Error != "" {
			failed = append(failed, "\n  "+in.Name+": "+in.Error)
		}
	}
	if len(failed) > 0 {
		return &ExitError{Code: 1, Err: fmt.Errorf("%d of %d inputs could not be read; the report counts only what was read:%s", len(failed), len(r.Inputs), strings.Join(failed, ""))}
	}
	if r.Events == 0 {
		return &ExitError{Code: 1, Err: fmt.Errorf("no audit event was read (%d malformed lines, %d lines of another kind or version)", r.BadLines, r.OtherLines)}
	}
	return nil
}

// isTerminal tells whether f (stdin or stderr) is a terminal.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// simulationTarget is the policy that paths hold. A single policy file that kaudit rendered (a
// node's policy.yaml) is taken as kube-apiserver reads it, its rules named after the modules its
// comments name, so that simulate counts per module as the agent's metrics do
// (kaudit_audit_events_total); anything else is merged as modules (readPolicy).
func simulationTarget(cmd *cobra.Command, paths []string) (*simulate.Target, error) {
	if len(paths) == 1 {
		if file, err := os.ReadFile(paths[0]); err == nil && policy.IsRendered(file) {
			// The bytes already read, not the file again: one read, and one content for both.
			set, err := manifest.Read(bytes.NewReader(file), manifest.Stdin)
			if err == nil && len(set.Upstream) == 1 && len(set.Modules) == 0 {
				p := set.Upstream[0].Policy
				if sources := policy.RenderedSources(file, len(p.Rules)); sources != nil {
					return &simulate.Target{Name: paths[0], Policy: p, Sources: sources}, nil
				}
			}
		}
	}
	in, err := readPolicy(cmd, paths)
	if err != nil {
		return nil, err
	}
	return &simulate.Target{Name: in.Name, Policy: in.Merged.Policy, Sources: in.Merged.Sources}, nil
}
