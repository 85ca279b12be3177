package cmd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kaudit/kaudit/internal/explain"
	"github.com/kaudit/kaudit/internal/policy"
)

func init() { register(newExplainCommand) }

func newExplainCommand() *cobra.Command {
	var (
		req      policy.Request
		groups   []string
		resource string
		url      string
	)
	format := newFormatFlag("text", "json")
	c := &cobra.Command{
		Use:   "explain PATH... (--resource R[/SUB] | --url PATH) [flags]",
		Short: "Tell which module and rule decide a request, and at which level",
		Long: `Explain evaluates one request with kube-apiserver's own policy evaluator against the policy merged
from the given modules (or a plain audit.k8s.io/v1 Policy) and prints the module and rule that decide
it, the level, the stages that are not written, and the later rules that match the request too but
are shadowed by the deciding one.`,
		Example: `  # Who decides a kubectl get secret by a member of system:masters?
  kaudit explain config/modules --user admin --groups system:masters --verb get --resource secrets --namespace kube-system --name db-password

  # A subresource of a group
  kaudit explain modules/ --user alice --verb update --api-group apps --resource deployments/scale -n shop --name web

  # A non-resource URL, as JSON
  kaudit explain /etc/kubernetes/audit/policy.yaml --user system:anonymous --url /healthz --format json`,
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
			switch {
			case resource != "" && url != "":
				return errors.New("give either --resource or --url, not both")
			case resource == "" && url == "":
				return errors.New("give --resource R[/SUB] for an API request or --url PATH for a non-resource request")
			case url != "":
				if req.Namespace != "" || req.Name != "" || req.APIGroup != "" {
					return errors.New("--url is a non-resource request: --namespace, --name and --api-group do not apply")
				}
				req.Path = url
			default:
				req.ResourceRequest = true
				req.Resource, req.Subresource, _ = strings.Cut(resource, "/")
				if req.Resource == "" || strings.Contains(req.Subresource, "/") {
					return fmt.Errorf("--resource %q: expected RESOURCE or RESOURCE/SUBRESOURCE", resource)
				}
			}
			req.Groups = groups
			ex, err := explain.Explain(in.Merged, req)
			if err != nil {
				return err
			}
			if out == "json" {
				return writeJSON(cmd.OutOrStdout(), ex)
			}
			return ex.WriteText(cmd.OutOrStdout())
		},
	}
	f := c.Flags()
	f.StringVar(&req.User, "user", "", "user name of the request")
	f.StringSliceVar(&groups, "groups", nil, "groups of the user, comma-separated (authenticated users are also in system:authenticated)")
	f.StringVar(&req.Verb, "verb", "get", "verb: get, list, watch, create, update, patch, delete, deletecollection, or a custom verb")
	f.StringVar(&req.APIGroup, "api-group", "", `API group of the resource ("" for the core group)`)
	f.StringVar(&req.APIVersion, "api-version", "", "API version of the resource (not used by audit policies)")
	f.StringVar(&resource, "resource", "", "resource, with an optional subresource: pods, pods/exec, deployments/scale")
	f.StringVarP(&req.Namespace, "namespace", "n", "", "namespace (empty for cluster-scoped resources)")
	f.StringVar(&req.Name, "name", "", "name of the object")
	f.StringVar(&url, "url", "", "path of a non-resource request, e.g. /healthz")
	format.addTo(c)
	_ = c.RegisterFlagCompletionFunc("verb", fixedCompletion("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "impersonate", "bind", "escalate"))
	return c
}
