#!/usr/bin/env bash
# lb-image.sh [NODE_IMAGE]: makes sure the load-balancer image that kind names
# for clusters with several control-plane nodes (docker.io/envoyproxy/envoy:<tag>,
# read from the kind binary) is in Docker, and prints its name.
#   - Present and not ours, or `docker pull` succeeds: the real envoy is used.
#   - Otherwise (offline): the stand-in src/lb/envoy is tagged under that name,
#     FROM the node image (bash and coreutils for kind's bootstrap command; the
#     node image is there anyway, so the only new layer is the binary). Its
#     label kaudit.local/lb-stand-in holds the recipe hash.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LABEL="kaudit.local/lb-stand-in"

KIND_BIN="$("${KIND_DIR}/kind-binary.sh")"
IMAGE="$(grep -aoE -m1 'docker\.io/envoyproxy/envoy:v[0-9]+\.[0-9]+\.[0-9]+' "${KIND_BIN}" | head -n1 || true)"
[[ -n "${IMAGE}" ]] || die "no docker.io/envoyproxy/envoy image named in ${KIND_BIN}"
NODE_IMAGE="${1:-$("${KIND_DIR}/node-image.sh")}"
TOOLS="$("${KIND_DIR}/lb-tools.sh")"
HASH="$(recipe_hash "${BASH_SOURCE[0]}" -- "${IMAGE}" "${NODE_IMAGE}" "${TOOLS}")"

label="$(docker image inspect -f "{{index .Config.Labels \"${LABEL}\"}}" "${IMAGE}" 2>/dev/null || echo absent)"
case "${label}" in
  "${HASH}") log "cached stand-in ${IMAGE}"; echo "${IMAGE}"; exit 0 ;;
  "" | "<no value>") log "using ${IMAGE}"; echo "${IMAGE}"; exit 0 ;;
esac
if docker pull -q "${IMAGE}" >/dev/null 2>&1; then
  log "pulled ${IMAGE}"
  echo "${IMAGE}"; exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
cp "${TOOLS}/envoy" "${work}/envoy"
cat > "${work}/Dockerfile" <<DOCKERFILE
FROM ${NODE_IMAGE}
COPY envoy /usr/local/bin/envoy
LABEL ${LABEL}=${HASH}
STOPSIGNAL SIGTERM
ENTRYPOINT []
CMD ["envoy", "-c", "/etc/envoy/envoy.yaml"]
DOCKERFILE
out="$(docker build -q -t "${IMAGE}" "${work}" 2>&1)" || { echo "${out}" >&2; die "docker build ${IMAGE} failed"; }
log "built stand-in ${IMAGE} (${LABEL}=${HASH})"
echo "${IMAGE}"
