# shellcheck shell=bash
# A three-node cluster run by a platform team: a GitOps robot applying an
# analytics stack with server-side apply, an operator (kaudit itself) with
# its CRDs, admission policies, node maintenance and node churn, and two
# people. Different users, namespaces and workloads from shop.sh, so it tests
# that the baseline holds on a log it was not tuned on. Sourced by
# record-auditlog.sh, which provides the helpers. About 4 minutes.
# shellcheck disable=SC2034 # read by record-auditlog.sh
WORKERS=2

run_workload() {
  local carol dave gitops worker1 worker2
  carol="$(add_user carol platform)"
  dave="$(add_user dave data)"
  gitops="$(add_robot gitops sync)"
  as_carol() { kubectl --kubeconfig "${carol}" "$@"; }
  as_dave() { kubectl --kubeconfig "${dave}" "$@"; }
  as_gitops() { kubectl --kubeconfig "${gitops}" "$@"; }
  worker1="${KIND_CLUSTER}-worker"
  worker2="${KIND_CLUSTER}-worker2"

  log "admin: grants"
  kubectl create clusterrolebinding platform-admins --clusterrole=cluster-admin --group=platform
  kubectl create clusterrolebinding gitops-sync --clusterrole=cluster-admin --serviceaccount=gitops:sync

  log "carol: installs an operator (kaudit) and admission policies"
  "${KIND_DIR}/image.sh" >/dev/null
  "${KIND}" load docker-image kaudit.local/kaudit:dev --name "${KIND_CLUSTER}" >/dev/null
  as_carol apply --server-side -k "${ROOT}/config/default"
  as_carol -n kaudit-system rollout status deployment/kaudit-manager --timeout=3m
  as_carol apply -f - <<YAML
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: replica-limit}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments]}
  validations:
  - expression: "object.spec.replicas <= 20"
    message: at most 20 replicas
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: replica-limit}
spec:
  policyName: replica-limit
  validationActions: [Deny]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: analytics-viewer
  labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}
rules:
- apiGroups: [example.com]
  resources: [reports]
  verbs: [get, list, watch]
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: reports.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Report, plural: reports, singular: report}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
YAML
  as_carol wait --for=condition=Established crd/reports.example.com --timeout=1m
  as_carol create priorityclass analytics-high --value=1000 --description="analytics batch"

  log "gitops: syncs the analytics stack"
  sync_analytics() {
    as_gitops apply --server-side --field-manager=gitops-sync --force-conflicts -f - <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: analytics, labels: {team: data}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: pipeline, namespace: analytics}
data: {revision: "$1", schedule: "*/1 * * * *"}
---
apiVersion: v1
kind: Secret
metadata: {name: warehouse, namespace: analytics}
stringData: {dsn: "postgres://etl:KAUDIT-CANARY-warehouse-$1@warehouse:5432/dw"}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-agent, namespace: analytics}
spec:
  selector: {matchLabels: {app: node-agent}}
  template:
    metadata: {labels: {app: node-agent}, annotations: {revision: "$1"}}
    spec:
      tolerations: [{operator: Exists}]
      containers: [{name: agent, image: "${PAUSE_IMAGE}"}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ingest, namespace: analytics}
spec:
  replicas: 4
  selector: {matchLabels: {app: ingest}}
  template:
    metadata: {labels: {app: ingest}, annotations: {revision: "$1"}}
    spec:
      priorityClassName: analytics-high
      containers:
      - name: ingest
        image: ${PAUSE_IMAGE}
        env: [{name: DSN, valueFrom: {secretKeyRef: {name: warehouse, key: dsn}}}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: rollup, namespace: analytics}
spec:
  schedule: "*/1 * * * *"
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: rollup, image: "${ETCD_IMAGE}", command: [/usr/local/bin/etcd, --version]}]
---
apiVersion: example.com/v1
kind: Report
metadata: {name: daily, namespace: analytics}
spec: {revision: "$1"}
YAML
  }
  sync_analytics 1
  as_gitops -n analytics rollout status deployment/ingest --timeout=3m
  as_gitops -n analytics rollout status daemonset/node-agent --timeout=3m

  log "dave: a warehouse, and access to it"
  as_carol -n analytics create rolebinding data-team --clusterrole=admin --group=data
  as_dave -n analytics apply -f - <<YAML
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: warehouse}
spec:
  serviceName: warehouse
  replicas: 2
  selector: {matchLabels: {app: warehouse}}
  template:
    metadata: {labels: {app: warehouse}}
    spec:
      containers:
      - name: etcd
        image: ${ETCD_IMAGE}
        command: [/usr/local/bin/etcd, --data-dir=/data/etcd, --listen-client-urls=http://0.0.0.0:2379, --advertise-client-urls=http://127.0.0.1:2379]
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, emptyDir: {}}]
YAML
  as_dave -n analytics rollout status statefulset/warehouse --timeout=3m
  as_dave -n analytics exec warehouse-0 -- /usr/local/bin/etcd --version
  as_dave -n analytics port-forward pod/warehouse-1 23791:2379 >/dev/null 2>&1 &
  local pf=$!
  sleep 3
  curl -fsS http://127.0.0.1:23791/health || true
  kill "${pf}" || true
  as_dave -n analytics get secret warehouse -o jsonpath='{.data.dsn}' >/dev/null
  as_dave -n analytics get reports || true # aggregated into admin through view and edit
  as_dave get nodes >/dev/null 2>&1 || true # forbidden
  # The scale subresource escapes replica-limit (it matches deployments only); the next
  # GitOps sync puts the replicas back.
  as_dave -n analytics scale deployment ingest --replicas=30

  log "gitops: two more syncs"
  sync_analytics 2
  as_gitops -n analytics rollout status deployment/ingest --timeout=3m
  sleep 30
  sync_analytics 3

  log "carol: maintenance on ${worker1}"
  as_carol label node "${worker1}" maintenance=planned
  as_carol cordon "${worker1}"
  as_carol drain "${worker1}" --ignore-daemonsets --delete-emptydir-data --timeout=3m
  sleep 20
  as_carol uncordon "${worker1}"
  as_carol label node "${worker1}" maintenance-

  log "node churn: ${worker2} leaves and registers again"
  as_carol delete node "${worker2}"
  docker exec "${worker2}" systemctl restart kubelet
  until kubectl get node "${worker2}" >/dev/null 2>&1; do sleep 2; done
  kubectl wait --for=condition=Ready "node/${worker2}" --timeout=3m

  log "on-call: break-glass as system:masters"
  as_super_admin auth can-i --list >/dev/null
  as_super_admin -n kube-system get configmaps >/dev/null
  as_super_admin -n analytics rollout restart deployment ingest

  log "quiet period"
  sleep 120

  log "carol tidies up"
  as_carol delete validatingadmissionpolicybinding replica-limit
  as_carol delete validatingadmissionpolicy replica-limit
  as_carol delete namespace analytics --wait=true --timeout=3m
  as_carol delete crd reports.example.com
  as_carol delete clusterrole analytics-viewer
}
