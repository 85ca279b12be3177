package explain

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/kaudit/kaudit/internal/apiresources"
	"github.com/kaudit/kaudit/internal/policy"
)

// Input is a request as a person describes it (kaudit explain's flags).
type Input struct {
	User       string
	Groups     []string
	Verb       string
	APIGroup   string
	APIVersion string
	// Resource is RESOURCE, RESOURCE/SUBRESOURCE, or with its group as kubectl writes it:
	// deployments.apps, cronjobs.v1.batch/status.
	Resource  string
	Namespace string
	Name      string
	// URL is the path of a non-resource request.
	URL string
}

const (
	authenticated   = "system:authenticated"
	unauthenticated = "system:unauthenticated"
	anonymous       = "system:anonymous"
)

// version matches the version part of RESOURCE.VERSION.GROUP.
var version = regexp.MustCompile(`^v[0-9]+[a-z0-9]*$`)

// Request builds the request that kube-apiserver's policy evaluator sees for in, with notes on
// what was changed or looks mistaken: the apiserver adds system:authenticated to every
// authenticated user (system:unauthenticated to system:anonymous) and evaluates a create with an
// empty name; an upper-case verb, a path without its leading "/" and RESOURCE.GROUP are read as
// kubectl would read them; a resource that the core group does not serve but another group
// does is named.
func Request(in Input) (policy.Request, []string, error) {
	req := policy.Request{User: in.User, Groups: slices.Clone(in.Groups), Verb: in.Verb, APIGroup: in.APIGroup, APIVersion: in.APIVersion,
		Namespace: in.Namespace, Name: in.Name}
	var notes []string
	switch {
	case in.Resource != "" && in.URL != "":
		return req, nil, errors.New("give either --resource or --url, not both")
	case in.Resource == "" && in.URL == "":
		return req, nil, errors.New("give --resource R[/SUB] for an API request or --url PATH for a non-resource request")
	case in.URL != "":
		if in.Namespace != "" || in.Name != "" || in.APIGroup != "" {
			return req, nil, errors.New("--url is a non-resource request: --namespace, --name and --api-group do not apply")
		}
		req.Path = in.URL
		if !strings.HasPrefix(req.Path, "/") {
			req.Path = "/" + req.Path
			notes = append(notes, fmt.Sprintf("--url %q: paths start with \"/\"; explaining %s", in.URL, req.Path))
		}
	default:
		req.ResourceRequest = true
		more, err := resource(&req, in.Resource)
		if err != nil {
			return req, nil, err
		}
		notes = append(notes, more...)
	}
	notes = append(notes, verb(&req)...)
	if req.Verb == "create" && req.Subresource == "" && req.Name != "" {
		notes = append(notes, fmt.Sprintf("--name %q: kube-apiserver evaluates a create with an empty name (the object is not created yet), so the name cannot matter", req.Name))
		req.Name = ""
	}
	groups(&req)
	return req, notes, nil
}

// resource reads --resource into req, with --api-group already there.
func resource(req *policy.Request, flag string) ([]string, error) {
	base, sub, _ := strings.Cut(flag, "/")
	if base == "" || strings.Contains(sub, "/") {
		return nil, fmt.Errorf("--resource %q: expected RESOURCE, RESOURCE/SUBRESOURCE or RESOURCE.GROUP[/SUBRESOURCE]", flag)
	}
	if name, group, ok := strings.Cut(base, "."); ok {
		if v, rest, ok := strings.Cut(group, "."); ok && version.MatchString(v) {
			req.APIVersion, group = v, rest
		}
		if req.APIGroup != "" && req.APIGroup != group {
			return nil, fmt.Errorf("--resource %q names API group %q, --api-group %q another", flag, group, req.APIGroup)
		}
		base, req.APIGroup = name, group
	}
	req.Resource, req.Subresource = base, sub
	if req.APIGroup == "" && !slices.Contains(apiresources.Resources(""), base) {
		if groups := apiresources.GroupsServing(base); len(groups) > 0 {
			return []string{fmt.Sprintf("the core API group serves no %q; API group %s does: give --api-group %s (or --resource %s.%s)", base, strings.Join(groups, ", "), groups[0], base, groups[0])}, nil
		}
	}
	return nil, nil
}

// verb reads an HTTP method as the verb kube-apiserver gives its request.
func verb(req *policy.Request) []string {
	given := req.Verb
	req.Verb = strings.ToLower(given)
	if req.ResourceRequest {
		switch req.Verb {
		case "post":
			req.Verb = "create"
		case "put":
			req.Verb = "update"
		}
	}
	if req.Verb == given {
		return nil
	}
	return []string{fmt.Sprintf("--verb %q: kube-apiserver's verbs are lower case, and name the action on a resource; explaining %q", given, req.Verb)}
}

// groups adds the group kube-apiserver's authenticator adds to every user. The explanation
// shows the groups, so this needs no note.
func groups(req *policy.Request) {
	if slices.Contains(req.Groups, authenticated) || slices.Contains(req.Groups, unauthenticated) {
		return
	}
	if req.User == anonymous {
		req.Groups = append(req.Groups, unauthenticated)
		return
	}
	req.Groups = append(req.Groups, authenticated)
}
