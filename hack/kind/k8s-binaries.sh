#!/usr/bin/env bash
# Builds the Kubernetes node and control-plane binaries (kubelet, kubeadm,
# kubectl, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy)
# and etcd from the Go module proxy, and prints the directory that holds them.
#
# Same approach as hack/envtest-assets.sh (a throwaway module that requires
# k8s.io/kubernetes with every k8s.io staging module replaced by the v0.x.y tag
# of the same release; the same tags and -trimpath), so both share compiled
# packages through the Go build cache. Cached in
#   $KAUDIT_CACHE/k8s/v<K8S_VERSION>-etcd<ETCD_VERSION>-<recipe hash>/
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BINARIES=(kubelet kubeadm kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)
TAGS="selinux,notest,grpcnotrace"
RECIPE="tags=${TAGS};cgo=0;trimpath;ldflags=-s -w +version;bins=${BINARIES[*]};etcd=server/v3"
OUT="${CACHE_ROOT}/k8s/v${K8S_VERSION}-etcd${ETCD_VERSION}-$(recipe_hash -- "${RECIPE}")"

complete() {
  local b
  for b in "${BINARIES[@]}" etcd; do [[ -x "$1/${b}" ]] || return 1; done
}

if complete "${OUT}"; then
  log "cached: ${OUT}"
  echo "${OUT}"
  exit 0
fi

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
# Keep what a previous, interrupted run already finished.
staging="${OUT}.partial"
mkdir -p "${staging}"

build_k8s() {
  local mod="${work}/k8s" missing=() b
  for b in "${BINARIES[@]}"; do [[ -x "${staging}/${b}" ]] || missing+=("k8s.io/kubernetes/cmd/${b}"); done
  (( ${#missing[@]} )) || return 0
  log "building ${missing[*]##*/} v${K8S_VERSION} (10+ minutes cold on 2 cores)"
  mkdir -p "${mod}"
  cd "${mod}"
  go mod init kaudit.local/kind-k8s >/dev/null 2>&1
  go mod edit -require="k8s.io/kubernetes@v${K8S_VERSION}"
  local kmod minor
  kmod="$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')"
  minor="${K8S_VERSION#*.}"
  grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "${kmod}" | awk '{print $1}' | sort -u | while read -r m; do
    go mod edit -replace="${m}=${m}@v0.${minor}"
  done
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for b in "${BINARIES[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "${b}"; done
    printf ')\n'
  } > tools.go
  go mod tidy -e >/dev/null 2>&1 || true
  go get "k8s.io/kubernetes@v${K8S_VERSION}" >/dev/null
  local major="${K8S_VERSION%%.*}" kminor
  kminor="$(echo "${K8S_VERSION}" | cut -d. -f2)"
  "${NICE[@]}" go build -tags "${TAGS}" -trimpath -ldflags "-s -w \
    -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION} \
    -X k8s.io/component-base/version.gitMajor=${major} \
    -X k8s.io/component-base/version.gitMinor=${kminor} \
    -X k8s.io/component-base/version.gitTreeState=clean \
    -X k8s.io/client-go/pkg/version.gitVersion=v${K8S_VERSION} \
    -X k8s.io/client-go/pkg/version.gitMajor=${major} \
    -X k8s.io/client-go/pkg/version.gitMinor=${kminor}" \
    -o "${staging}/" "${missing[@]}"
}

build_etcd() {
  [[ -x "${staging}/etcd" ]] && return 0
  log "building etcd v${ETCD_VERSION}"
  local mod="${work}/etcd"
  mkdir -p "${mod}"
  cd "${mod}"
  go mod init kaudit.local/kind-etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}" >/dev/null
  "${NICE[@]}" go build -trimpath -ldflags "-s -w" -o "${staging}/etcd" go.etcd.io/etcd/server/v3
}

# A cached envtest build (hack/envtest-assets.sh) of the same version already
# has kube-apiserver, kubectl and etcd built the same way: reuse them.
envtest="${CACHE_ROOT}/envtest/${K8S_VERSION}-linux-${GOARCH_HOST}-etcd${ETCD_VERSION}"
for b in kube-apiserver kubectl etcd; do
  if [[ ! -x "${staging}/${b}" && -x "${envtest}/${b}" ]]; then cp "${envtest}/${b}" "${staging}/${b}"; fi
done

timed "k8s-binaries build" bash -c "$(declare -f build_k8s build_etcd log); $(declare -p BINARIES TAGS NICE K8S_VERSION ETCD_VERSION staging work); set -euo pipefail; build_k8s; build_etcd"
complete "${staging}" || die "build finished without all of: ${BINARIES[*]} etcd"
publish "${OUT}"
log "cached: ${OUT}"
echo "${OUT}"
