# kaudit image: the statically linked binary built on the host, nothing else.
# Nothing can be pulled on the offline build machines, so there is no builder
# stage: build first, then package (the Makefile's docker-build does both):
#   CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w" -o bin/docker/kaudit .
#   docker build -t kaudit.local/kaudit:dev .
# The manager runs as the non-root user below; the agent's DaemonSet overrides
# it with runAsUser 0 because it writes under /etc/kubernetes on the node.
FROM scratch
ARG BINARY=bin/docker/kaudit
COPY ${BINARY} /kaudit
USER 65532:65532
ENTRYPOINT ["/kaudit"]
