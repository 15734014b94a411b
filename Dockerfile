# The gantry program: every target (log, settlement, approvals, webhooks, gateway, all, operator) in one image.
# Build with scripts/image/build.sh, which first bundles the program into build/image/app
# (scripts/image/bundle.ts); this file only copies that bundle, so no npm runs in the image.
# BASE_IMAGE defaults to the official Node image; machines without a registry build
# gantry-base:node22 locally (scripts/image/base.sh) and pass it.
ARG BASE_IMAGE=node:22-bookworm-slim
FROM ${BASE_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="gantry" \
      org.opencontainers.image.description="Gantry: gRPC platform services (log, settlement, approvals, webhooks) in one program; --target selects the role" \
      org.opencontainers.image.source="https://github.com/gantry/gantry" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# A numeric non-root user (no passwd entry needed, so Kubernetes' runAsNonRoot can check it).
# The data directory is the only place the program writes (dev PKI, dev keys, the embedded
# database); it is a volume, so the root filesystem can be read-only.
# MALLOC_ARENA_MAX=2: glibc gives each thread that allocates (libuv's pool, V8's GC helpers) an
# arena of its own, up to 8 per core, and keeps what each arena freed; the soak saw RSS climb in
# steps that never came back while the heap and buffers stayed flat (docs/testing.md).
ENV NODE_ENV=production \
    HOME=/tmp \
    MALLOC_ARENA_MAX=2 \
    GANTRY_DATA_DIR=/var/lib/gantry
RUN mkdir -p /var/lib/gantry && chown 10001:10001 /var/lib/gantry && chmod 0700 /var/lib/gantry
VOLUME ["/var/lib/gantry"]

COPY --chown=0:0 build/image/app /app
WORKDIR /app
USER 10001:10001

# 7443: gRPC over mTLS; 7080: plaintext grpc.health.v1 for probes; 8443: the HTTP/JSON gateway (HTTPS).
EXPOSE 7443 7080 8443
# Node is PID 1 and handles SIGTERM itself: health NOT_SERVING, drain calls, exit 0
# (services/gantry/src/commands/serve.ts); tests/containers proves it. No init process needed.
STOPSIGNAL SIGTERM
# --heap-growing-percent=100: after each full collection the old generation may grow to twice what
# survived before the next (docs/decisions.md, "V8's heap growth"); the same flags as package.json's
# scripts and the benchmarks' servers.
ENTRYPOINT ["node", "--experimental-async-context-frame", "--heap-growing-percent=100", "/app/gantry.mjs"]
CMD ["serve", "--target=all"]
