#!/usr/bin/env bash
# Builds kind v$KIND_VERSION from the Go module proxy into
# $KAUDIT_CACHE/kind/v<version>/kind and prints the binary's path.
# Set KIND to use an existing binary instead.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -n "${KIND:-}" ]]; then echo "${KIND}"; exit 0; fi
DIR="${CACHE_ROOT}/kind/v${KIND_VERSION}"
if [[ ! -x "${DIR}/kind" ]]; then
  p="$(start_partial "${DIR}")"
  log "building kind v${KIND_VERSION}"
  GOBIN="${p}" GOWORK=off GOFLAGS= CGO_ENABLED=0 timed "kind build" "${NICE[@]}" \
    go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kind@v${KIND_VERSION}"
  publish "${DIR}"
fi
echo "${DIR}/kind"
