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
#       KIND_CONTROL_PLANES=N makes N control-plane nodes (default 1); with
#       more than one, kind puts its load balancer in front of them (image
#       from lb-image.sh: the real envoy, or the offline stand-in).
#       KIND_WORKERS=N adds N worker nodes. KAUDIT_START_POLICY=FILE replaces
#       the starting policy of the audit mode (Metadata for everything), and
#       KAUDIT_AUDIT_LOG_MAXBACKUP how many rotated 100 MB logs are kept (2).
#       Every control-plane node mounts host directories of its own for the
#       policy and the audit log (both modes mount the log directory), so
#       tests and artifacts read the file each apiserver writes.
# down: deletes the cluster (caches stay).
# env:  prints shell assignments (KIND, KUBECONFIG, KIND_CLUSTER, node names,
#       host-side audit directories) for scripts and the e2e suite; node
#       counts come from the cluster when it exists, else from
#       KIND_CONTROL_PLANES and KIND_WORKERS.
#
# Host-side state lives in $KAUDIT_E2E_DIR (default /tmp/kaudit-e2e/clusters/<cluster>):
#   kubeconfig, kind-config.yaml, env, and per control-plane node
#   nodes/<node>/audit-policy (-> node:/etc/kubernetes/audit, audit mode)
#   nodes/<node>/audit-log    (-> node:/var/log/kubernetes/audit)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CMD="${1:-up}"
MODE="${2:-${KAUDIT_E2E_MODE:-audit}}"
KIND_CLUSTER="${KIND_CLUSTER:-kaudit-e2e}"
E2E_DIR="${KAUDIT_E2E_DIR:-/tmp/kaudit-e2e/clusters/${KIND_CLUSTER}}"
NODES_DIR="${E2E_DIR}/nodes"
KUBECONFIG_FILE="${E2E_DIR}/kubeconfig"
CONTROL_PLANES="${KIND_CONTROL_PLANES:-1}"
WORKERS="${KIND_WORKERS:-0}"

# node_name ROLE I: kind's name of the I-th (from 1) node of ROLE.
node_name() {
  local suffix=""
  (( $2 > 1 )) && suffix="$2"
  echo "${KIND_CLUSTER}-$1${suffix}"
}

# count_existing ROLE: how many ROLE nodes the existing cluster has.
count_existing() {
  docker ps -a --filter "label=io.x-k8s.kind.cluster=${KIND_CLUSTER}" \
    --filter "label=io.x-k8s.kind.role=$1" --format '{{.Names}}' 2>/dev/null | grep -c . || true
}

cluster_exists() { "${KIND_BIN}" get clusters 2>/dev/null | grep -qx "${KIND_CLUSTER}"; }

# set_nodes: CONTROL_PLANE_NODES, WORKER_NODES, NODE (the first control plane).
set_nodes() {
  [[ "${CONTROL_PLANES}" =~ ^[1-9][0-9]*$ ]] || die "KIND_CONTROL_PLANES must be a positive number, not ${CONTROL_PLANES}"
  [[ "${WORKERS}" =~ ^[0-9]+$ ]] || die "KIND_WORKERS must be a number, not ${WORKERS}"
  local i
  CONTROL_PLANE_NODES=() WORKER_NODES=()
  for ((i = 1; i <= CONTROL_PLANES; i++)); do CONTROL_PLANE_NODES+=("$(node_name control-plane "$i")"); done
  for ((i = 1; i <= WORKERS; i++)); do WORKER_NODES+=("$(node_name worker "$i")"); done
  NODE="${CONTROL_PLANE_NODES[0]}"
  LOAD_BALANCER=""
  (( CONTROL_PLANES > 1 )) && LOAD_BALANCER="${KIND_CLUSTER}-external-load-balancer"
  return 0
}

# Lists are space-separated and single-quoted (node names have no quotes).
print_env() {
  cat <<ENV
export KIND=$(printf %q "${KIND_BIN}")
export KIND_CLUSTER=$(printf %q "${KIND_CLUSTER}")
export KIND_NODE=$(printf %q "${NODE}")
export KIND_CONTROL_PLANES=${CONTROL_PLANES}
export KIND_CONTROL_PLANE_NODES='${CONTROL_PLANE_NODES[*]}'
export KIND_WORKER_NODES='${WORKER_NODES[*]}'
export KIND_LOAD_BALANCER='${LOAD_BALANCER}'
export KUBECONFIG=$(printf %q "${KUBECONFIG_FILE}")
export KAUDIT_E2E_DIR=$(printf %q "${E2E_DIR}")
export KAUDIT_E2E_MODE=$(printf %q "${MODE}")
export KAUDIT_NODES_DIR=$(printf %q "${NODES_DIR}")
export KAUDIT_AUDIT_POLICY_DIR=$(printf %q "$(policy_dir "${NODE}")")
export KAUDIT_AUDIT_LOG_DIR=$(printf %q "$(log_dir "${NODE}")")
ENV
}

