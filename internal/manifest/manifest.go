// Package manifest reads AuditPolicyModule, NamespacedAuditPolicyModule and AuditPolicy
// manifests (and plain audit.k8s.io/v1 Policy files) from files, directories and
// kustomizations, applying the CRD schema's defaults exactly as the apiserver would, so offline
// rendering matches the controller byte for byte.
package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// Set is everything read from a list of paths.
type Set struct {
	// Modules in the order they were read.
	Modules []v1alpha1.AuditPolicyModule
	// NamespacedModules in the order they were read, each with its namespace: the one its
	// manifest names, or the namespace of the kustomization that lists it.
	NamespacedModules []v1alpha1.NamespacedAuditPolicyModule
	// Policy is the AuditPolicy singleton if one was given; nil otherwise.
	Policy *v1alpha1.AuditPolicy
	// Upstream holds plain audit.k8s.io/v1 Policy documents.
	Upstream []UpstreamPolicy
	// Warnings are about documents that were read but need a change, for the user.
	Warnings []string
	// UnknownFields are fields that the objects' types do not have (ReadLenient only).
	UnknownFields []UnknownField
}

// UpstreamPolicy is a plain audit.k8s.io/v1 Policy and where it was read from.
type UpstreamPolicy struct {
	Source string
	Policy auditv1.Policy
}

// Stdin is the path that stands for standard input.
const Stdin = "-"

// Read reads manifests from files, directories (every .yaml, .yml and .json file, recursively,
// or only the listed resources where the directory holds a kustomization) and "-" for stdin.
// A field that the object's type does not have is an error, as with kubectl apply.
func Read(stdin io.Reader, paths ...string) (*Set, error) {
	set, err := ReadLenient(stdin, paths...)
	if err != nil {
		return nil, err
	}
	if len(set.UnknownFields) > 0 {
		errs := make([]error, len(set.UnknownFields))
		for i, u := range set.UnknownFields {
			errs[i] = u
		}
		return nil, errors.Join(errs...)
	}
	for _, m := range set.NamespacedModules {
		if m.Namespace == "" {
			// kubectl would use its context's namespace, which offline tools cannot know.
			return nil, fmt.Errorf("NamespacedAuditPolicyModule %q: metadata.namespace: Required value: set it in the manifest or in the kustomization that lists it", m.Name)
		}
	}
	return set, nil
}

// ReadLenient is Read, but reads objects as kube-apiserver reads them when it is not asked to
// validate fields (and a policy file always): fields the type does not have are dropped, and
// listed in Set.UnknownFields.
func ReadLenient(stdin io.Reader, paths ...string) (*Set, error) {
	w := &walk{set: &Set{}, stdin: stdin, included: map[string]string{}}
	for _, p := range paths {
		if err := w.readPath(p); err != nil {
			return nil, err
		}
	}
	return w.set, nil
}

// walk is the state of one Read: the kustomization directories being read, outermost first, to
// report a cycle instead of recursing forever, and the files read so far, to report one read
// twice (kustomize refuses both).
type walk struct {
	set   *Set
	stdin io.Reader
	// chain holds the kustomization directories being read, as given and as real paths.
	chain, realChain []string
	// included maps the real path of each file read to the path it was read as, and from which
	// kustomization.
	included map[string]string
}

