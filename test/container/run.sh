#!/usr/bin/env bash
# Builds the image and runs it the way users will: the emulator and the relay as containers, a
# 20 MiB upload with curl checked against the emulator's SHA-256, `docker stop` (graceful drain,
# exit 0), and docker-compose. Fails loudly when the engine cannot start; never skips.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SANDBOX=${DOCKER_SANDBOX:-$ROOT/../shared/tools/docker-sandbox}
IMAGE=apivideo-upload-relay:test
RELAY_PORT=13300 EMULATOR_PORT=13400 COMPOSE_RELAY_PORT=13301 COMPOSE_EMULATOR_PORT=13401
KEY=container-test-key-1234 TOKEN=container-test-token-0123456789
WORK=$(mktemp -d)
log() { echo "container-test: $*"; }

cleanup() {
  set +e
  if [ -n "${DOCKER_HOST:-}" ]; then
    docker rm -f relay-test-relay relay-test-emulator >/dev/null 2>&1
    [ -f "$WORK/compose.yml" ] && docker-compose -p relaytest -f "$WORK/compose.yml" down -t 5 >/dev/null 2>&1
  fi
  bash "$SANDBOX" down >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

log "1. lint"
npx --no-install dockerfile-utils lint Dockerfile
[ -f .env ] || cp .env.example .env

log "2. build (engine: $SANDBOX)"
# The sandbox installs Debian's docker.io and docker-compose on a fresh machine: `up` comes
# before the first docker-compose call.
eval "$(bash "$SANDBOX" up)"
export DOCKER_HOST
docker-compose -f docker-compose.yml config -q
docker() { /usr/bin/docker "$@"; }
DOCKER_BUILDKIT=1 docker build --network host -t "$IMAGE" -t apivideo-upload-relay:local . >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; exit 1; }
log "image size: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MiB", $1/1048576}')"
log "node in the image: $(docker run --rm --network host "$IMAGE" node --version)"
# Unprivileged, production, and nothing but what runs: no tests, no .git, no .env.
[ "$(docker run --rm --network host "$IMAGE" id -un)" = node ] || { echo "container-test: not running as node" >&2; exit 1; }
[ "$(docker run --rm --network host "$IMAGE" node -p process.env.NODE_ENV)" = production ] || { echo "container-test: NODE_ENV is not production" >&2; exit 1; }
# The allocator setting the benchmarks measure the relay with (bench/run.mjs reads it from the Dockerfile).
[ "$(docker run --rm --network host "$IMAGE" node -p process.env.MALLOC_TRIM_THRESHOLD_)" = 33554432 ] || { echo "container-test: MALLOC_TRIM_THRESHOLD_ is not set" >&2; exit 1; }
# The V8 flag NODE_OPTIONS refuses is in the CMD, and Node 24 accepts it (a bad option stops node).
docker inspect --format '{{json .Config.Cmd}}' "$IMAGE" | grep -q -- '--initial-old-space-size=64' || { echo "container-test: the CMD lacks --initial-old-space-size=64" >&2; exit 1; }
docker run --rm --network host "$IMAGE" node --initial-old-space-size=64 -e 0 || { echo "container-test: node in the image refuses --initial-old-space-size=64" >&2; exit 1; }
stray=$(docker run --rm --network host "$IMAGE" sh -c 'ls -A /app; ls /app/node_modules | grep -E "^(jest|typescript|ts-jest|playwright-core)$" || true' | grep -E '^(test|\.git|\.env|src|bench|jest|typescript|ts-jest|playwright-core)$' || true)
[ -z "$stray" ] || { echo "container-test: the image holds $stray" >&2; exit 1; }
log "runs as node, NODE_ENV=production, MALLOC_TRIM_THRESHOLD_ set, CMD with --initial-old-space-size=64, no tests, sources, .git, .env or dev dependencies"
# Built at build time into dist/: the page's tus bundle and the error catalogue; tus-js-client
# itself (a dev dependency) is not shipped.
docker run --rm --network host "$IMAGE" sh -c 'test -s dist/vendor/tus.min.js && test -s dist/docs/errors.html && ! test -e node_modules/tus-js-client' ||
  { echo "container-test: dist/vendor/tus.min.js or dist/docs/errors.html missing, or tus-js-client shipped" >&2; exit 1; }
log "dist/ holds the tus bundle and the error catalogue; node_modules has no tus-js-client"

wait_for() { # url, seconds
  for _ in $(seq 1 "$2"); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 1; done
  echo "container-test: $1 did not answer" >&2; return 1
}

