#!/usr/bin/env bash
# The "zero flakes" check: the suite (or the files given) N times in a row (SOAK_RUNS, default 3)
# while a CPU-heavy process spins beside it, as a busy CI box or laptop would. Stops at the first
# failing run. The load is killed on any exit.
#   npm run test:soak                                   # the whole suite, 3 runs
#   SOAK_RUNS=5 npm run test:soak -- test/acceptance/drain.test.ts
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${SOAK_RUNS:-3}

# One core kept busy: as much pressure as a 2-core machine can take without starving the tests.
node -e 'for (;;) {}' &
hog=$!
trap 'kill "$hog" 2>/dev/null || true' EXIT

for i in $(seq 1 "$runs"); do
  echo "== soak run $i/$runs (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  start=$(date +%s)
  if ! npx jest "$@"; then
    echo "== soak run $i/$runs FAILED after $(($(date +%s) - start)) s"
    exit 1
  fi
  echo "== soak run $i/$runs passed in $(($(date +%s) - start)) s"
done
echo "== $runs runs in a row passed under load"
