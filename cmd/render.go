package cmd

import (
	"github.com/spf13/cobra"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

func init() { register(newRenderCommand) }

func newRenderCommand() *cobra.Command {
	format := newFormatFlag("yaml", "json")
	c := &cobra.Command{
		Use:   "render PATH...",
		Short: "Merge modules into the audit policy file, exactly as the controller does",
		Long: `Render reads AuditPolicyModule manifests (files, directories, kustomize directories, or - for
stdin), and optionally the AuditPolicy "cluster" manifest for the policy-level settings, and writes
the merged audit.k8s.io/v1 Policy byte for byte as the controller stores it in a revision and the
agent writes it on the nodes. A plain audit.k8s.io/v1 Policy file is accepted too: it is split into
modules as "kaudit import" does and merged back (a v1beta1 one too, with a warning: kube-apiserver
no longer reads v1beta1).`,
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
			in, err := readPolicy(cmd, args)
			if err != nil {
				return err
			}
			if out == "json" {
				return writeJSON(cmd.OutOrStdout(), policyDocument(in.Merged.Policy))
			}
			_, err = cmd.OutOrStdout().Write(in.Merged.Render())
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
