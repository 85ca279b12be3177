# shellcheck shell=bash
# A one-node cluster where a small team ships an app: two people with client
# certificates, a CI robot with a service-account token, the kubeadm admin.
# Sourced by record-auditlog.sh, which provides kubectl, add_user, add_robot,
# as_super_admin, PAUSE_IMAGE and ETCD_IMAGE. About 4 minutes.
# shellcheck disable=SC2034 # read by record-auditlog.sh
WORKERS=0

run_workload() {
  local alice bob ci
  alice="$(add_user alice dev-team)"
  bob="$(add_user bob sre)"
  ci="$(add_robot ci deployer)"
  as_alice() { kubectl --kubeconfig "${alice}" "$@"; }
  as_bob() { kubectl --kubeconfig "${bob}" "$@"; }
  as_ci() { kubectl --kubeconfig "${ci}" "$@"; }

  log "admin: namespace and RBAC"
  kubectl create namespace shop
  kubectl -n shop create role developer \
    --verb=get,list,watch,create,update,patch,delete \
    --resource=pods,pods/log,deployments,deployments/scale,replicasets,services,configmaps,secrets,statefulsets
  kubectl -n shop create role debugger --verb=create,get --resource=pods/exec,pods/portforward
  kubectl -n shop create rolebinding developers --role=developer --group=dev-team
  kubectl -n shop create rolebinding debuggers --role=debugger --group=dev-team
  kubectl create clusterrolebinding sre-admins --clusterrole=cluster-admin --group=sre
  kubectl -n shop create rolebinding ci-edit --clusterrole=edit --serviceaccount=ci:deployer

  log "alice: configuration, secrets and the web deployment"
  as_alice -n shop create secret generic db-creds \
    --from-literal=username=shop --from-literal=password=KAUDIT-CANARY-db-password-0001
  as_alice -n shop create configmap app-config --from-literal=LOG_LEVEL=info --from-literal=FEATURE_X=off
  as_alice -n shop create deployment web --image="${PAUSE_IMAGE}" --replicas=3
  as_alice -n shop expose deployment web --port=80
  as_alice -n shop rollout status deployment/web --timeout=2m
  as_alice -n shop get pods -o wide
  as_alice -n shop get secret db-creds -o yaml >/dev/null
  as_alice -n shop get secrets
  as_alice -n shop scale deployment web --replicas=5
  as_alice -n shop set env deployment/web LOG_LEVEL=debug
  as_alice -n shop rollout status deployment/web --timeout=2m

  log "admin: a database"
  kubectl -n shop apply -f - <<YAML
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 2379}]
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
          valueFrom: {secretKeyRef: {name: db-creds, key: password}}
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, emptyDir: {}}]
YAML
  kubectl -n shop rollout status statefulset/db --timeout=2m

  log "alice: exec and port-forward into the database"
  as_alice -n shop exec db-0 -- /usr/local/bin/etcd --version
  as_alice -n shop port-forward pod/db-0 23790:2379 >/dev/null 2>&1 &
  local pf=$!
  sleep 3
  curl -fsS http://127.0.0.1:23790/version || true
  kill "${pf}" || true

  log "bob: nodes, logs and a debug container"
  as_bob get nodes -o wide
  as_bob describe node >/dev/null
  as_bob -n shop logs db-0 --tail=5 >/dev/null
  as_bob -n shop debug db-0 --image="${ETCD_IMAGE}" --target=etcd -- /usr/local/bin/etcd --version
  as_bob -n kube-system get pods

  log "ci: applies the api deployment, a migration job and a cron job"
  as_ci -n shop apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, labels: {app: api}}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}, annotations: {build: "101"}}
    spec:
      containers:
      - name: api
        image: ${PAUSE_IMAGE}
        envFrom: [{configMapRef: {name: app-config}}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate-101}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: "${ETCD_IMAGE}", command: [/usr/local/bin/etcd, --version]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report}
spec:
  schedule: "* * * * *"
  successfulJobsHistoryLimit: 2
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: report, image: "${ETCD_IMAGE}", command: [/usr/local/bin/etcd, --version]}]
YAML
  as_ci -n shop wait --for=condition=complete job/migrate-101 --timeout=2m
  as_ci -n shop rollout status deployment/api --timeout=2m
  as_ci -n shop patch deployment api -p '{"spec":{"template":{"metadata":{"annotations":{"build":"102"}}}}}'
  as_ci -n shop rollout status deployment/api --timeout=2m

  log "admin: break-glass as system:masters (kubeadm's super-admin.conf on the node)"
  as_super_admin get pods -A >/dev/null
  as_super_admin -n shop get secret db-creds -o yaml >/dev/null
  as_super_admin -n shop scale deployment web --replicas=2
  as_super_admin get --raw /readyz >/dev/null

  log "quiet period: controllers, kubelet and the cron job"
  sleep 120

  log "alice and the admin tidy up"
  as_alice -n shop create secret generic db-creds-v2 \
    --from-literal=password=KAUDIT-CANARY-db-password-0002 --dry-run=client -o yaml | as_alice -n shop apply -f -
  as_alice -n shop delete secret db-creds
  as_alice -n shop patch configmap app-config -p '{"data":{"FEATURE_X":"on"}}'
  as_alice -n shop delete deployment web
  as_alice -n shop get secrets -w --request-timeout=5s >/dev/null 2>&1 || true
  as_alice -n kube-system get secrets >/dev/null 2>&1 || true # forbidden
  kubectl -n shop patch role developer --type=json -p '[{"op":"add","path":"/rules/0/verbs/-","value":"deletecollection"}]'
  kubectl -n shop delete rolebinding debuggers
  kubectl delete clusterrolebinding sre-admins
  kubectl get --raw /metrics >/dev/null
  sleep 60
  kubectl delete namespace shop --wait=true --timeout=3m
}
