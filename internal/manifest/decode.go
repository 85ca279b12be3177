package manifest

import (
	"bytes"
	"encoding/json"

	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// toJSON converts a YAML document to JSON. A JSON document, which is YAML too, is returned as it
// is: YAML parsers take many times the memory and time of a JSON one on large documents.
func toJSON(doc []byte) ([]byte, error) {
	if trimmed := bytes.TrimSpace(doc); len(trimmed) > 0 && trimmed[0] == '{' && json.Valid(trimmed) {
		return trimmed, nil
	}
	return yaml.YAMLToJSON(doc)
}

// decodeJSON decodes data into v as kube-apiserver does: field names are case-sensitive, and
// fields the type does not have are dropped. It returns their paths.
func decodeJSON(data []byte, v any) ([]string, error) {
	strict, err := kjson.UnmarshalStrict(data, v, kjson.DisallowUnknownFields)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, e := range strict {
		if p, ok := e.(interface{ FieldPath() string }); ok {
			paths = append(paths, p.FieldPath())
		}
	}
	return paths, nil
}
