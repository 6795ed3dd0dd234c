# apivideo-upload-relay: build with dev dependencies, run with production ones only.
# Any Node.js >= 20.19.0 runs the relay (package.json engines): it require()s ES modules. The image
# takes the current LTS line, 24, which the container test runs.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# The build also copies tus-js-client's browser bundle and renders docs/errors.md into dist/.
COPY scripts ./scripts
COPY docs/errors.md ./docs/errors.md
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
# glibc gives the top of its heap back to the kernel whenever 128 KiB there is free, and raises
# that threshold on its own only when a large mmapped buffer is freed. The relay keeps its part
# buffers in a pool and never frees them, so the threshold stays low, and Node's socket reads (up
# to 64 KiB, freed in batches by the GC) make the heap shrink and grow again all the time: 2.7 times
# the page faults and 0.7 to 0.9 times the throughput on one fast upload (docs/performance-notes.md).
# 32 MiB is what the previous build's 16 MiB part buffers made glibc choose. Setting it also fixes
# glibc's mmap threshold at 128 KiB, so the pool's 256 KiB and 1 MiB blocks stay mappings of their
# own that go back to the kernel when let go.
ENV MALLOC_TRIM_THRESHOLD_=33554432
WORKDIR /app
COPY --from=build --chown=node:node /app/package.json ./package.json
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
COPY public ./public
USER node
EXPOSE 3000
# The image has no curl: Node's own fetch asks /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form: node is PID 1 and gets SIGTERM itself, so the graceful drain runs on `docker stop`.
# --initial-old-space-size=64: V8 counts the growth of external memory (Buffers) since its last
# full collection against the old generation's limit, which for the relay's small heap (about 15
# MiB) is about 38 MiB on Node 20 and 40 MiB on Node 24. Eight fast uploads (a new Buffer per
# socket read, parts moving through the pool) went over it every 130 to 200 ms: about 30 full
# collections per GiB (one upload: 3). With the limit at least 64 MiB: 5 to 8 on Node 20, 22 on
# Node 24 (33 without, one run each), and 8 uploads move 0.90 to 0.97 (Node 20) and 1.07 (Node
# 24) times one upload's throughput instead of 0.80 to 0.84 and 0.94; more garbage waits, so their
# RSS grows more (docs/performance-notes.md). A V8 flag that NODE_OPTIONS does not accept, so it
# is here and in `npm start`.
CMD ["node", "--initial-old-space-size=64", "dist/main.js"]
