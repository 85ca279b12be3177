#!/usr/bin/env bash
# rootfs.sh NAME PACKAGE[,PACKAGE...]
# Builds a Debian root filesystem with debootstrap (minbase plus PACKAGES),
# imports it into Docker as kaudit.local/kind-rootfs-NAME:<suite>-<hash> and
# prints that image name. The tarball is cached in $KAUDIT_CACHE/rootfs/ so a
# fresh Docker data directory only needs `docker import`, and the downloaded
# .debs in $KAUDIT_CACHE/debootstrap-debs/.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME="${1:?usage: rootfs.sh NAME PACKAGES}"
PACKAGES="${2:?usage: rootfs.sh NAME PACKAGES}"
HASH="$(recipe_hash "${BASH_SOURCE[0]}" -- "${DEBIAN_SUITE}" "${DEBIAN_MIRROR}" "${PACKAGES}")"
IMAGE="kaudit.local/kind-rootfs-${NAME}:${DEBIAN_SUITE}-${HASH}"
DIR="${CACHE_ROOT}/rootfs/${NAME}-${DEBIAN_SUITE}-${HASH}"

if docker image inspect "${IMAGE}" >/dev/null 2>&1; then
  log "cached image ${IMAGE}"
  echo "${IMAGE}"; exit 0
fi

if [[ ! -f "${DIR}/rootfs.tar" ]]; then
  command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  p="$(start_partial "${DIR}")"
  target="${p}/root"
  debs="${CACHE_ROOT}/debootstrap-debs"
  mkdir -p "${debs}"
  log "debootstrap ${DEBIAN_SUITE} (${NAME}: ${PACKAGES}) from ${DEBIAN_MIRROR}"
  cleanup() { for m in proc sys dev/pts dev; do umount -l "${target}/${m}" 2>/dev/null || true; done; }
  trap cleanup EXIT
  run_debootstrap() {
    "${NICE[@]}" debootstrap --variant=minbase --cache-dir="${debs}" \
      --include="${PACKAGES}" "${DEBIAN_SUITE}" "${target}" "${DEBIAN_MIRROR}" > "${p}/debootstrap.log" 2>&1 \
      || { tail -n 40 "${p}/debootstrap.log" >&2; die "debootstrap failed (log: ${p}/debootstrap.log)"; }
  }
  timed "debootstrap ${NAME}" run_debootstrap
  cleanup
  # Keep the image small and reproducible-ish: no package caches or lists.
  rm -rf "${target}"/var/cache/apt/archives/*.deb "${target}"/var/lib/apt/lists/* "${target}"/var/log/*.log
  # No daemons may start inside a chroot/build.
  tar -C "${target}" --numeric-owner -cf "${p}/rootfs.tar" .
  rm -rf "${target}"
  publish "${DIR}"
fi

log "importing ${DIR}/rootfs.tar as ${IMAGE}"
docker import "${DIR}/rootfs.tar" "${IMAGE}" >/dev/null
echo "${IMAGE}"
