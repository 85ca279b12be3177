#!/usr/bin/env bash
# lb-tools.sh: tests and builds src/lb once per recipe and prints the directory
# holding its two static binaries:
#   envoy    the stand-in for kind's load balancer (lb-image.sh packages it)
#   lbprobe  requests at a fixed rate through a load balancer, failures counted
#            (measure-lb.sh)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SRC="${KIND_DIR}/src/lb"
DIR="${CACHE_ROOT}/lb-tools/$(recipe_hash "${BASH_SOURCE[0]}" "${SRC}" -- "$(go env GOVERSION)")"
if [[ ! -x "${DIR}/envoy" || ! -x "${DIR}/lbprobe" ]]; then
  p="$(start_partial "${DIR}")"
  build() (
    cd "${SRC}"
    export GOWORK=off GOFLAGS= CGO_ENABLED=0
    # -trimpath like the builds (and kind-binary.sh): one compiled standard library for all.
    "${NICE[@]}" go test -trimpath -count=1 ./... >&2
    "${NICE[@]}" go build -trimpath -ldflags "-s -w" -o "${p}/envoy" ./envoy
    "${NICE[@]}" go build -trimpath -ldflags "-s -w" -o "${p}/lbprobe" ./lbprobe
  )
  timed "lb tools test and build" build
  publish "${DIR}"
fi
echo "${DIR}"
