package cmd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/inforce"
	"github.com/kaudit/kaudit/internal/policy"
)

func init() { register(newImportCommand) }

func newImportCommand() *cobra.Command {
	var (
		prefix, outDir string
		single, force  bool
	)
	c := &cobra.Command{
		Use:   "import POLICY-FILE",
		Short: "Split an existing audit.k8s.io/v1 Policy file into AuditPolicyModules",
		Long: `Import reads the audit policy a cluster runs today (the file given to --audit-policy-file) and writes
AuditPolicyModule manifests that merge back into a policy deciding every request exactly as the
original does, plus the AuditPolicy "cluster" settings: neighbouring rules of the same kind (noise,
non-resource URLs, secrets, RBAC, a level) become one module (several past the CRD's limit of 200
rules), ordered 10, 20, ...; the policy's
omitStages become spec.omitStages; a final rule matching every request becomes spec.defaultLevel
(without one, defaultLevel is None, as the original drops what it does not match). That rule's
own omitStages become spec.omitStages when every other rule that logs omits them too; otherwise
the rule stays in a module, and a note says why. Built-in guardrails that the policy breaks are
switched off in spec.guardrails.disabledBuiltIns, with a comment naming a rule that breaks each:
the manager would reject the modules that break them, and the policy in force would not be the
original. The other commands read a plain policy file with the same settings.

An audit.k8s.io/v1beta1 Policy, which kube-apiserver no longer reads, is read as v1 (the fields
are the same), with a warning. "-" reads the policy from stdin.

Check the result with "kaudit render" and "kaudit lint" before applying it.`,
		Example: `  # Print the modules
  kaudit import /etc/kubernetes/audit/policy.yaml

  # One file per module and a kustomization, ready for Git and Argo CD (into an empty or new
  # directory; --force writes over what is there)
  kaudit import policy.yaml --prefix legacy --output-dir audit-modules/

  # Everything in one module (or one per 200 rules), from stdin
  cat policy.yaml | kaudit import - --single | kubectl apply -f -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := readSet(cmd, args)
			if err != nil {
				return err
			}
			if len(set.Upstream) != 1 || len(set.Modules) > 0 || set.Policy != nil {
				return fmt.Errorf("%s: expected exactly one audit.k8s.io/v1 Policy", args[0])
			}
			up := set.Upstream[0]
			if err := loadUpstream(up); err != nil {
				return err
			}
			if prefix == "" {
				prefix = importPrefix(up.Source)
			}
			imp := policy.Import(up.Policy, policy.ImportOptions{Prefix: prefix, Single: single, Source: "from " + args[0]})
			if _, err := policy.Merge(imp.Modules, imp.Settings); err != nil {
				return err
			}
			for _, n := range imp.Notes {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: %s: %s\n", args[0], n)
			}
			spec, breaches, err := importedSpec(imp)
			if err != nil {
				return err
			}
			docs, err := importManifests(imp, spec, breaches)
			if err != nil {
				return err
			}
			if outDir == "" {
				var b bytes.Buffer
				for i, d := range docs {
					if i > 0 {
						b.WriteString("---\n")
					}
					b.Write(d.data)
				}
				_, err := cmd.OutOrStdout().Write(b.Bytes())
				return err
			}
			if err := writeImportDir(outDir, docs, force, cmd.ErrOrStderr()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s and the AuditPolicy settings to %s\n", count(len(imp.Modules), "module"), outDir)
			return nil
		},
	}
	c.Flags().StringVar(&prefix, "prefix", "", "start of the module names (default: the file name)")
	c.Flags().BoolVar(&single, "single", false, "put every rule into one module")
	c.Flags().StringVarP(&outDir, "output-dir", "d", "", "write one file per module and a kustomization.yaml into this directory instead of stdout")
	c.Flags().BoolVar(&force, "force", false, "write into a --output-dir that is not empty, over the files there")
	_ = c.MarkFlagDirname("output-dir")
	return c
}

// writeImportDir writes one file per document and a kustomization listing them into dir. A
// directory that is not empty is refused unless force: the new kustomization would replace one
// that lists other modules, and applying it (or an Argo CD prune) would delete those.
func writeImportDir(dir string, docs []importDoc, force bool, stderr io.Writer) error {
	existing, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var there []string
	for _, e := range existing {
		there = append(there, e.Name())
	}
	if len(there) > 0 && !force {
		return fmt.Errorf("--output-dir %s is not empty (%s): the new kustomization.yaml would replace what lists these, and applying it or an Argo CD prune would delete the modules only they hold; give an empty directory, or --force to write over them", dir, shortList(there, 5))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	written := []string{kustomizationFile}
	kust := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
	for _, d := range docs {
		if err := os.WriteFile(filepath.Join(dir, d.file), d.data, 0o644); err != nil {
			return err
		}
		kust += "- " + d.file + "\n"
		written = append(written, d.file)
	}
	if err := os.WriteFile(filepath.Join(dir, kustomizationFile), []byte(kust), 0o644); err != nil {
		return err
	}
	var left []string
	for _, name := range there {
		if !slices.Contains(written, name) {
			left = append(left, name)
		}
	}
	if len(left) > 0 {
		fmt.Fprintf(stderr, "left in place, and not listed in the new %s: %s\n", kustomizationFile, shortList(left, 10))
	}
	return nil
}

const kustomizationFile = "kustomization.yaml"

// shortList writes names as "a, b, c and 4 more", naming at most n of them.
func shortList(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

type importDoc struct {
	file string
	data []byte
}

type objectMeta struct {
	Name string `json:"name"`
}

func importManifests(imp policy.Imported, spec v1alpha1.AuditPolicySpec, breaches []inforce.Breach) ([]importDoc, error) {
	gv := v1alpha1.GroupVersion.String()
	type guardrails struct {
		DisabledBuiltIns []v1alpha1.BuiltInGuardrail `json:"disabledBuiltIns"`
	}
	settings := struct {
		APIVersion string     `json:"apiVersion"`
		Kind       string     `json:"kind"`
		Metadata   objectMeta `json:"metadata"`
		Spec       struct {
			OmitStages   []v1alpha1.Stage `json:"omitStages,omitempty"`
			DefaultLevel v1alpha1.Level   `json:"defaultLevel"`
			Guardrails   *guardrails      `json:"guardrails,omitempty"`
		} `json:"spec"`
	}{APIVersion: gv, Kind: "AuditPolicy", Metadata: objectMeta{Name: v1alpha1.SingletonName}}
	settings.Spec.OmitStages = spec.OmitStages
	settings.Spec.DefaultLevel = spec.DefaultLevel
	comment := "# Policy-level settings of the imported policy.\n"
	if len(breaches) > 0 {
		settings.Spec.Guardrails = &guardrails{DisabledBuiltIns: spec.Guardrails.DisabledBuiltIns}
		comment += "# The policy breaks built-in guardrails, so the manager would reject the modules that break\n" +
			"# them: they are switched off, and the modules decide every request as the policy does.\n"
		for _, b := range breaches {
			comment += fmt.Sprintf("#   %s: e.g. %s logs a request of its scope at %s\n", b.Guardrail.Name, b.AfterBy, b.After.Level)
		}
		comment += "# Fix those rules, then take the guardrails out of the list: kaudit lint then names every\n" +
			"# module that still breaks one, with a request.\n"
	}
	var docs []importDoc
	add := func(file, comment string, v any) error {
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		docs = append(docs, importDoc{file: file, data: append([]byte(comment), b...)})
		return nil
	}
	if err := add("auditpolicy-cluster.yaml", comment, settings); err != nil {
		return nil, err
	}
	for _, m := range imp.Modules {
		mod := struct {
			APIVersion string                         `json:"apiVersion"`
			Kind       string                         `json:"kind"`
			Metadata   objectMeta                     `json:"metadata"`
			Spec       v1alpha1.AuditPolicyModuleSpec `json:"spec"`
		}{gv, "AuditPolicyModule", objectMeta{m.Name}, m.Spec}
		if err := add(m.Name+".yaml", "", mod); err != nil {
			return nil, err
		}
	}
	return docs, nil
}
