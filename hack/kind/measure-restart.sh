#!/usr/bin/env bash
# measure-restart.sh [N]
# Bare kube-apiserver restart-to-ready on the kind cluster of cluster.sh: bumps
# an annotation in /etc/kubernetes/manifests/kube-apiserver.yaml inside node
# $MEASURE_NODE (default: the first control plane; written atomically, temp
# file outside the manifests directory) and times until that node's apiserver
# answers /readyz ok (asked directly, not through a load balancer) *and* the
# mirror pod shows the new value.
# Prints one line per run; appends to $KAUDIT_CACHE/timings.log.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS="${1:-1}"
KIND_CLUSTER="${KIND_CLUSTER:-kaudit-e2e}"
eval "$("${KIND_DIR}/cluster.sh" env 2>/dev/null)"
K8S_BIN="$("${KIND_DIR}/k8s-binaries.sh" 2>/dev/null)"
export PATH="${K8S_BIN}:${PATH}"
NODE="${MEASURE_NODE:-${KIND_NODE}}"
POD="kube-apiserver-${NODE}"
KEY="kaudit.local/measure-bump"
SERVER="https://$(node_ip "${NODE}"):6443" # the node's own apiserver

now_ms() { date +%s%3N; }

for ((run = 1; run <= RUNS; run++)); do
  value="$(date +%s%N)"
  t0="$(now_ms)"
  bump_apiserver_annotation "${NODE}" "${KEY}" "${value}"
  down_ms="" mirror_ms="" ready_ms=""
  deadline=$((t0 + 240000))
  while (( $(now_ms) < deadline )); do
    if ! kubectl --server "${SERVER}" get --raw /readyz --request-timeout=2s >/dev/null 2>&1; then
      [[ -z "${down_ms}" ]] && down_ms=$(( $(now_ms) - t0 ))
    elif [[ -n "${mirror_ms}" ]]; then
      ready_ms=$(( $(now_ms) - t0 )); break
    fi
    if [[ -z "${mirror_ms}" ]]; then
      got="$(kubectl -n kube-system get pod "${POD}" -o "jsonpath={.metadata.annotations.kaudit\.local/measure-bump}" --request-timeout=2s 2>/dev/null || true)"
      [[ "${got}" == "${value}" ]] && mirror_ms=$(( $(now_ms) - t0 ))
    fi
    sleep 0.5
  done
  [[ -n "${ready_ms}" ]] || die "apiserver not ready with the new annotation after 240s"
  line="bare apiserver restart-to-ready: ${ready_ms} ms (readyz first failed at ${down_ms:-never seen} ms, mirror pod updated at ${mirror_ms} ms)"
  echo "${line}"
  printf '%s\t%s\t%ss\n' "$(date -u +%FT%TZ)" "bare apiserver restart-to-ready" "$((ready_ms / 1000))" >> "${CACHE_ROOT}/timings.log"
done
