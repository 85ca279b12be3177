# shellcheck shell=bash
# Shared helpers for hack/kind/*.sh. Source it; do not run it.
# shellcheck disable=SC2034 # variables for the scripts that source this file
#
# Everything expensive is cached outside the clone under
#   $KAUDIT_CACHE/<thing>/<version>-<recipe hash>
# and published atomically (build into <dir>.partial, then rename), so a killed
# build never leaves a half cache behind and a second run is a cache hit.

set -euo pipefail

KIND_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${KIND_DIR}/../.." && pwd)"
CACHE_ROOT="${KAUDIT_CACHE:-${HOME}/.cache/kaudit}"

# Versions. Override from the environment; each is part of its cache key.
K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.7.3}"
KIND_VERSION="${KIND_VERSION:-0.33.0}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
# Where debootstrap fetches packages: the first deb.debian.org-style URI apt uses here.
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# Builds share the machine: be polite.
NICE=(nice -n "${KAUDIT_NICE:-10}")

GOARCH_HOST="$(go env GOARCH 2>/dev/null || echo amd64)"

log() { printf '%s %s: %s\n' "$(date +%H:%M:%S)" "$(basename "$0")" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# recipe_hash FILE... [-- STRING...]: 12 hex of sha256 over the files' content and strings.
recipe_hash() {
  local files=() strings=() seen_sep=0
  for a in "$@"; do
    if [[ "$a" == "--" ]]; then seen_sep=1; continue; fi
    if (( seen_sep )); then strings+=("$a"); else files+=("$a"); fi
  done
  {
    for f in "${files[@]}"; do
      if [[ -d "$f" ]]; then
        (cd "$f" && find . -type f ! -name '*~' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
      else
        sha256sum < "$f"
      fi
    done
    printf '%s\n' "${strings[@]}"
  } | sha256sum | cut -c1-12
}

# start_partial DIR: prepare DIR.partial for a fresh build and print its path.
start_partial() {
  local dir="$1"
  rm -rf "${dir}.partial"
  mkdir -p "${dir}.partial"
  echo "${dir}.partial"
}

# publish DIR: atomically turn DIR.partial into DIR.
publish() {
  local dir="$1"
  rm -rf "${dir}"
  mv "${dir}.partial" "${dir}"
}

# timed LABEL CMD...: run CMD and record its wall time in $CACHE_ROOT/timings.log.
# CMD runs under errexit (no `||` around it, which would switch errexit off
# inside shell functions): a failure ends the script, unrecorded.
timed() {
  local label="$1"; shift
  local start end
  start="$(date +%s)"
  "$@"
  end="$(date +%s)"
  mkdir -p "${CACHE_ROOT}"
  printf '%s\t%s\t%ss\n' "$(date -u +%FT%TZ)" "${label}" "$((end - start))" >> "${CACHE_ROOT}/timings.log"
  log "${label}: $((end - start))s"
}

# bump_apiserver_annotation NODE KEY VALUE: sets annotation KEY to VALUE in the
# kube-apiserver static pod manifest of kind node NODE, written atomically
# (temp file outside the manifests directory, then rename), so the kubelet
# restarts the apiserver with nothing else changed.
bump_apiserver_annotation() {
  local node="$1" key="$2" value="$3"
  docker exec -i "${node}" bash -euc "
    m=/etc/kubernetes/manifests/kube-apiserver.yaml
    tmp=\$(mktemp /etc/kubernetes/.kube-apiserver.XXXXXX)
    grep -v '${key}:' \$m | sed '0,/^  annotations:/s#^  annotations:#  annotations:\n    ${key}: \"${value}\"#' > \$tmp
    chmod 600 \$tmp
    mv \$tmp \$m"
}

# node_ip NODE: the node container's address on the kind network.
node_ip() {
  docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"
}
