# syntax=docker/dockerfile:1
# aioops-mcp-iforest service image. Build from the repository root:
#   docker build -t aioops-mcp-iforest:0.1.0 .
# BuildKit (the default builder since Docker 23) keeps the cargo registry and target directory in
# cache mounts, so a rebuild after a source change recompiles only this crate.

ARG RUST_VERSION=1.95.0
ARG DEBIAN_VERSION=12.12

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin aioops-mcp-iforest \
    && install -D -m 0755 target/release/aioops-mcp-iforest /out/aioops-mcp-iforest

FROM debian:${DEBIAN_VERSION}-slim AS runtime
LABEL org.opencontainers.image.title="aioops-mcp-iforest" \
      org.opencontainers.image.description="Real-time log anomaly detection: per-service isolation forests, threshold rules and rate alerts over HTTP." \
      org.opencontainers.image.licenses="MIT"
# curl serves the HEALTHCHECK only; ca-certificates lets operators add their own trust roots.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 aioops \
    && useradd --system --uid 10001 --gid aioops --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin aioops \
    && install -d -o 10001 -g 10001 -m 0750 /data
COPY --from=build /out/aioops-mcp-iforest /usr/local/bin/aioops-mcp-iforest

ENV API_HOST=0.0.0.0 \
    API_PORT=8000 \
    DATA_DIR=/data \
    LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8000
# A numeric user, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /data
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS --max-time 4 \"http://127.0.0.1:${API_PORT:-8000}/health\" >/dev/null || exit 1"]
ENTRYPOINT ["/usr/local/bin/aioops-mcp-iforest"]
CMD ["serve"]
