#!/usr/bin/env bash
# image.sh [IMG]: builds the statically linked kaudit binary on the host and
# packages it with the FROM scratch Dockerfile (nothing is pulled).
# Default IMG: kaudit.local/kaudit:dev (the Makefile's IMG).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IMG="${1:-${IMG:-kaudit.local/kaudit:dev}}"
"${KIND_DIR}/host-setup.sh" # a Docker daemon, where none runs yet
cd "${ROOT}"
mkdir -p bin/docker
GOWORK=off CGO_ENABLED=0 GOOS=linux GOARCH="${GOARCH_HOST}" "${NICE[@]}" \
  go build -trimpath -ldflags "-s -w" -o bin/docker/kaudit .
out="$(mktemp)"
trap 'rm -f "${out}"' EXIT
docker build -q -t "${IMG}" . > "${out}" 2>&1 || { cat "${out}" >&2; die "docker build ${IMG} failed"; }
log "built ${IMG}"