policy_dir() { echo "${NODES_DIR}/$1/audit-policy"; }
log_dir() { echo "${NODES_DIR}/$1/audit-log"; }

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
YAML
  # kind names the control-plane entries in order: <cluster>-control-plane,
  # -control-plane2, ...; each mounts its own directories.
  local n
  for n in "${CONTROL_PLANE_NODES[@]}"; do
    cat >> "${cfg}" <<YAML
- role: control-plane
  extraMounts:
  - hostPath: $(log_dir "${n}")
    containerPath: /var/log/kubernetes/audit
YAML
    if [[ "${MODE}" == audit ]]; then
      cat >> "${cfg}" <<YAML
  - hostPath: $(policy_dir "${n}")
    containerPath: /etc/kubernetes/audit
YAML
    fi
  done
  for n in "${WORKER_NODES[@]}"; do
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
  set_nodes
  local image
  image="$("${KIND_DIR}/node-image.sh")"
  # kind runs its load balancer only in front of several control planes.
  (( CONTROL_PLANES > 1 )) && "${KIND_DIR}/lb-image.sh" "${image}" >/dev/null
  if cluster_exists; then
    log "cluster ${KIND_CLUSTER} exists; delete it first (cluster.sh down)"
    return 1
  fi
  rm -rf "${E2E_DIR}"
  local n
  for n in "${CONTROL_PLANE_NODES[@]}"; do
    mkdir -p "$(log_dir "${n}")"
    [[ "${MODE}" == audit ]] || continue
    mkdir -p "$(policy_dir "${n}")"
    if [[ -n "${KAUDIT_START_POLICY:-}" ]]; then
      cp "${KAUDIT_START_POLICY}" "$(policy_dir "${n}")/policy.yaml"
    else
      # A starting policy, as a kind user would have before installing kaudit.
      cat > "$(policy_dir "${n}")/policy.yaml" <<'YAML'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
YAML
    fi
  done
  write_config "${E2E_DIR}/kind-config.yaml"
  create() {
    "${KIND_BIN}" create cluster --name "${KIND_CLUSTER}" --image "${image}" \
      --config "${E2E_DIR}/kind-config.yaml" --kubeconfig "${KUBECONFIG_FILE}" --wait 3m
  }
  local label="${MODE}"
  (( CONTROL_PLANES > 1 )) && label="${MODE}, ${CONTROL_PLANES} control planes"
  (( WORKERS > 0 )) && label="${label}, ${WORKERS} workers"
  timed "kind create cluster (${label})" create
  # CoreDNS is not part of the offline image (kaudit needs no cluster DNS):
  # keep its pods from sitting in ImagePullBackOff.
  if ! docker exec "${NODE}" ctr -n k8s.io images ls -q | grep -q coredns; then
    kubectl --kubeconfig "${KUBECONFIG_FILE}" -n kube-system scale deployment coredns --replicas=0 >/dev/null
  fi
  print_env > "${E2E_DIR}/env"
  log "ready: source ${E2E_DIR}/env"
}

down() {
  if cluster_exists; then
    "${KIND_BIN}" delete cluster --name "${KIND_CLUSTER}"
  fi
}

# env: the nodes of the cluster as it exists, else as up would make it.
env_cmd() {
  if cluster_exists; then
    CONTROL_PLANES="$(count_existing control-plane)"
    WORKERS="$(count_existing worker)"
  fi
  set_nodes
  print_env
}

KIND_BIN="$("${KIND_DIR}/kind-binary.sh")"
K8S_BIN="$("${KIND_DIR}/k8s-binaries.sh")"
export PATH="${K8S_BIN}:${PATH}" # kubectl
case "${CMD}" in
  up) up ;;
  down) down ;;
  env) env_cmd ;;
  *) die "usage: cluster.sh up|down|env [audit|bare]" ;;
esac
