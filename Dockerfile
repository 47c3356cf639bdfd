# syntax=docker/dockerfile:1
#
# khadga's container images. Two targets:
#
#   docker build -t khadga .                                   # server (the default, last stage)
#   docker build --target recorder -t khadga-recorder .        # recorder (cgo + libvpx, libopus)
#
# The server is a static binary (CGO_ENABLED=0) on distroless/static, running
# as the distroless "nonroot" user (65532). Its data lives in the volume at
# /data; see docs/deploy.md. deploy/deploy_test.go checks this file's
# structure (there is no Docker engine on the development machines).

ARG GO_VERSION=1.26

# ---- build-base: module download, shared by both builds ------------------
FROM golang:${GO_VERSION}-bookworm AS build-base
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .

# ---- server-build: static server and healthcheck binaries ----------------
FROM build-base AS server-build
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/khadga ./cmd/khadga && \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/khadga-healthcheck ./deploy/healthcheck && \
    mkdir -p /out/data

# ---- recorder-build: the recorder links libvpx, libopus and (statically) libyuv
# Its own Go stage, so the apt layer comes before the sources and survives
# source changes.
FROM golang:${GO_VERSION}-bookworm AS recorder-build
RUN apt-get update && \
    apt-get install -y --no-install-recommends libvpx-dev libyuv-dev libopus-dev pkg-config && \
    rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/khadga-recorder ./cmd/khadga-recorder && \
    mkdir -p /out/recordings

# ---- recorder: Debian slim with the libvpx and libopus runtimes ----------
FROM debian:bookworm-slim AS recorder
RUN apt-get update && \
    apt-get install -y --no-install-recommends libvpx7 libopus0 ca-certificates && \
    rm -rf /var/lib/apt/lists/* && \
    useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin khadga
COPY --from=recorder-build /out/khadga-recorder /usr/local/bin/khadga-recorder
COPY --from=recorder-build --chown=10001:10001 /out/recordings /recordings
USER 10001:10001
WORKDIR /recordings
VOLUME ["/recordings"]
ENTRYPOINT ["/usr/local/bin/khadga-recorder"]

# ---- server: the default target ------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot AS server
COPY --from=server-build /out/khadga /usr/local/bin/khadga
COPY --from=server-build /out/khadga-healthcheck /usr/local/bin/khadga-healthcheck
# An empty /data owned by the runtime user: Docker copies it, ownership
# included, into a new named volume, so the server can write there.
COPY --from=server-build --chown=65532:65532 /out/data /data
# Container defaults; every KHADGA_* variable is a `khadga serve` flag.
# The relay range is small because Docker publishes ports one by one; the
# published range must match it exactly (docker-compose.yml does).
ENV KHADGA_HTTP=0.0.0.0:8080 \
    KHADGA_DATA=/data \
    KHADGA_TURN_PORTS=49160-49200
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
# HTTP(S) and WebSocket; TURN on UDP and TCP; TURNS when a certificate is set.
EXPOSE 8080/tcp 3478/udp 3478/tcp 5349/tcp
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/khadga-healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/khadga"]
CMD ["serve"]
