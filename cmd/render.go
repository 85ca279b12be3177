package cmd

import (
	"fmt"

	"github.com/spf13/cobra"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

func init() { register(newRenderCommand) }

func newRenderCommand() *cobra.Command {
	format := newFormatFlag("yaml", "json")
	c := &cobra.Command{
		Use:   "render PATH...",
		Short: "Merge modules into the audit policy file, exactly as the controller does",
		Long: `Render reads AuditPolicyModule and NamespacedAuditPolicyModule manifests (files, directories,
kustomize directories, or - for stdin), and optionally the AuditPolicy "cluster" manifest for the
policy-level settings, the guardrails and the namespaced modules' switch and cap, and writes the
merged audit.k8s.io/v1 Policy byte for byte as the controller stores it in a revision and the
agent writes it on the nodes. A plain audit.k8s.io/v1 Policy file is accepted too: it is split into
modules as "kaudit import" does and merged back (a v1beta1 one too, with a warning: kube-apiserver
no longer reads v1beta1).

The modules are decided as the manager decides them on a cluster without a revision yet (offline
there is no last known good): a module it would not put in force (invalid, breaking a guardrail,
a namespaced module that lowers logging, is above the cap or switched off) is an error naming the
module, the reason and, for a guardrail, a request it would log outside the bounds. Without an
AuditPolicy manifest the built-in guardrails hold, as on a cluster; a plain policy file is read
with the AuditPolicy "kaudit import" writes for it, which switches off the built-ins it breaks.`,
		Example: `  # Render the preset modules
  kaudit render config/modules

  # Render with the cluster settings, as JSON
  kaudit render modules/ auditpolicy.yaml -o json

  # Check that an existing policy file goes through kaudit unchanged
  kaudit render /etc/kubernetes/audit/policy.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := format.get()
			if err != nil {
				return err
			}
			in, err := readModules(cmd, args)
			if err != nil {
				return err
			}
			decision, modules, err := decide(in)
			if err != nil {
				return err
			}
			if err := rejections(decision, modules); err != nil {
				return err
			}
			for _, s := range decision.Standing {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", s.Message())
			}
			if out == "json" {
				return writeJSON(cmd.OutOrStdout(), policyDocument(decision.Merged.Policy))
			}
			_, err = cmd.OutOrStdout().Write(decision.Merged.Render())
			return err
		},
	}
	format.addTo(c)
	return c
}

// policyDocument is the policy as kube-apiserver reads it, without object metadata.
func policyDocument(p auditv1.Policy) any {
	return struct {
		APIVersion        string               `json:"apiVersion"`
		Kind              string               `json:"kind"`
		OmitStages        []auditv1.Stage      `json:"omitStages,omitempty"`
		OmitManagedFields bool                 `json:"omitManagedFields,omitempty"`
		Rules             []auditv1.PolicyRule `json:"rules"`
	}{auditv1.SchemeGroupVersion.String(), "Policy", p.OmitStages, p.OmitManagedFields, p.Rules}
}
