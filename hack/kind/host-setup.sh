#!/usr/bin/env bash
# Prepares this host to run kind nodes, applying each fix only when a check
# shows it is needed, so on a normal CI runner (Docker already running, full
# capabilities, cgroup v2) it does nothing:
#   1. cgroup v1 hierarchies that /proc/cgroups enables but nothing mounted
#      (kubelet in the node fails with "cgroup [kubelet] has some missing paths").
#   2. Docker: Debian's docker.io installed if dockerd is missing.
#   3. A runc wrapper as dockerd's default runtime when the capability bounding
#      set lacks capabilities that privileged containers request.
#   4. dockerd started (with --oom-score-adjust=0 where a negative
#      oom_score_adj is forbidden) when no daemon answers.
# Idempotent; safe to run before every e2e run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DOCKERD_LOG="${DOCKERD_LOG:-/var/log/kaudit-dockerd.log}"
RUNTIME_NAME="kaudit-runc"

as_root() { if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi; }

# 1. cgroup v1 hierarchies.
fix_cgroups() {
  [[ -f /sys/fs/cgroup/cgroup.controllers ]] && return 0 # cgroup v2: nothing to do
  [[ -d /sys/fs/cgroup/cpu || -d /sys/fs/cgroup/memory ]] || return 0
  local want
  for want in hugetlb perf_event net_cls,net_prio; do
    local first="${want%%,*}" enabled=1 s
    for s in ${want//,/ }; do
      awk -v s="$s" '$1 == s && $4 == 1 {found=1} END {exit !found}' /proc/cgroups || enabled=0
    done
    (( enabled )) || continue
    # mounted already (under any name)?
    if awk -v s="${first}" '$3 == "cgroup" && ("," $4 ",") ~ ("," s ",") {found=1} END {exit !found}' /proc/mounts; then
      continue
    fi
    log "mounting cgroup v1 hierarchy ${want} at /sys/fs/cgroup/${want}"
    as_root mkdir -p "/sys/fs/cgroup/${want}"
    as_root mount -t cgroup -o "${want}" cgroup "/sys/fs/cgroup/${want}"
    if [[ "${want}" == *,* ]]; then
      for s in ${want//,/ }; do [[ -e "/sys/fs/cgroup/${s}" ]] || as_root ln -s "${want}" "/sys/fs/cgroup/${s}"; done
    fi
  done
}

# 2. Docker packages.
ensure_docker_installed() {
  command -v dockerd >/dev/null 2>&1 && return 0
  log "dockerd missing: installing Debian's docker.io"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
}

# Capabilities missing from the bounding set, as OCI names (CAP_X,CAP_Y).
missing_caps() {
  local bnd last i names=() out=()
  bnd="$((16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status)))"
  last="$(cat /proc/sys/kernel/cap_last_cap)"
  # capability numbers 0..40 (linux/capability.h)
  names=(CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
    LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
    SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE
    SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP
    MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF
    CHECKPOINT_RESTORE)
  for ((i = 0; i <= last && i < ${#names[@]}; i++)); do
    (( (bnd >> i) & 1 )) || out+=("CAP_${names[$i]}")
  done
  (IFS=,; echo "${out[*]}")
}

# 3. The runc wrapper, built once per recipe into the cache.
build_wrapper() {
  local src="${KIND_DIR}/src"
  local dir hash
  hash="$(recipe_hash "${src}/runc-wrapper" "${src}/go.mod")"
  dir="${CACHE_ROOT}/host/runc-wrapper-${hash}"
  if [[ ! -x "${dir}/runc-wrapper" ]]; then
    local p
    p="$(start_partial "${dir}")"
    (cd "${src}" && GOWORK=off CGO_ENABLED=0 GOFLAGS= go build -trimpath -o "${p}/runc-wrapper" ./runc-wrapper)
    publish "${dir}"
  fi
  echo "${dir}/runc-wrapper"
}

# 4. dockerd.
docker_up() { timeout 10 docker info >/dev/null 2>&1; }

start_dockerd() {
  local args=() caps wrapper runc
  if ! (echo -500 > /proc/self/oom_score_adj) 2>/dev/null; then
    args+=(--oom-score-adjust=0)
  fi
  caps="$(missing_caps)"
  if [[ -n "${caps}" ]]; then
    wrapper="$(build_wrapper)"
    runc="$(command -v runc || echo /usr/sbin/runc)"
    # dockerd passes no environment of its own choosing to runtimes: a tiny
    # launcher script carries the settings.
    local launcher="${CACHE_ROOT}/host/${RUNTIME_NAME}"
    mkdir -p "$(dirname "${launcher}")"
    printf '#!/bin/sh\nKAUDIT_REAL_RUNC=%q KAUDIT_DROP_CAPS=%q exec %q "$@"\n' "${runc}" "${caps}" "${wrapper}" > "${launcher}.tmp"
    chmod +x "${launcher}.tmp"; mv "${launcher}.tmp" "${launcher}"
    log "capabilities outside the bounding set: ${caps}; default runtime ${RUNTIME_NAME} strips them"
    args+=(--add-runtime "${RUNTIME_NAME}=${launcher}" --default-runtime "${RUNTIME_NAME}")
  fi
  log "starting dockerd ${args[*]} (log: ${DOCKERD_LOG})"
  as_root bash -c "nohup setsid dockerd ${args[*]} >>'${DOCKERD_LOG}' 2>&1 </dev/null &"
  local i
  for ((i = 0; i < 60; i++)); do
    docker_up && { log "dockerd is up"; return 0; }
    sleep 1
  done
  tail -n 30 "${DOCKERD_LOG}" >&2 || true
  die "dockerd did not come up in 60s"
}

check_runtime() {
  local caps def
  caps="$(missing_caps)"
  [[ -n "${caps}" ]] || return 0
  def="$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null || true)"
  if [[ "${def}" != "${RUNTIME_NAME}" ]]; then
    log "WARNING: ${caps} missing from the bounding set but the running dockerd's default runtime is '${def}':"
    log "         privileged containers (kind nodes) will fail; stop that dockerd and rerun this script"
  fi
}

fix_cgroups
ensure_docker_installed
if docker_up; then
  check_runtime
else
  start_dockerd
fi
