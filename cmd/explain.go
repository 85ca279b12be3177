package cmd

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/internal/policy"
)

func init() { register(newExplainCommand) }

// Explanation is the machine output of explain.
type Explanation struct {
	Request  policy.Request `json:"request"`
	Decision ExplainedRule  `json:"decision"`
	// OmitStages are the stages not written for the request (the rule's and the policy's).
	OmitStages        []auditv1.Stage `json:"omitStages"`
	OmitManagedFields bool            `json:"omitManagedFields"`
	// Shadowed are later rules that match the request too but never decide it.
	Shadowed []ExplainedRule `json:"shadowed"`
}

// ExplainedRule is a rule of the merged policy and where it came from.
type ExplainedRule struct {
	// Index is the rule's index in the merged policy; -1 when no rule matches.
	Index  int                 `json:"index"`
	Module string              `json:"module,omitempty"`
	Rule   int                 `json:"rule"`
	Source string              `json:"source"`
	Level  auditv1.Level       `json:"level"`
	Spec   *auditv1.PolicyRule `json:"spec,omitempty"`
}

func newExplainCommand() *cobra.Command {
	var (
		req      policy.Request
		groups   []string
		resource string
		url      string
		format   string
	)
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
			in, err := readPolicy(cmd.InOrStdin(), args)
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
			ex, err := explain(in.Merged, req)
			if err != nil {
				return err
			}
			switch format {
			case "json":
				return writeJSON(cmd.OutOrStdout(), ex)
			case "text":
				return ex.writeText(cmd.OutOrStdout())
			}
			return fmt.Errorf("--format %q: must be text or json", format)
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
	f.StringVar(&format, "format", "text", "output format: text or json")
	_ = c.RegisterFlagCompletionFunc("format", fixedCompletion("text", "json"))
	_ = c.RegisterFlagCompletionFunc("verb", fixedCompletion("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "impersonate", "bind", "escalate"))
	return c
}

func explain(m *policy.Merged, req policy.Request) (*Explanation, error) {
	eval, err := policy.NewEvaluator(m.Policy)
	if err != nil {
		return nil, err
	}
	d := eval.Decide(req)
	ex := &Explanation{Request: req, Decision: explainedRule(m, d.Rule, true), OmitStages: d.OmitStages, OmitManagedFields: d.OmitManagedFields}
	if ex.OmitStages == nil {
		ex.OmitStages = []auditv1.Stage{}
	}
	ex.Shadowed = []ExplainedRule{}
	for _, i := range eval.Matching(req) {
		if i != d.Rule {
			ex.Shadowed = append(ex.Shadowed, explainedRule(m, i, false))
		}
	}
	return ex, nil
}

func explainedRule(m *policy.Merged, i int, spec bool) ExplainedRule {
	if i < 0 {
		return ExplainedRule{Index: -1, Rule: -1, Source: "no rule matches: kube-apiserver does not log the request", Level: auditv1.LevelNone}
	}
	r := ExplainedRule{Index: i, Rule: -1, Level: m.Policy.Rules[i].Level}
	src := m.Sources[i]
	if src.IsDefault() {
		r.Source = "default: no module matches (AuditPolicy cluster spec.defaultLevel)"
	} else {
		r.Module, r.Rule = src.Module, src.Rule
		r.Source = fmt.Sprintf("module %s, rule %d", src.Module, src.Rule)
	}
	if spec {
		rule := m.Policy.Rules[i]
		r.Spec = &rule
	}
	return r
}

func (ex *Explanation) writeText(w io.Writer) error {
	r := ex.Request
	var b strings.Builder
	who := r.User
	if who == "" {
		who = "(no user)"
	}
	if len(r.Groups) > 0 {
		who += " (groups " + strings.Join(r.Groups, ", ") + ")"
	}
	what := r.Path
	if r.ResourceRequest {
		what = r.Resource
		if r.Subresource != "" {
			what += "/" + r.Subresource
		}
		if r.APIGroup != "" {
			what += " in API group " + r.APIGroup
		}
		switch {
		case r.Namespace != "" && r.Name != "":
			what += fmt.Sprintf(", %s/%s", r.Namespace, r.Name)
		case r.Namespace != "":
			what += ", namespace " + r.Namespace
		case r.Name != "":
			what += ", name " + r.Name
		}
	}
	fmt.Fprintf(&b, "Request:     %s %s by %s\n", r.Verb, what, who)
	fmt.Fprintf(&b, "Decided by:  %s", ex.Decision.Source)
	if ex.Decision.Index >= 0 {
		fmt.Fprintf(&b, " (rule %d of the policy)", ex.Decision.Index)
	}
	fmt.Fprintf(&b, "\nLevel:       %s\n", ex.Decision.Level)
	if ex.Decision.Level != auditv1.LevelNone {
		stages := "none"
		if len(ex.OmitStages) > 0 {
			var s []string
			for _, st := range ex.OmitStages {
				s = append(s, string(st))
			}
			stages = strings.Join(s, ", ")
		}
		fmt.Fprintf(&b, "Omitted:     %s (stages not written)\n", stages)
		if ex.Decision.Level == auditv1.LevelRequest || ex.Decision.Level == auditv1.LevelRequestResponse {
			fmt.Fprintf(&b, "managedFields omitted from bodies: %v\n", ex.OmitManagedFields)
		}
	}
	if ex.Decision.Spec != nil {
		y, err := yaml.Marshal(ex.Decision.Spec)
		if err != nil {
			return err
		}
		b.WriteString("Rule:\n")
		for _, line := range strings.Split(strings.TrimSuffix(string(y), "\n"), "\n") {
			b.WriteString("  " + line + "\n")
		}
	}
	if len(ex.Shadowed) > 0 {
		b.WriteString("Also matching, shadowed for this request by the rule above:\n")
		for _, s := range ex.Shadowed {
			fmt.Fprintf(&b, "  %s (rule %d of the policy): %s\n", s.Source, s.Index, s.Level)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