func (w *walk) readPath(path string) error {
	if path == Stdin {
		data, err := io.ReadAll(w.stdin)
		if err != nil {
			return fmt.Errorf("reading stdin: %w", err)
		}
		return w.set.add("<stdin>", data)
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	real, err := realPath(path)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		where := path
		if n := len(w.chain); n > 0 {
			where += " (resource of " + w.chain[n-1] + ")"
		}
		if first, ok := w.included[real]; ok {
			return fmt.Errorf("a file is included twice, as %s and as %s: kustomize refuses a resource listed twice", first, where)
		}
		w.included[real] = where
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return w.set.add(path, data)
	}
	if k, ok := findKustomization(path); ok {
		if i := slices.Index(w.realChain, real); i >= 0 {
			return fmt.Errorf("kustomization cycle: %s", strings.Join(append(slices.Clone(w.chain[i:]), path), " -> "))
		}
		w.chain, w.realChain = append(w.chain, path), append(w.realChain, real)
		defer func() { w.chain, w.realChain = w.chain[:len(w.chain)-1], w.realChain[:len(w.realChain)-1] }()
		return w.readKustomization(path, k)
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && isManifest(p) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(files)
	for _, f := range files {
		if err := w.readPath(f); err != nil {
			return err
		}
	}
	return nil
}

// realPath is the absolute path of p with every symbolic link resolved: the same file or directory
// always has the same real path.
func realPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

func isManifest(p string) bool {
	switch filepath.Ext(p) {
	case ".yaml", ".yml", ".json":
		return !isKustomization(filepath.Base(p))
	}
	return false
}

func isKustomization(name string) bool {
	return name == "kustomization.yaml" || name == "kustomization.yml" || name == "Kustomization"
}

func findKustomization(dir string) (string, bool) {
	for _, name := range []string{"kustomization.yaml", "kustomization.yml", "Kustomization"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	return "", false
}

// kustomization is the part of a kustomization that kaudit understands: plain resources, and
// the namespace it sets on namespaced ones.
type kustomization struct {
	Resources []string `json:"resources"`
	Namespace string   `json:"namespace"`
}

func (w *walk) readKustomization(dir, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var k map[string]any
	if err := yaml.Unmarshal(data, &k); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	for key := range k {
		switch key {
		case "apiVersion", "kind", "resources", "metadata", "namespace":
		default:
			return fmt.Errorf("%s: field %q is not supported here (only resources are read); render the output of `kustomize build %s` instead", file, key, dir)
		}
	}
	var kz kustomization
	if err := yaml.Unmarshal(data, &kz); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	first := len(w.set.NamespacedModules)
	for _, r := range kz.Resources {
		if strings.Contains(r, "://") {
			return fmt.Errorf("%s: remote resource %q cannot be read offline", file, r)
		}
		if err := w.readPath(filepath.Join(dir, r)); err != nil {
			return err
		}
	}
	// As kustomize does, the kustomization's namespace replaces that of its namespaced objects.
	if kz.Namespace != "" {
		for i := first; i < len(w.set.NamespacedModules); i++ {
			w.set.NamespacedModules[i].Namespace = kz.Namespace
		}
	}
	return nil
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

func (s *Set) add(source string, data []byte) error {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for doc := 1; ; doc++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: document %d: %w", source, doc, err)
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			continue
		}
		where := fmt.Sprintf("%s: document %d", source, doc)
		if err := s.addDocument(where, raw); err != nil {
			return err
		}
	}
}

func (s *Set) addDocument(where string, raw []byte) error {
	raw, err := toJSON(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	var tm typeMeta
	if err := json.Unmarshal(raw, &tm); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	switch {
	case tm.APIVersion == v1alpha1.GroupVersion.String() && tm.Kind == "AuditPolicyModule":
		if tm.Metadata.Name == "" {
			return fmt.Errorf("%s: AuditPolicyModule: metadata.name: Required value", where)
		}
		var m v1alpha1.AuditPolicyModule
		unknown, err := decodeDefaulted(raw, "AuditPolicyModule", &m)
		if err != nil {
			return fmt.Errorf("%s: AuditPolicyModule %q: %w", where, tm.Metadata.Name, err)
		}
		s.addUnknownFields(where, fmt.Sprintf("AuditPolicyModule %q", m.Name), m.Name, unknown)
		s.Modules = append(s.Modules, m)
	case tm.APIVersion == v1alpha1.GroupVersion.String() && tm.Kind == "NamespacedAuditPolicyModule":
		if tm.Metadata.Name == "" {
			return fmt.Errorf("%s: NamespacedAuditPolicyModule: metadata.name: Required value", where)
		}
		var m v1alpha1.NamespacedAuditPolicyModule
		unknown, err := decodeDefaulted(raw, "NamespacedAuditPolicyModule", &m)
		if err != nil {
			return fmt.Errorf("%s: NamespacedAuditPolicyModule %q: %w", where, tm.Metadata.Name, err)
		}
		s.addUnknownFields(where, fmt.Sprintf("NamespacedAuditPolicyModule %s/%s", m.Namespace, m.Name), m.Name, unknown)
		s.NamespacedModules = append(s.NamespacedModules, m)
	case tm.APIVersion == v1alpha1.GroupVersion.String() && tm.Kind == "AuditPolicy":
		if tm.Metadata.Name != v1alpha1.SingletonName {
			return fmt.Errorf("%s: AuditPolicy %q: metadata.name: Invalid value: the AuditPolicy is a singleton and must be named %s", where, tm.Metadata.Name, v1alpha1.SingletonName)
		}
		if s.Policy != nil {
			return fmt.Errorf("%s: a second AuditPolicy: only one may be given", where)
		}
		var p v1alpha1.AuditPolicy
		unknown, err := decodeDefaulted(raw, "AuditPolicy", &p)
		if err != nil {
			return fmt.Errorf("%s: AuditPolicy %q: %w", where, tm.Metadata.Name, err)
		}
		s.addUnknownFields(where, fmt.Sprintf("AuditPolicy %q", p.Name), "", unknown)
		s.Policy = &p
	case isUpstreamPolicy(tm.APIVersion, tm.Kind):
		return s.addUpstream(where, tm.APIVersion, raw)
	default:
		return fmt.Errorf("%s: unsupported kind %q (apiVersion %q): expected AuditPolicyModule, NamespacedAuditPolicyModule or AuditPolicy of %s, or an audit.k8s.io/v1 Policy", where, tm.Kind, tm.APIVersion, v1alpha1.GroupVersion)
	}
	return nil
}

// decodeDefaulted applies the CRD schema's defaults to a document (JSON), validates it as the
// apiserver would on `kubectl apply` (schema and CEL rules) and decodes it as the apiserver does
// (field names are case-sensitive). It returns the paths of the fields the type does not have,
// which the decoding dropped.
func decodeDefaulted(raw []byte, kind string, into any) ([]string, error) {
	schemas, err := loadSchemas()
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	if errs := schemas[kind].defaultAndValidate(obj); len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return decodeJSON(b, into)
}

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("---")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
