#!/usr/bin/env bash
# measure-lb.sh stop|restart [NODE]
# Availability through kind's load balancer while one control-plane apiserver
# ($NODE, default the second control plane) goes away, on a cluster of
# `KIND_CONTROL_PLANES=3 cluster.sh up`:
#   stop:    its static pod manifest is moved out for $HOLD seconds (default
#            20), then back: how long the load balancer still sends new
#            connections to an apiserver that is gone.
#   restart: a bare restart (an annotation bump in the manifest, as
#            measure-restart.sh does), until it answers /readyz again.
# Meanwhile lbprobe sends GET /readyz at $RATE/s (default 20) through the load
# balancer twice, with a new connection per request and with one kept-alive
# connection, and directly to NODE, authenticated with the kubeconfig's
# client certificate (anonymous HTTP/2 connections are closed by the
# apiserver after every request). Prints each probe's totals and failures,
# and the load balancer's health events for NODE, in ms from the action.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ACTION="${1:-}"
[[ "${ACTION}" == stop || "${ACTION}" == restart ]] || die "usage: measure-lb.sh stop|restart [NODE]"
eval "$("${KIND_DIR}/cluster.sh" env 2>/dev/null)"
[[ -n "${KIND_LOAD_BALANCER}" ]] || die "cluster ${KIND_CLUSTER} has no load balancer (one control plane)"
read -ra CONTROL_PLANE_NODES <<< "${KIND_CONTROL_PLANE_NODES}"
NODE="${2:-${CONTROL_PLANE_NODES[1]}}"
HOLD="${HOLD:-20}"
RATE="${RATE:-20}"
K8S_BIN="$("${KIND_DIR}/k8s-binaries.sh" 2>/dev/null)"
TOOLS="$("${KIND_DIR}/lb-tools.sh")"
export PATH="${K8S_BIN}:${PATH}"
LB="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
NODE_IP="$(node_ip "${NODE}")"
DIRECT="https://${NODE_IP}:6443"
MANIFEST=/etc/kubernetes/manifests/kube-apiserver.yaml

now_ms() { date +%s%3N; }
node_ready() { kubectl --server "${DIRECT}" get --raw /readyz --request-timeout=2s >/dev/null 2>&1; }
wait_ready() {
  local deadline=$(($(now_ms) + 240000))
  until node_ready; do
    (( $(now_ms) < deadline )) || die "${NODE} not ready after 240s"
    sleep 0.2
  done
}

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "${p}" 2>/dev/null || true; done
  docker exec "${NODE}" bash -c "[ -f /etc/kubernetes/kube-apiserver.yaml.away ] && mv /etc/kubernetes/kube-apiserver.yaml.away ${MANIFEST}" 2>/dev/null || true
  rm -rf "${work}"
}
trap cleanup EXIT

wait_ready
for f in certificate-authority client-certificate client-key; do
  kubectl config view --raw --minify -o "jsonpath={.users[0].user.${f}-data}{.clusters[0].cluster.${f}-data}" |
    base64 -d > "${work}/${f}.pem"
done
probe() {
  "${TOOLS}/lbprobe" -rate "${RATE}" -url "$1/readyz" -mode "$2" -ca "${work}/certificate-authority.pem" \
    -cert "${work}/client-certificate.pem" -key "${work}/client-key.pem" > "${work}/$3" &
  pids+=($!)
}
probe "${LB}" new lb-new
probe "${LB}" keepalive lb-keepalive
probe "${DIRECT}" new direct
sleep 3
t0="$(now_ms)"
since="$(date -u +%FT%T.%NZ)"
case "${ACTION}" in
  stop)
    docker exec "${NODE}" mv "${MANIFEST}" /etc/kubernetes/kube-apiserver.yaml.away
    sleep "${HOLD}"
    docker exec "${NODE}" mv /etc/kubernetes/kube-apiserver.yaml.away "${MANIFEST}"
    ;;
  restart)
    bump_apiserver_annotation "${NODE}" kaudit.local/measure-bump "$(date +%s%N)"
    # until the kubelet has stopped the old apiserver (at most 60 s)...
    for ((i = 0; i < 300; i++)); do node_ready || break; sleep 0.2; done
    ;;
esac
wait_ready
ready_ms=$(($(now_ms) - t0))
sleep 6 # the load balancer adds it back within one check interval
for p in "${pids[@]}"; do kill -INT "${p}"; done
wait "${pids[@]}" || true
pids=()

echo "${ACTION} ${NODE} (${NODE_IP}); ready again at +${ready_ms} ms; times in ms from the action"
for f in direct lb-new lb-keepalive; do
  awk -v t0="${t0}" -v name="${f}" '
    $3 == "FAIL" { n++; t = $1 - t0; if (n == 1) first = t; last = t; $1 = ""; $2 = ""; $3 = ""; err[substr($0, 4, 70)]++ }
    /^mode=/ { summary = $0 }
    END {
      printf "  %-13s %s", name, summary
      if (n) printf " (failures from +%d to +%d)", first, last
      printf "\n"
      for (e in err) printf "      %4d x %s\n", err[e], e
    }' "${work}/${f}"
done
echo "  load balancer health events for ${NODE_IP} (failed checks counted, first shown):"
docker logs --since "${since}" "${KIND_LOAD_BALANCER}" 2>/dev/null | grep -F "\"host\":\"${NODE_IP}:" |
  grep -E 'eject_unhealthy|add_healthy|health_check_failure' | while read -r line; do
    ts="$(sed -E 's/.*"timestamp":"([^"]*)".*/\1/' <<< "${line}")"
    ev="$(sed -E 's/.*"event":"([^"]*)".*/\1/' <<< "${line}")"
    ft="$(sed -nE 's/.*"failure_type":"([^"]*)".*/\1/p' <<< "${line}")"
    echo "$(( $(date -d "${ts}" +%s%3N) - t0 )) ${ev} ${ft}"
  done | awk '
    $2 == "health_check_failure_event" { if (!failed++) print "    +" $1 " first failed check (" $3 ")"; next }
    { print "    +" $1 " " $2 " " $3 }
    END { print "    " failed + 0 " failed checks" }'