upload_and_check() { # relay url, emulator url
  head -c $((20 * 1024 * 1024)) /dev/urandom >"$WORK/clip.mp4"
  local expected answer video seen
  expected=$(sha256sum "$WORK/clip.mp4" | cut -d' ' -f1)
  answer=$(curl -fsS -H "Authorization: Bearer $TOKEN" -F title=container -F "file=@$WORK/clip.mp4" "$1/v1/videos")
  video=$(node -e 'process.stdout.write(JSON.parse(process.argv[1]).videoId)' "$answer")
  seen=$(curl -fsS "$2/_emulator/videos/$video" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s);process.stdout.write(v.completed+" "+v.sha256)})')
  [ "$seen" = "true $expected" ] || { echo "container-test: emulator has '$seen', file is $expected" >&2; return 1; }
  log "uploaded $video: SHA-256 matches ($expected)"
}

log "3. the emulator and the relay containers"
docker run -d --name relay-test-emulator --network host \
  -e EMULATOR_PORT=$EMULATOR_PORT -e EMULATOR_HOST=127.0.0.1 -e EMULATOR_API_KEY=$KEY \
  "$IMAGE" node dist/emulator/main.js >/dev/null
docker run -d --name relay-test-relay --network host --health-interval 2s \
  -e PORT=$RELAY_PORT -e HOST=127.0.0.1 -e APIVIDEO_API_KEY=$KEY \
  -e APIVIDEO_BASE_URL=http://127.0.0.1:$EMULATOR_PORT -e RELAY_API_TOKENS=$TOKEN -e SHUTDOWN_GRACE_MS=8000 \
  "$IMAGE" >/dev/null
wait_for "http://127.0.0.1:$EMULATOR_PORT/_emulator/stats" 30
wait_for "http://127.0.0.1:$RELAY_PORT/readyz" 30
upload_and_check "http://127.0.0.1:$RELAY_PORT" "http://127.0.0.1:$EMULATOR_PORT"
# A problem's `type` resolves on the relay itself.
# Read the page whole first: with pipefail, `curl | grep -q` fails when grep stops reading early.
errors_page=$(curl -fsS "http://127.0.0.1:$RELAY_PORT/docs/errors")
grep -q '<tr id="route_not_found">' <<<"$errors_page" ||
  { echo "container-test: GET /docs/errors has no route_not_found anchor" >&2; exit 1; }
log "GET /docs/errors serves the catalogue"

log "4. HEALTHCHECK and docker stop"
for _ in $(seq 1 30); do
  health=$(docker inspect -f '{{.State.Health.Status}}' relay-test-relay)
  [ "$health" = healthy ] && break; sleep 1
done
[ "$health" = healthy ] || { echo "container-test: health is '$health'" >&2; exit 1; }
log "HEALTHCHECK reports healthy"
started=$(date +%s)
docker stop -t 10 relay-test-relay >/dev/null
code=$(docker inspect -f '{{.State.ExitCode}}' relay-test-relay)
took=$(($(date +%s) - started))
relay_logs=$(docker logs relay-test-relay 2>&1)
grep -q '"msg":"drained; closing"' <<<"$relay_logs" || { tail -20 <<<"$relay_logs"; exit 1; }
[ "$code" = 0 ] && [ "$took" -lt 10 ] || { echo "container-test: exit $code after ${took}s" >&2; exit 1; }
log "docker stop: exit 0 after ${took}s (grace 8 s)"
docker rm -f relay-test-relay relay-test-emulator >/dev/null

log "5. docker-compose (rendered for host networking)"
docker-compose -f docker-compose.yml config >"$WORK/rendered.yml"
node test/container/render-compose.mjs "$WORK/rendered.yml" "$WORK/compose.yml" $COMPOSE_RELAY_PORT $COMPOSE_EMULATOR_PORT
# The relay's environment gains a token so the same authenticated upload works.
sed -i "s/^\(      PORT: .*\)$/\1\n      RELAY_API_TOKENS: $TOKEN/" "$WORK/compose.yml"
docker-compose -p relaytest -f "$WORK/compose.yml" up -d relay emulator
wait_for "http://127.0.0.1:$COMPOSE_RELAY_PORT/readyz" 60
upload_and_check "http://127.0.0.1:$COMPOSE_RELAY_PORT" "http://127.0.0.1:$COMPOSE_EMULATOR_PORT"
docker-compose -p relaytest -f "$WORK/compose.yml" down -t 10
log "all container checks passed"
