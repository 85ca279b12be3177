#!/usr/bin/env bash
# Provides kube-apiserver, etcd and kubectl for envtest and prints the directory
# that holds them (use as KUBEBUILDER_ASSETS).
#
# Order of preference:
#   1. the machine-level cache $KAUDIT_CACHE/envtest/<version>-<os>-<arch>
#   2. a normal `setup-envtest use` (works where downloads are allowed)
#   3. building the binaries from the Go module proxy (offline machines)
# The result is cached outside the clone, keyed by version, and linked into
# bin/k8s/<version>-<os>-<arch> so a fresh clone on the same machine reuses it.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.7.3}"
SETUP_ENVTEST="${SETUP_ENVTEST:-}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GOOS="$(go env GOOS)"
GOARCH="$(go env GOARCH)"
PLATFORM="${K8S_VERSION}-${GOOS}-${GOARCH}"
CACHE_ROOT="${KAUDIT_CACHE:-${HOME}/.cache/kaudit}"
CACHE_DIR="${CACHE_ROOT}/envtest/${PLATFORM}-etcd${ETCD_VERSION}"
LINK="${ROOT}/bin/k8s/${PLATFORM}"
BINARIES=(kube-apiserver etcd kubectl)

log() { echo "envtest-assets: $*" >&2; }

complete() {
  local dir="$1"
  for b in "${BINARIES[@]}"; do [[ -x "${dir}/${b}" ]] || return 1; done
}

link_cache() {
  mkdir -p "$(dirname "${LINK}")"
  if [[ -L "${LINK}" || ! -e "${LINK}" ]]; then
    ln -sfn "${CACHE_DIR}" "${LINK}"
  fi
  echo "${LINK}"
}

# 1. Cache hit.
if complete "${CACHE_DIR}"; then
  log "using cached binaries in ${CACHE_DIR}"
  link_cache
  exit 0
fi

# 2. The normal way, where the network allows it. Bounded so an offline
#    machine does not hang on the download.
if [[ -n "${SETUP_ENVTEST}" && -x "${SETUP_ENVTEST}" ]]; then
  log "trying setup-envtest use ${K8S_VERSION}"
  tmp_assets="$(mktemp -d)"
  if dir="$(timeout 120 "${SETUP_ENVTEST}" use "${K8S_VERSION}" --bin-dir "${tmp_assets}" -p path 2>/dev/null)" \
     && [[ -x "${dir}/kube-apiserver" && -x "${dir}/etcd" ]]; then
    mkdir -p "${CACHE_DIR}"
    cp "${dir}"/* "${CACHE_DIR}/"
    rm -rf "${tmp_assets}"
    if complete "${CACHE_DIR}"; then link_cache; exit 0; fi
    log "setup-envtest gave no kubectl; building the missing binaries"
  else
    rm -rf "${tmp_assets}"
    log "setup-envtest could not download; building from the Go module proxy"
  fi
fi

# 3. Build from source through the module proxy.
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
staging="${CACHE_DIR}.partial"
rm -rf "${staging}"
mkdir -p "${staging}"
[[ -x "${CACHE_DIR}/kube-apiserver" ]] && cp "${CACHE_DIR}"/* "${staging}/" 2>/dev/null || true

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0

build_k8s() {
  log "building kube-apiserver and kubectl v${K8S_VERSION} (several minutes cold)"
  local mod="${work}/k8s"
  mkdir -p "${mod}"
  (
    cd "${mod}"
    go mod init kaudit.local/envtest-k8s >/dev/null 2>&1
    go mod edit -require="k8s.io/kubernetes@v${K8S_VERSION}"
    # k8s.io/kubernetes points its staging modules at ./staging; pin each to the
    # published v0.x.y tag of the same release instead.
    local kmod
    kmod="$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')"
    local minor="${K8S_VERSION#*.}"
    local staging_version="v0.${minor}"
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "${kmod}" | awk '{print $1}' | sort -u | while read -r m; do
      go mod edit -replace="${m}=${m}@${staging_version}"
    done
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    go mod tidy -e >/dev/null 2>&1 || true
    go get "k8s.io/kubernetes@v${K8S_VERSION}" >/dev/null
    go build -tags selinux,notest,grpcnotrace -trimpath -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION} \
      -X k8s.io/component-base/version.gitMajor=${K8S_VERSION%%.*} \
      -X k8s.io/component-base/version.gitMinor=$(echo "${K8S_VERSION}" | cut -d. -f2) \
      -X k8s.io/client-go/pkg/version.gitVersion=v${K8S_VERSION}" \
      -o "${staging}/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
  )
}

build_etcd() {
  log "building etcd v${ETCD_VERSION}"
  local mod="${work}/etcd"
  mkdir -p "${mod}"
  (
    cd "${mod}"
    go mod init kaudit.local/envtest-etcd >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}" >/dev/null
    go build -trimpath -ldflags "-s -w" -o "${staging}/etcd" go.etcd.io/etcd/server/v3
  )
}

[[ -x "${staging}/kube-apiserver" && -x "${staging}/kubectl" ]] || build_k8s
[[ -x "${staging}/etcd" ]] || build_etcd

# Publish atomically so a killed build never leaves a half cache behind.
rm -rf "${CACHE_DIR}"
mv "${staging}" "${CACHE_DIR}"
complete "${CACHE_DIR}" || { log "build finished without all of: ${BINARIES[*]}"; exit 1; }
log "cached in ${CACHE_DIR}"
link_cache
