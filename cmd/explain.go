package cmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/apiresources"
	"github.com/kaudit/kaudit/internal/explain"
	"github.com/kaudit/kaudit/internal/policy"
)

func init() { register(newExplainCommand) }

func newExplainCommand() *cobra.Command {
	var in explain.Input
	format := newFormatFlag("text", "json")
	c := &cobra.Command{
		Use:   "explain PATH... (--resource R[/SUB] | --url PATH) [flags]",
		Short: "Tell which module and rule decide a request, and at which level",
		Long: `Explain evaluates one request with kube-apiserver's own policy evaluator against the policy merged
from the given modules of both kinds (or a plain audit.k8s.io/v1 Policy) and prints the module and
rule that decide it, the level, the stages that are not written, and the later rules that match the
request too but are shadowed by the deciding one.

It also names the guardrails whose scope holds the request (those of the AuditPolicy manifest
given, else the built-in ones), their bounds and whether the decision is within them; and, when the
manager would not put the deciding module in force (a guardrail it breaks, a namespaced module
that lowers logging...), why, and how the policy it would put in force decides the request.

The request is the one kube-apiserver evaluates: an authenticated user is also in the group
system:authenticated (system:anonymous in system:unauthenticated), and a create has an empty name.
--resource deployments.apps is read as kubectl reads it (API group apps), an upper-case verb or
HTTP method as its verb, a path without "/" with one; stderr says what was changed, and names the
API group of a resource that the core group does not serve.`,
		Example: `  # Who decides a kubectl get secret by a member of system:masters?
  kaudit explain config/modules --user admin --groups system:masters --verb get --resource secrets --namespace kube-system --name db-password

  # A subresource of a group
  kaudit explain modules/ --user alice --verb update --resource deployments.apps/scale -n shop --name web

  # A non-resource URL, as JSON
  kaudit explain /etc/kubernetes/audit/policy.yaml --user system:anonymous --url /healthz --format json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := format.get()
			if err != nil {
				return err
			}
			req, notes, err := explain.Request(in)
			if err != nil {
				return err
			}
			in, err := readModules(cmd, args)
			if err != nil {
				return err
			}
			if err := in.Settings.Validate(); err != nil {
				return err
			}
			merged, err := policy.Merge(in.Modules, in.Settings.Policy)
			if err != nil {
				return err
			}
			for _, n := range notes {
				fmt.Fprintln(cmd.ErrOrStderr(), "note:", n)
			}
			ex, err := explain.Explain(merged, req, in.Settings.Guardrails)
			if err != nil {
				return err
			}
			if err := explainRejection(in, ex); err != nil {
				return err
			}
			if out == "json" {
				return writeJSON(cmd.OutOrStdout(), ex)
			}
			return ex.WriteText(cmd.OutOrStdout())
		},
	}
	f := c.Flags()
	f.StringVar(&in.User, "user", "", "user name of the request")
	f.StringSliceVar(&in.Groups, "groups", nil, "groups of the user, comma-separated (system:authenticated is added as the apiserver adds it)")
	f.StringVar(&in.Verb, "verb", "get", "verb: get, list, watch, create, update, patch, delete, deletecollection, or a custom verb")
	f.StringVar(&in.APIGroup, "api-group", "", `API group of the resource ("" for the core group)`)
	f.StringVar(&in.APIVersion, "api-version", "", "API version of the resource (not used by audit policies)")
	f.StringVar(&in.Resource, "resource", "", "resource, with an optional subresource and group: pods, pods/exec, deployments.apps/scale")
	f.StringVarP(&in.Namespace, "namespace", "n", "", "namespace (empty for cluster-scoped resources)")
	f.StringVar(&in.Name, "name", "", "name of the object (a create has none)")
	f.StringVar(&in.URL, "url", "", "path of a non-resource request, e.g. /healthz")
	format.addTo(c)
	_ = c.RegisterFlagCompletionFunc("verb", fixedCompletion(apiresources.Verbs()...))
	_ = c.RegisterFlagCompletionFunc("resource", resourceCompletion)
	_ = c.RegisterFlagCompletionFunc("api-group", groupCompletion)
	_ = c.RegisterFlagCompletionFunc("user", namesCompletion(wellKnownUsers, func(r v1alpha1.PolicyRule) []string { return r.Users }))
	_ = c.RegisterFlagCompletionFunc("groups", namesCompletion(wellKnownGroups, func(r v1alpha1.PolicyRule) []string { return r.UserGroups }))
	_ = c.RegisterFlagCompletionFunc("namespace", namesCompletion(wellKnownNamespaces, func(r v1alpha1.PolicyRule) []string { return r.Namespaces }))
	_ = c.RegisterFlagCompletionFunc("name", noCompletion)
	_ = c.RegisterFlagCompletionFunc("api-version", noCompletion)
	_ = c.RegisterFlagCompletionFunc("url", fixedCompletion("/healthz", "/livez", "/readyz", "/metrics", "/version", "/openapi/v2", "/api", "/apis"))
	return c
}

// explainRejection adds to ex why the manager would not put the deciding rule's module in
// force, if it would not, and how the policy it would put in force decides the request.
func explainRejection(in *moduleInput, ex *explain.Explanation) error {
	if ex.Decision.Module == "" {
		return nil
	}
	decision, _, err := decide(in)
	if err != nil {
		return err
	}
	o := decision.Outcomes[ex.Decision.Module]
	if o.Accepted {
		return nil
	}
	inForce, err := explain.Decided(decision.Merged, ex.Request)
	if err != nil {
		return err
	}
	ex.Rejection = &explain.Rejection{Module: ex.Decision.Module, Reason: o.Reason, Message: o.Message, InForce: inForce}
	return nil
}
