# shellcheck shell=bash
# A two-node cluster recorded from its creation on, run the way kind, k3s and kubeadm before
# 1.29 hand a cluster over: one administrator working through a system:masters credential
# (kubeadm's super-admin.conf) for everything - looking around, installing an app, onboarding a
# teammate, debugging, node maintenance, and watching it all with repeated lists as a
# terminal dashboard does. The log includes what the control plane does at start-up (the
# apiserver's RBAC reconciliation, kubeadm's bootstrap objects). Sourced by
# record-auditlog.sh, which provides the helpers. About 5 minutes.
# shellcheck disable=SC2034 # read by record-auditlog.sh
WORKERS=1
FROM_CREATION=1

run_workload() {
  local erin worker
  worker="${KIND_CLUSTER}-worker"
  # Everything below, the helpers included, acts as system:masters.
  KUBECONFIG="$(super_admin_kubeconfig)"
  export KUBECONFIG
  erin="$(add_user erin wiki-editors)"
  as_erin() { kubectl --kubeconfig "${erin}" "$@"; }

  # dashboard N: what a terminal dashboard does between keystrokes, N rounds 5 s apart.
  dashboard() {
    local i
    for ((i = 0; i < $1; i++)); do
      kubectl get pods -A -o wide >/dev/null
      kubectl get nodes >/dev/null
      kubectl get deployments,statefulsets,daemonsets -A >/dev/null
      sleep 5
    done
  }

  log "admin: looks around the new cluster"
  kubectl cluster-info >/dev/null
  kubectl version >/dev/null
  kubectl get nodes -o wide
  kubectl get namespaces
  kubectl get pods -A
  kubectl api-resources >/dev/null
  kubectl describe node "${KIND_CLUSTER}-control-plane" >/dev/null
  kubectl -n kube-system get configmaps
  kubectl -n kube-system get configmap kubeadm-config -o yaml >/dev/null
  kubectl get secrets -A >/dev/null
  kubectl get events -A --sort-by=.lastTimestamp >/dev/null
  kubectl auth can-i --list >/dev/null
  kubectl explain deployment.spec.strategy >/dev/null

  log "admin: installs the wiki"
  kubectl create namespace wiki
  kubectl -n wiki create secret generic wiki-db \
    --from-literal=username=wiki --from-literal=password=KAUDIT-CANARY-wiki-db-0001
  kubectl -n wiki apply -f - <<YAML
apiVersion: v1
kind: ConfigMap
metadata: {name: wiki-config}
data: {SITE_NAME: "team wiki", CACHE: "on"}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: etcd
        image: ${ETCD_IMAGE}
        command: [/usr/local/bin/etcd, --data-dir=/data/etcd, --listen-client-urls=http://0.0.0.0:2379, --advertise-client-urls=http://127.0.0.1:2379]
        env:
        - name: DB_PASSWORD
          valueFrom: {secretKeyRef: {name: wiki-db, key: password}}
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 2379}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: ${PAUSE_IMAGE}
        envFrom: [{configMapRef: {name: wiki-config}}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: backup}
spec:
  schedule: "* * * * *"
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: backup, image: "${ETCD_IMAGE}", command: [/usr/local/bin/etcd, --version]}]
YAML
  kubectl -n wiki rollout status deployment/web --timeout=2m
  kubectl -n wiki rollout status statefulset/db --timeout=2m

  log "admin: checks on it"
  kubectl -n wiki get all
  kubectl -n wiki get pods -o wide
  kubectl -n wiki describe deployment web >/dev/null
  kubectl -n wiki describe pod db-0 >/dev/null
  kubectl -n wiki get deployment web -o yaml >/dev/null
  kubectl -n wiki get endpointslices >/dev/null
  kubectl -n wiki get events >/dev/null
  kubectl -n wiki logs db-0 --tail=20 >/dev/null
  dashboard 6

  log "admin: onboards erin, who may edit the wiki"
  kubectl -n wiki create rolebinding wiki-editors --clusterrole=edit --group=wiki-editors
  kubectl create clusterrole node-reader --verb=get,list,watch --resource=nodes
  kubectl create clusterrolebinding wiki-editors-nodes --clusterrole=node-reader --group=wiki-editors

  log "erin: looks, then changes the configuration"
  as_erin -n wiki get pods
  as_erin get nodes >/dev/null
  as_erin -n wiki get configmap wiki-config -o yaml >/dev/null
  as_erin -n wiki patch configmap wiki-config -p '{"data":{"CACHE":"off"}}'
  as_erin -n wiki rollout restart deployment web
  as_erin -n wiki rollout status deployment/web --timeout=2m
  as_erin -n wiki get secrets >/dev/null 2>&1 || true
  as_erin -n kube-system get pods >/dev/null 2>&1 || true # forbidden

  log "admin: debugs the database"
  kubectl -n wiki exec db-0 -- /usr/local/bin/etcd --version
  kubectl -n wiki port-forward pod/db-0 23792:2379 >/dev/null 2>&1 &
  local pf=$!
  sleep 3
  curl -fsS http://127.0.0.1:23792/health || true
  kill "${pf}" || true
  kubectl -n wiki debug db-0 --image="${ETCD_IMAGE}" --target=etcd -- /usr/local/bin/etcd --version
  kubectl -n wiki get secret wiki-db -o jsonpath='{.data.password}' >/dev/null
  kubectl -n wiki get pods -w --request-timeout=15s >/dev/null 2>&1 || true

  log "admin: scales up and drains ${worker} for maintenance"
  kubectl -n wiki scale deployment web --replicas=5
  kubectl -n wiki rollout status deployment/web --timeout=2m
  kubectl cordon "${worker}"
  kubectl drain "${worker}" --ignore-daemonsets --delete-emptydir-data --timeout=3m
  dashboard 4
  kubectl uncordon "${worker}"
  kubectl label node "${worker}" disk=ssd

  log "quiet period: controllers, kubelets, the cron job and the dashboard"
  dashboard 18

  log "admin: tidies up"
  kubectl -n wiki delete cronjob backup
  kubectl -n wiki scale deployment web --replicas=2
  kubectl delete clusterrolebinding wiki-editors-nodes
  kubectl delete clusterrole node-reader
  kubectl get pods -A >/dev/null
  kubectl get --raw /readyz >/dev/null
}
