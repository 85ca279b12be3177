// The offline stand-in for kind's load balancer (envoy) and a probe that
// measures availability through it. A module of its own: the project's
// `go build ./...` never sees it, and its dependency does not touch the
// recipe hash of the helpers in ../go.mod (pause is part of the node image).
module kaudit.local/kind-lb

go 1.26

require sigs.k8s.io/yaml v1.6.0

require go.yaml.in/yaml/v2 v2.4.2 // indirect
