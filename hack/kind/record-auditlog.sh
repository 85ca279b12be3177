#!/usr/bin/env bash
# record-auditlog.sh SCRIPT [OUT]
#
# Records a kube-apiserver audit log at RequestResponse (every stage, managedFields
# kept) on a fresh kind cluster while hack/kind/workloads/SCRIPT.sh drives it, then
# writes the events from the workload's start to its end, redacted by
# hack/redactauditlog, to OUT (default test/presets/testdata/auditlogs/SCRIPT.jsonl.gz).
# Any policy's log is a projection of this one, so `kaudit simulate` can compare
# policies on it. The workload script sets the cluster's shape (WORKERS=N), whether
# the log starts with the cluster's creation (FROM_CREATION=1) instead of the
# workload's first request, and defines run_workload, using the helpers below.
#
#   hack/kind/record-auditlog.sh shop          # one node, people and a CI bot
#   hack/kind/record-auditlog.sh platform      # three nodes, operators, GitOps, node churn
#   hack/kind/record-auditlog.sh homelab       # two nodes from creation on, admin as system:masters
#
# RECORD_CLUSTER names the kind cluster (default kaudit-rec-SCRIPT); it is deleted first.
# KEEP=1 leaves the cluster running.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCRIPT="${1:?usage: record-auditlog.sh SCRIPT [OUT]}"
WORKLOAD="${KIND_DIR}/workloads/${SCRIPT}.sh"
[[ -f "${WORKLOAD}" ]] || die "no workload ${WORKLOAD}"
OUT="${2:-${ROOT}/test/presets/testdata/auditlogs/${SCRIPT}.jsonl.gz}"

# Not KIND_CLUSTER: a shell with another cluster's env sourced must not have that cluster deleted.
export KIND_CLUSTER="${RECORD_CLUSTER:-kaudit-rec-${SCRIPT}}"
WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT

cat > "${WORK}/record.yaml" <<'YAML'
apiVersion: audit.k8s.io/v1
kind: Policy
omitManagedFields: false
rules:
- level: RequestResponse
YAML

WORKERS=0
FROM_CREATION=0
# shellcheck source=/dev/null
source "${WORKLOAD}"

"${KIND_DIR}/cluster.sh" down
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
KIND_WORKERS="${WORKERS}" KAUDIT_START_POLICY="${WORK}/record.yaml" KAUDIT_AUDIT_LOG_MAXBACKUP=20 \
  "${KIND_DIR}/cluster.sh" up audit
eval "$("${KIND_DIR}/cluster.sh" env)"
K8S_BIN="$("${KIND_DIR}/k8s-binaries.sh")"
export PATH="${K8S_BIN}:${PATH}"
kubectl wait --for=condition=Ready nodes --all --timeout=3m >/dev/null

# Images the node already has: nothing can be pulled here.
node_image() { docker exec "${KIND_NODE}" ctr -n k8s.io images ls -q | grep -E "/$1:" | grep -v '@' | head -n1; }
PAUSE_IMAGE="$(node_image pause)"
ETCD_IMAGE="$(node_image etcd)"
[[ -n "${PAUSE_IMAGE}" && -n "${ETCD_IMAGE}" ]] || die "the node has no pause or etcd image"

