#!/usr/bin/env bash
# Builds kaudit's offline kind node image and prints its name:
#   kaudit.local/kind-node:v<K8S_VERSION>-<recipe hash>
# Where kind's published node images can be pulled, set KIND_NODE_IMAGE
# (e.g. kindest/node:v1.37.2) and this script only prints it.
#
# Recipe (all inputs cached under $KAUDIT_CACHE, keyed by version and hash):
#   1. Debian bookworm rootfs from debootstrap with systemd, containerd, runc,
#      CNI plugins, iptables, ... (rootfs.sh), imported into Docker;
#   2. kubelet/kubeadm/kubectl and the control-plane binaries built from the Go
#      module proxy (k8s-binaries.sh), crictl, and a small static pause (src/pause);
#   3. FROM-scratch images of pause, etcd, kube-apiserver,
#      kube-controller-manager, kube-scheduler, and kube-proxy on a small
#      iptables rootfs, tagged with the names kubeadm v<K8S_VERSION> expects;
#   4. docker build of the node image (files in node/files, kind's contract:
#      entrypoint, kubelet unit + kubeadm drop-in, containerd config, CNI
#      config, /kind/version), then the images of step 3 imported into the
#      node's containerd in a build container, and docker commit.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -n "${KIND_NODE_IMAGE:-}" ]]; then echo "${KIND_NODE_IMAGE}"; exit 0; fi

NODE_PACKAGES="systemd,systemd-sysv,dbus,containerd,runc,containernetworking-plugins,iptables,nftables,conntrack,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,ca-certificates,curl,jq,procps,socat,ebtables,ipset,less"
PROXY_PACKAGES="iptables,nftables,conntrack,kmod"

BIN="$("${KIND_DIR}/k8s-binaries.sh")"
NODE_ROOTFS="$("${KIND_DIR}/rootfs.sh" node "${NODE_PACKAGES}")"
PROXY_ROOTFS="$("${KIND_DIR}/rootfs.sh" proxy "${PROXY_PACKAGES}")"

# pause, built once per recipe.
PAUSE_DIR="${CACHE_ROOT}/pause/$(recipe_hash "${KIND_DIR}/src/pause" "${KIND_DIR}/src/go.mod")"
if [[ ! -x "${PAUSE_DIR}/pause" ]]; then
  p="$(start_partial "${PAUSE_DIR}")"
  (cd "${KIND_DIR}/src" && GOWORK=off GOFLAGS= CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "${p}/pause" ./pause)
  publish "${PAUSE_DIR}"
fi

# crictl: kind's `export logs` and people debugging a node use it.
CRICTL_VERSION="${CRICTL_VERSION:-1.36.0}"
CRICTL_DIR="${CACHE_ROOT}/crictl/v${CRICTL_VERSION}"
if [[ ! -x "${CRICTL_DIR}/crictl" ]]; then
  p="$(start_partial "${CRICTL_DIR}")"
  log "building crictl v${CRICTL_VERSION}"
  GOBIN="${p}" GOWORK=off GOFLAGS= CGO_ENABLED=0 "${NICE[@]}" \
    go install -trimpath -ldflags "-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@v${CRICTL_VERSION}"
  publish "${CRICTL_DIR}"
fi

HASH="$(recipe_hash "${BASH_SOURCE[0]}" "${KIND_DIR}/node" -- "${NODE_ROOTFS}" "${PROXY_ROOTFS}" "${BIN}" "${PAUSE_DIR}" "${CRICTL_DIR}")"
IMAGE="kaudit.local/kind-node:v${K8S_VERSION}-${HASH}"
SAVED="${CACHE_ROOT}/node-image/v${K8S_VERSION}-${HASH}/image.tar"

if docker image inspect "${IMAGE}" >/dev/null 2>&1; then
  log "cached image ${IMAGE}"
  echo "${IMAGE}"; exit 0
fi
if [[ -f "${SAVED}" ]]; then
  log "loading ${IMAGE} from ${SAVED}"
  docker load -i "${SAVED}" >/dev/null
  echo "${IMAGE}"; exit 0
fi

work="$(mktemp -d)"
build_container=""
# quiet CMD...: run CMD, show its output only if it fails.
quiet() { "$@" > "${work}/quiet.log" 2>&1 || { cat "${work}/quiet.log" >&2; return 1; }; }
cleanup() {
  [[ -n "${build_container}" ]] && docker rm -f -v "${build_container}" >/dev/null 2>&1 || true
  # Untag the intermediate image (its layers live on in the node image).
  docker rmi "${IMAGE}-stage" >/dev/null 2>&1 || true
  rm -rf "${work}"
}
trap cleanup EXIT

