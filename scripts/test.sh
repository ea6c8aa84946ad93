#!/usr/bin/env bash
# Set up a fresh machine and run Ruma's whole test suite with trial.
# Prints a last line `trial: N passed, N failed, N skipped`; a run with no tests fails.
# Arguments (optional) are test names for trial, e.g. `tests.protocol` or `tests.interop`.
set -uo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v pg_ctlcluster >/dev/null 2>&1 || need_apt+=(postgresql)
# A real IRC server for the IRC bridge and appservice interop tests.
command -v inspircd >/dev/null 2>&1 || [ -x /usr/sbin/inspircd ] || need_apt+=(inspircd)
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The services the storage tests use: PostgreSQL (and Redis, for the bus later).
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if command -v redis-cli >/dev/null 2>&1 && ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" \
    | grep -q 1 || createdb -h 127.0.0.1 -U postgres test || true

bash scripts/setup.sh || { echo "setup failed"; echo "trial: 0 passed, 1 failed"; exit 1; }

if [ -f tests/interop/js/package.json ]; then
    (cd tests/interop/js && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --silent; else npm install --no-audit --no-fund --silent; fi) \
        || echo "npm install failed: the matrix-js-sdk interop test will fail"
fi

log=$(mktemp)
.venv/bin/trial --temp-directory=_trial_temp "${@:-tests}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

# trial's summary: "PASSED (successes=N, skips=M)" or "FAILED (failures=A, errors=B, successes=N, ...)"
summary=$(grep -E '^(PASSED|FAILED)' "$log" | tail -n1)
num() { echo "$summary" | grep -oE "$1=[0-9]+" | cut -d= -f2 | head -n1; }
passed=$(num successes); passed=${passed:-0}
failures=$(num failures); errors=$(num errors); unexpected=$(num unexpectedSuccesses)
failed=$(( ${failures:-0} + ${errors:-0} + ${unexpected:-0} ))
skipped=$(num skips); skipped=${skipped:-0}
rm -f "$log"
if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
    echo "no tests ran"
    failed=1
fi
echo "trial: ${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
