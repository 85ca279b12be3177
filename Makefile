# Image used by config/, kind load and dist/install.yaml.
IMG ?= kaudit.local/kaudit:dev
# kind cluster of kind-up, kind-load and kind-down (the e2e suite names its own).
KIND_CLUSTER ?= kaudit-e2e
# Kubernetes version of the envtest control plane (kube-apiserver, etcd, kubectl).
ENVTEST_K8S_VERSION ?= 1.37.2
# Modules that `make demo` applies.
DEMO_MODULES ?= config/samples

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

LOCALBIN ?= $(shell pwd)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
KUSTOMIZE ?= $(LOCALBIN)/kustomize
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint
KUBECTL ?= kubectl
CONTROLLER_TOOLS_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.7.1
GOLANGCI_LINT_VERSION ?= v2.15.0
GO_TEST_FLAGS ?= -race

# `make uninstall ignore-not-found=true` (and undeploy) ignore objects that are already gone.
ignore-not-found ?= false

# The environment of every command that starts envtest: the directory of kube-apiserver, etcd and
# kubectl that hack/envtest-assets.sh provides (built once, then cached).
# How long envtest waits for kube-apiserver to start (its default is 20s): `go test ./...` starts
# several envtest control planes at once, with the race detector, on a machine of two cores.
ENVTEST_START_TIMEOUT ?= 3m
ENVTEST_ENV = KUBEBUILDER_ASSETS="$$(K8S_VERSION=$(ENVTEST_K8S_VERSION) hack/envtest-assets.sh)" KUBEBUILDER_CONTROLPLANE_START_TIMEOUT=$(ENVTEST_START_TIMEOUT)

# config/default rendered for the image $(IMG). The image is set in a temporary copy of config/,
# so the committed config/default/kustomization.yaml keeps the default image and the tree stays
# clean.
RENDER_DEFAULT = tmp="$$(mktemp -d)" && trap 'rm -rf "$$tmp"' EXIT && cp -R config "$$tmp/" && \
	(cd "$$tmp/config/default" && $(KUSTOMIZE) edit set image kaudit.local/kaudit=$(IMG)) && \
	$(KUSTOMIZE) build "$$tmp/config/default"

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate CRDs and RBAC from the kubebuilder markers.
	$(CONTROLLER_GEN) rbac:roleName=kaudit-manager crd paths="./..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint (.golangci.yml; the e2e suite included).
	$(GOLANGCI_LINT) run

.PHONY: lint-fix
lint-fix: golangci-lint ## Run golangci-lint and apply the fixes it can make.
	$(GOLANGCI_LINT) run --fix

.PHONY: envtest-assets
envtest-assets: ## Provide kube-apiserver, etcd and kubectl for envtest (cached in ~/.cache/kaudit).
	@K8S_VERSION=$(ENVTEST_K8S_VERSION) hack/envtest-assets.sh >/dev/null

.PHONY: test
test: manifests generate vet envtest-assets ## Run all tests (unit, envtest) with the race detector.
	$(ENVTEST_ENV) go test $(GO_TEST_FLAGS) ./... -coverprofile cover.out

.PHONY: check-generated
check-generated: manifests generate ## Fail if generated code or manifests are not committed.
	@git diff --exit-code -- api config || { echo "generated files are out of date: run 'make generate manifests' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- api config)" || { git status --porcelain -- api config; echo "untracked generated files: commit them"; exit 1; }

.PHONY: check-installer
check-installer: build-installer ## Fail if dist/install.yaml is not what config/default renders, or not committed.
	@git diff --exit-code -- dist/install.yaml config/default || { echo "dist/install.yaml is out of date: run 'make build-installer' and commit it"; exit 1; }
	@test -z "$$(git status --porcelain -- dist/install.yaml)" || { echo "dist/install.yaml is not committed: run 'make build-installer' and commit it"; exit 1; }

.PHONY: bench
bench: envtest-assets ## Run the benchmarks and print ratios against their baselines.
	$(ENVTEST_ENV) hack/bench.sh

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the kaudit binary.
	CGO_ENABLED=0 go build -o bin/kaudit .

.PHONY: run
run: manifests generate ## Run the manager against the cluster in ~/.kube/config.
	go run . manager

.PHONY: demo
demo: envtest-assets ## Start a local control plane, run the manager on the sample modules, print the result.
	$(ENVTEST_ENV) go run ./hack/demo --modules=$(DEMO_MODULES)

.PHONY: docker-build
docker-build: ## Build the image $(IMG): the static binary in a FROM scratch image (nothing is pulled).
	hack/kind/image.sh $(IMG)

##@ End-to-end (kind)

.PHONY: test-e2e
test-e2e: ## Run the e2e suite on kind: real kubelet, real kube-apiserver restarts, the real audit log.
	IMG=$(IMG) go test -tags e2e ./test/e2e -count=1 -timeout 80m -v -ginkgo.v -ginkgo.timeout=75m

.PHONY: kind-up
kind-up: ## Create kind cluster $(KIND_CLUSTER) with audit flags (offline node image and host fixes as needed).
	KIND_CLUSTER=$(KIND_CLUSTER) hack/kind/cluster.sh up

.PHONY: kind-load
kind-load: docker-build ## Load $(IMG) into kind cluster $(KIND_CLUSTER).
	"$$(hack/kind/kind-binary.sh)" load docker-image $(IMG) --name $(KIND_CLUSTER)

.PHONY: kind-down
kind-down: ## Delete kind cluster $(KIND_CLUSTER); the caches in ~/.cache/kaudit stay.
	KIND_CLUSTER=$(KIND_CLUSTER) hack/kind/cluster.sh down

##@ Deployment

.PHONY: install
install: manifests kustomize ## Install the CRDs into the cluster in ~/.kube/config.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) apply --server-side -f -

.PHONY: uninstall
uninstall: manifests kustomize ## Delete the CRDs, and with them every module and the AuditPolicy, from the cluster in ~/.kube/config.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

.PHONY: deploy
deploy: manifests kustomize ## Deploy kaudit for the image IMG into the cluster in ~/.kube/config.
	$(RENDER_DEFAULT) | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: kustomize ## Delete kaudit (config/default, CRDs included) from the cluster in ~/.kube/config.
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

.PHONY: build-installer
build-installer: manifests generate kustomize ## Write dist/install.yaml (namespace, CRDs, RBAC, manager, agent) for the image IMG.
	mkdir -p dist
	$(RENDER_DEFAULT) > dist/install.yaml.tmp
	mv dist/install.yaml.tmp dist/install.yaml

##@ Tools

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN):
	GOBIN=$(LOCALBIN) GOFLAGS= go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

.PHONY: kustomize
kustomize: $(KUSTOMIZE)
$(KUSTOMIZE):
	GOBIN=$(LOCALBIN) GOFLAGS= go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT)
$(GOLANGCI_LINT):
	GOBIN=$(LOCALBIN) GOFLAGS= go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