build() {
  # Image names kubeadm will use, e.g. registry.k8s.io/etcd:3.7.0-0.
  local images=() name ref
  mapfile -t images < <("${BIN}/kubeadm" config images list --kubernetes-version "v${K8S_VERSION}")
  ref_for() { printf '%s\n' "${images[@]}" | grep -E "/$1:" | head -n1; }

  # 3. control-plane images.
  local cp_images=()
  for name in pause etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
    ref="$(ref_for "${name}")"
    [[ -n "${ref}" ]] || die "kubeadm lists no image for ${name}"
    local ctx="${work}/img-${name}" src="${BIN}/${name}" base="scratch"
    [[ "${name}" == pause ]] && src="${PAUSE_DIR}/pause"
    [[ "${name}" == kube-proxy ]] && base="${PROXY_ROOTFS}"
    mkdir -p "${ctx}"
    cp "${src}" "${ctx}/${name}"
    cat > "${ctx}/Dockerfile" <<DOCKERFILE
FROM ${base}
COPY ${name} /usr/local/bin/${name}
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["/usr/local/bin/${name}"]
DOCKERFILE
    [[ "${name}" == pause ]] && sed -i 's#^ENTRYPOINT.*#ENTRYPOINT ["/usr/local/bin/pause"]\nUSER 65535:65535#' "${ctx}/Dockerfile"
    quiet docker build -q -t "${ref}" "${ctx}"
    cp_images+=("${ref}")
    log "built ${ref}"
  done
  local pause_ref
  pause_ref="$(ref_for pause)"

  # 4a. the node image proper.
  local ctx="${work}/node"
  mkdir -p "${ctx}/bin"
  cp -a "${KIND_DIR}/node/files" "${ctx}/files"
  cp "${BIN}/kubelet" "${BIN}/kubeadm" "${BIN}/kubectl" "${CRICTL_DIR}/crictl" "${ctx}/bin/"
  sed -i "s#@PAUSE_IMAGE@#${pause_ref}#" "${ctx}/files/etc/containerd/config.toml"
  cat > "${ctx}/Dockerfile" <<DOCKERFILE
FROM ${NODE_ROOTFS}
COPY files/ /
COPY bin/ /usr/bin/
RUN set -eu; \\
    chmod 755 /usr/local/bin/entrypoint /usr/bin/kubelet /usr/bin/kubeadm /usr/bin/kubectl /usr/bin/crictl; \\
    echo "v${K8S_VERSION}" > /kind/version; \\
    mkdir -p /etc/kubernetes/manifests /opt/cni /var/lib/kubelet; \\
    ln -sfn /usr/lib/cni /opt/cni/bin; \\
    ctr oci spec | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json; \\
    : "systemd in a container: only the units a node needs"; \\
    find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete; \\
    rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \\
          /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \\
          /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*; \\
    echo "ReadKMsg=no" >> /etc/systemd/journald.conf; \\
    systemctl enable containerd.service kubelet.service; \\
    systemctl mask systemd-binfmt.service getty.target console-getty.service; \\
    : "no negative oom_score_adj without CAP_SYS_RESOURCE"; \\
    for u in \$(grep -l '^OOMScoreAdjust=-' /lib/systemd/system/*.service 2>/dev/null); do \\
      d=/etc/systemd/system/\$(basename "\$u").d; mkdir -p "\$d"; \\
      printf '[Service]\nOOMScoreAdjust=0\n' > "\$d/10-kaudit-oom.conf"; \\
    done; \\
    echo 'runtime-endpoint: unix:///run/containerd/containerd.sock' > /etc/crictl.yaml
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
DOCKERFILE
  quiet docker build -q -t "${IMAGE}-stage" "${ctx}"
  log "built ${IMAGE}-stage"

  # 4b. import the control-plane images into the node's containerd.
  build_container="kaudit-node-build-$$"
  docker run -d --name "${build_container}" --entrypoint=sleep --security-opt seccomp=unconfined \
    "${IMAGE}-stage" infinity >/dev/null
  docker exec "${build_container}" bash -c 'nohup containerd >/var/log/containerd-build.log 2>&1 &'
  docker exec "${build_container}" bash -c \
    'for i in $(seq 1 30); do [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1 && exit 0; sleep 1; done; cat /var/log/containerd-build.log; exit 1'
  docker save "${cp_images[@]}" | docker exec -i "${build_container}" \
    ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - >/dev/null
  docker exec "${build_container}" ctr --namespace=k8s.io images list -q | grep -v '^sha256:' >&2
  docker exec "${build_container}" bash -c \
    'pkill -x containerd; for i in $(seq 1 40); do ps -C containerd -o stat= | grep -qv Z || exit 0; sleep 0.5; done; exit 1'
  docker exec "${build_container}" rm -rf /var/log/containerd-build.log /tmp/* /run/containerd
  docker commit \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
    --change 'CMD []' \
    "${build_container}" "${IMAGE}" >/dev/null
  log "built ${IMAGE}"

  # Keep a copy in the cache so a fresh Docker data directory only loads it.
  mkdir -p "$(dirname "${SAVED}")"
  docker save -o "${SAVED}.partial" "${IMAGE}"
  mv "${SAVED}.partial" "${SAVED}"
}

timed "node image build" build
echo "${IMAGE}"
