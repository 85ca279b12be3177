#!/usr/bin/env bash
# cluster.sh up|down|env [audit|bare]
#
# up:   prepares the host, builds (or reuses) kind and the node image, and
#       creates kind cluster $KIND_CLUSTER (default kaudit-e2e).
#         audit (default): kube-apiserver starts with --audit-policy-file and
#           --audit-log-path, as a kind user would configure it: kind
#           kubeadmConfigPatches plus extraMounts of the policy's *directory*
#           (nothing can be renamed onto a bind-mounted file).
#         bare: no audit flags; kaudit is expected to add them.
#       KIND_WORKERS=N adds N worker nodes. KAUDIT_START_POLICY=FILE replaces
#       the starting policy of the audit mode (Metadata for everything), and
#       KAUDIT_AUDIT_LOG_MAXBACKUP how many rotated 100 MB logs are kept (2).
#       Both modes mount the audit log directory from the host so tests and
#       artifacts read the file the apiserver writes.
# down: deletes the cluster (caches stay).
# env:  prints shell assignments (KIND, KUBECONFIG, KIND_CLUSTER, node name,
#       host-side audit directories) for scripts and the e2e suite.
#
# Host-side state lives in $KAUDIT_E2E_DIR (default /tmp/kaudit-e2e/clusters/<cluster>).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CMD="${1:-up}"
MODE="${2:-${KAUDIT_E2E_MODE:-audit}}"
KIND_CLUSTER="${KIND_CLUSTER:-kaudit-e2e}"
E2E_DIR="${KAUDIT_E2E_DIR:-/tmp/kaudit-e2e/clusters/${KIND_CLUSTER}}"
POLICY_DIR="${E2E_DIR}/audit-policy"   # -> node:/etc/kubernetes/audit
LOG_DIR="${E2E_DIR}/audit-log"         # -> node:/var/log/kubernetes/audit
KUBECONFIG_FILE="${E2E_DIR}/kubeconfig"
NODE="${KIND_CLUSTER}-control-plane"

print_env() {
  cat <<ENV
export KIND=$(printf %q "${KIND_BIN}")
export KIND_CLUSTER=$(printf %q "${KIND_CLUSTER}")
export KIND_NODE=$(printf %q "${NODE}")
export KUBECONFIG=$(printf %q "${KUBECONFIG_FILE}")
export KAUDIT_E2E_DIR=$(printf %q "${E2E_DIR}")
export KAUDIT_E2E_MODE=$(printf %q "${MODE}")
export KAUDIT_AUDIT_POLICY_DIR=$(printf %q "${POLICY_DIR}")
export KAUDIT_AUDIT_LOG_DIR=$(printf %q "${LOG_DIR}")
ENV
}

write_config() {
  local cfg="$1"
  cat > "${cfg}" <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: ${KIND_CLUSTER}
networking:
  # The node image ships a bridge CNI config (10.244.0.0/24).
  disableDefaultCNI: true
nodes:
- role: control-plane
  extraMounts:
  - hostPath: ${LOG_DIR}
    containerPath: /var/log/kubernetes/audit
YAML
  if [[ "${MODE}" == audit ]]; then
    cat >> "${cfg}" <<YAML
  - hostPath: ${POLICY_DIR}
    containerPath: /etc/kubernetes/audit
YAML
  fi
  local i
  for ((i = 0; i < ${KIND_WORKERS:-0}; i++)); do
    echo "- role: worker" >> "${cfg}"
  done
  cat >> "${cfg}" <<YAML
kubeadmConfigPatches:
- |
  kind: KubeletConfiguration
  # cgroup v1 hosts (this machine); ignored on cgroup v2.
  failCgroupV1: false
YAML
  if [[ "${MODE}" == audit ]]; then
    cat >> "${cfg}" <<YAML
- |
  kind: ClusterConfiguration
  apiServer:
    extraArgs:
    - name: audit-policy-file
      value: /etc/kubernetes/audit/policy.yaml
    - name: audit-log-path
      value: /var/log/kubernetes/audit/audit.log
    - name: audit-log-maxsize
      value: "100"
    - name: audit-log-maxbackup
      value: "${KAUDIT_AUDIT_LOG_MAXBACKUP:-2}"
    extraVolumes:
    - name: audit-policy
      hostPath: /etc/kubernetes/audit
      mountPath: /etc/kubernetes/audit
      readOnly: true
      pathType: DirectoryOrCreate
    - name: audit-log
      hostPath: /var/log/kubernetes/audit
      mountPath: /var/log/kubernetes/audit
      readOnly: false
      pathType: DirectoryOrCreate
YAML
  fi
}

up() {
  [[ "${MODE}" == audit || "${MODE}" == bare ]] || die "mode must be audit or bare, not ${MODE}"
  "${KIND_DIR}/host-setup.sh"
  local image
  image="$("${KIND_DIR}/node-image.sh")"
  if "${KIND_BIN}" get clusters 2>/dev/null | grep -qx "${KIND_CLUSTER}"; then
    log "cluster ${KIND_CLUSTER} exists; delete it first (cluster.sh down)"
    return 1
  fi
  rm -rf "${E2E_DIR}"
  mkdir -p "${POLICY_DIR}" "${LOG_DIR}"
  if [[ "${MODE}" == audit ]]; then
    if [[ -n "${KAUDIT_START_POLICY:-}" ]]; then
      cp "${KAUDIT_START_POLICY}" "${POLICY_DIR}/policy.yaml"
    else
      # A starting policy, as a kind user would have before installing kaudit.
      cat > "${POLICY_DIR}/policy.yaml" <<'YAML'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
YAML
    fi
  fi
  write_config "${E2E_DIR}/kind-config.yaml"
  create() {
    "${KIND_BIN}" create cluster --name "${KIND_CLUSTER}" --image "${image}" \
      --config "${E2E_DIR}/kind-config.yaml" --kubeconfig "${KUBECONFIG_FILE}" --wait 3m
  }
  timed "kind create cluster (${MODE})" create
  # CoreDNS is not part of the offline image (kaudit needs no cluster DNS):
  # keep its pods from sitting in ImagePullBackOff.
  if ! docker exec "${NODE}" ctr -n k8s.io images ls -q | grep -q coredns; then
    kubectl --kubeconfig "${KUBECONFIG_FILE}" -n kube-system scale deployment coredns --replicas=0 >/dev/null
  fi
  print_env > "${E2E_DIR}/env"
  log "ready: source ${E2E_DIR}/env"
}

down() {
  if "${KIND_BIN}" get clusters 2>/dev/null | grep -qx "${KIND_CLUSTER}"; then
    "${KIND_BIN}" delete cluster --name "${KIND_CLUSTER}"
  fi
}

KIND_BIN="$("${KIND_DIR}/kind-binary.sh")"
K8S_BIN="$("${KIND_DIR}/k8s-binaries.sh")"
export PATH="${K8S_BIN}:${PATH}" # kubectl
case "${CMD}" in
  up) up ;;
  down) down ;;
  env) print_env ;;
  *) die "usage: cluster.sh up|down|env [audit|bare]" ;;
esac
