# syntax=docker/dockerfile:1
#
# Archipelago's images: one build stage, three runtime targets (README "Deployment").
#
#   docker build --target coordinator -t archipelago/coordinator .   # serve, jobs, sampler, CLI
#   docker build --target worker      -t archipelago/worker .        # a volunteer worker on CPU
#   docker build --target worker-gpu  -t archipelago/worker-gpu .    # ... on an NVIDIA GPU
#
# The build runs `npm ci` and `npm run build`, prunes the dev dependencies and lays out what the
# runtime stages copy: the root package.json and node_modules (npm's workspace links point into
# packages/ and apps/), each package's package.json and dist/, the coordinator's and the
# dashboard's dist/ and the migrations for the coordinator, the worker's dist/ for the workers.
# Every runtime stage runs as a non-root user (uid 1000) and owns only its data directory.
#
# Debian bullseye (glibc 2.31) for the build, so that the native addons it compiles or downloads
# (better-sqlite3, @tensorflow/tfjs-node[-gpu]) also load on the CUDA image's Ubuntu 20.04.
ARG NODE_BUILD_IMAGE=node:20-bullseye
ARG NODE_RUNTIME_IMAGE=node:20-bullseye-slim
# @tensorflow/tfjs-node-gpu 4.22 is built against libtensorflow 2.9.1: CUDA 11.2 and cuDNN 8.1.
ARG CUDA_IMAGE=nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04

FROM ${NODE_BUILD_IMAGE} AS build
ENV TURBO_TELEMETRY_DISABLED=1
WORKDIR /app
COPY . .
# The optional @tensorflow/tfjs-node and -node-gpu download libtensorflow while installing; where
# that fails npm ci still succeeds without them and the workers fall back to WebAssembly.
RUN npm ci
RUN npm run build
RUN npm prune --omit=dev
# /out/common: what every image needs; /out/coordinator, /out/worker: each one's own app;
# /out/gpu: tfjs-node-gpu, useless without CUDA, only for worker-gpu.
RUN set -eu; \
    mkdir -p /out/common /out/coordinator/apps /out/worker/apps /out/gpu/node_modules/@tensorflow; \
    cp -a package.json node_modules /out/common/; \
    if [ -d /out/common/node_modules/@tensorflow/tfjs-node-gpu ]; then \
      mv /out/common/node_modules/@tensorflow/tfjs-node-gpu /out/gpu/node_modules/@tensorflow/; \
    fi; \
    copy_workspace() { \
      mkdir -p "$2/$1"; \
      cp -a "$1/package.json" "$1/dist" "$2/$1/"; \
      if [ -d "$1/node_modules" ]; then cp -a "$1/node_modules" "$2/$1/"; fi; \
    }; \
    for p in packages/*; do copy_workspace "$p" /out/common; done; \
    copy_workspace apps/coordinator /out/coordinator; \
    copy_workspace apps/dashboard /out/coordinator; \
    cp -a migrations /out/coordinator/; \
    copy_workspace apps/worker /out/worker; \
    test -f /out/coordinator/apps/coordinator/dist/bin.js; \
    test -f /out/coordinator/apps/dashboard/dist/index.html; \
    test -f /out/coordinator/migrations/meta/_journal.json; \
    test -f /out/worker/apps/worker/dist/bin.js

# The coordinator: `serve` by default; `jobs`, `sampler` and the admin commands with another
# command. Its SQLite database, secrets and local object store live in /data (a volume).
FROM ${NODE_RUNTIME_IMAGE} AS coordinator
ENV NODE_ENV=production \
    ARCHIPELAGO_HOST=0.0.0.0 \
    ARCHIPELAGO_PORT=8080 \
    ARCHIPELAGO_DATA_DIR=/data
WORKDIR /app
COPY --from=build /out/common/ /app/
COPY --from=build /out/coordinator/ /app/
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 8080
CMD ["node", "apps/coordinator/dist/bin.js", "serve"]

# A volunteer's worker on CPU (tfjs-node when it installed, WebAssembly otherwise). Arguments go
# to the worker: `docker run archipelago/worker --coordinator URL --objective any`; the token in
# ARCHIPELAGO_WORKER_TOKEN. Its work dir (shards, checkpoints, state) is /work (a volume).
FROM ${NODE_RUNTIME_IMAGE} AS worker
ENV NODE_ENV=production \
    ARCHIPELAGO_WORK_DIR=/work
WORKDIR /app
COPY --from=build /out/common/ /app/
COPY --from=build /out/worker/ /app/
RUN mkdir -p /work && chown node:node /work
USER node
ENTRYPOINT ["node", "apps/worker/dist/bin.js"]

# The same worker on an NVIDIA GPU through @tensorflow/tfjs-node-gpu (needs the NVIDIA container
# toolkit on the host). The build fails here when tfjs-node-gpu could not be installed.
FROM ${NODE_RUNTIME_IMAGE} AS node-runtime
FROM ${CUDA_IMAGE} AS worker-gpu
ENV NODE_ENV=production \
    ARCHIPELAGO_WORK_DIR=/work
COPY --from=node-runtime /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=build /out/common/ /app/
COPY --from=build /out/worker/ /app/
COPY --from=build /out/gpu/ /app/
RUN node -e "require.resolve('@tensorflow/tfjs-node-gpu/package.json')" \
    && useradd --uid 1000 --create-home --shell /usr/sbin/nologin archipelago \
    && mkdir -p /work && chown archipelago:archipelago /work
USER archipelago
ENTRYPOINT ["node", "apps/worker/dist/bin.js"]
