// Command runc-wrapper is registered as dockerd's default runtime on machines
// whose capability bounding set lacks some capabilities (CAP_SYS_RESOURCE on
// these VMs). Privileged containers ask for every capability and runc then
// fails with "unable to apply caps: operation not permitted". The wrapper
// removes the missing capabilities from the OCI spec that runc is about to
// use (the bundle's config.json on create/run, the --process file on exec)
// and then execs the real runc with unchanged arguments.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// globalValueFlags are runc's global flags that take a separate value.
var globalValueFlags = map[string]bool{
	"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true,
}

func main() {
	runc := os.Getenv("KAUDIT_REAL_RUNC")
	if runc == "" {
		runc = "/usr/sbin/runc"
	}
	drop := strings.Split(envOr("KAUDIT_DROP_CAPS", "CAP_SYS_RESOURCE"), ",")
	if err := rewrite(os.Args[1:], drop); err != nil {
		fmt.Fprintf(os.Stderr, "runc-wrapper: %v\n", err)
		os.Exit(1)
	}
	args := append([]string{runc}, os.Args[1:]...)
	if err := syscall.Exec(runc, args, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "runc-wrapper: exec %s: %v\n", runc, err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// rewrite finds the spec file that the runc invocation args will read and
// removes the capabilities in drop from it.
func rewrite(args []string, drop []string) error {
	cmd, rest := subcommand(args)
	switch cmd {
	case "create", "run":
		bundle := flagValue(rest, "--bundle", "-b")
		if bundle == "" {
			bundle = "."
		}
		return editJSON(filepath.Join(bundle, "config.json"), func(spec map[string]any) bool {
			proc, _ := spec["process"].(map[string]any)
			return proc != nil && dropCaps(proc["capabilities"], drop)
		})
	case "exec":
		if p := flagValue(rest, "--process", "-p"); p != "" {
			return editJSON(p, func(proc map[string]any) bool {
				return dropCaps(proc["capabilities"], drop)
			})
		}
	}
	return nil
}

// subcommand returns runc's subcommand and the arguments after it.
func subcommand(args []string) (string, []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return a, args[i+1:]
		}
		if globalValueFlags[a] {
			i++
		}
	}
	return "", nil
}

// flagValue returns the value of the first of names in args (--x v or --x=v).
func flagValue(args []string, names ...string) string {
	for i, a := range args {
		for _, n := range names {
			if a == n && i+1 < len(args) {
				return args[i+1]
			}
			if strings.HasPrefix(a, n+"=") {
				return strings.TrimPrefix(a, n+"=")
			}
		}
	}
	return ""
}

// dropCaps removes drop from every set in an OCI LinuxCapabilities object and
// reports whether anything changed.
func dropCaps(v any, drop []string) bool {
	caps, ok := v.(map[string]any)
	if !ok {
		return false
	}
	changed := false
	for set, list := range caps {
		items, ok := list.([]any)
		if !ok {
			continue
		}
		kept := items[:0:0]
		for _, it := range items {
			if s, ok := it.(string); ok && contains(drop, s) {
				changed = true
				continue
			}
			kept = append(kept, it)
		}
		caps[set] = kept
	}
	return changed
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// editJSON applies edit to the JSON object in path and, if it changed, writes
// it back atomically with the same mode.
func editJSON(path string, edit func(map[string]any) bool) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil // let runc report it
		}
		return err
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !edit(obj) {
		return nil
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".kaudit-tmp"
	if err := os.WriteFile(tmp, out, st.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