# add_user NAME GROUP: a person with a client certificate the cluster's CA signed through the
# CertificateSigningRequest API, as kubeadm clusters onboard people. Prints the kubeconfig path.
add_user() {
  local name="$1" group="$2" kc="${WORK}/$1.kubeconfig"
  openssl req -new -newkey rsa:2048 -nodes -keyout "${WORK}/${name}.key" -subj "/CN=${name}/O=${group}" \
    -out "${WORK}/${name}.csr" 2>/dev/null
  kubectl apply -f - >/dev/null <<CSR
apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: ${name}
spec:
  request: $(base64 -w0 < "${WORK}/${name}.csr")
  signerName: kubernetes.io/kube-apiserver-client
  expirationSeconds: 86400
  usages: [client auth]
CSR
  kubectl certificate approve "${name}" >/dev/null
  local i
  for ((i = 0; i < 60; i++)); do
    kubectl get csr "${name}" -o jsonpath='{.status.certificate}' | base64 -d > "${WORK}/${name}.crt" 2>/dev/null || true
    [[ -s "${WORK}/${name}.crt" ]] && break
    sleep 1
  done
  [[ -s "${WORK}/${name}.crt" ]] || die "CSR ${name} was not signed"
  kubeconfig_with "${kc}" --embed-certs --client-certificate="${WORK}/${name}.crt" --client-key="${WORK}/${name}.key"
  echo "${kc}"
}

# add_robot NAMESPACE NAME: a service account used from outside with a TokenRequest token, as
# CI systems do. Prints the kubeconfig path.
add_robot() {
  local ns="$1" name="$2" kc="${WORK}/$1-$2.kubeconfig"
  kubectl create namespace "${ns}" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl -n "${ns}" create serviceaccount "${name}" >/dev/null
  kubeconfig_with "${kc}" --token="$(kubectl -n "${ns}" create token "${name}" --duration=2h)"
  echo "${kc}"
}

# as_super_admin: kubectl as system:masters with kubeadm's break-glass kubeconfig on the node.
as_super_admin() { docker exec "${KIND_NODE}" kubectl --kubeconfig /etc/kubernetes/super-admin.conf "$@"; }

# super_admin_kubeconfig: a kubeconfig on this host with the credential of kubeadm's
# super-admin.conf (user kubernetes-super-admin, group system:masters), as kind, k3s and
# kubeadm before 1.29 hand the administrator. Prints its path.
super_admin_kubeconfig() {
  local kc="${WORK}/super-admin.kubeconfig" node_kc="${WORK}/node-super-admin.conf"
  docker exec "${KIND_NODE}" cat /etc/kubernetes/super-admin.conf > "${node_kc}"
  kubectl --kubeconfig "${node_kc}" config view --raw -o jsonpath='{.users[0].user.client-certificate-data}' | base64 -d > "${WORK}/super-admin.crt"
  kubectl --kubeconfig "${node_kc}" config view --raw -o jsonpath='{.users[0].user.client-key-data}' | base64 -d > "${WORK}/super-admin.key"
  kubeconfig_with "${kc}" --embed-certs --client-certificate="${WORK}/super-admin.crt" --client-key="${WORK}/super-admin.key"
  echo "${kc}"
}

kubeconfig_with() {
  local kc="$1"
  shift
  kubectl config view --raw --minify > "${kc}"
  kubectl --kubeconfig "${kc}" config set-credentials recorded "$@" >/dev/null
  kubectl --kubeconfig "${kc}" config set-context --current --user=recorded >/dev/null
}

log "recording workload ${SCRIPT} on ${KIND_CLUSTER} ($((WORKERS + 1)) nodes)"
start="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
[[ "${FROM_CREATION}" == 1 ]] && start="${created}"
run_workload
end="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
sleep 2 # let the last events reach the file

mkdir -p "$(dirname "${OUT}")"
# Rotated logs are audit-<timestamp>.log: oldest first, then the live one.
shopt -s nullglob
logs=("${KAUDIT_AUDIT_LOG_DIR}"/audit-*.log) # sorted by the glob, oldest first
logs+=("${KAUDIT_AUDIT_LOG_DIR}/audit.log")
(cd "${ROOT}" && GOWORK=off go run ./hack/redactauditlog -since "${start}" -until "${end}" -o "${OUT}" "${logs[@]}")
log "wrote ${OUT} ($(du -h "${OUT}" | cut -f1)), ${start} to ${end}"
[[ "${KEEP:-}" == 1 ]] || "${KIND_DIR}/cluster.sh" down
