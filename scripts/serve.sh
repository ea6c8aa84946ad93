#!/usr/bin/env bash
# Run Ruma in the foreground. With no homeserver.yaml here, Ruma writes one for `localhost`
# (SQLite under ./ruma-data, a fresh signing key) and says so. Extra arguments go to twistd's
# ruma plugin, e.g. `-c /etc/ruma/homeserver.yaml`.
set -euo pipefail
cd "$(dirname "$0")/.."
RUMA_EXTRAS=postgres bash scripts/setup.sh
exec .venv/bin/twistd -n --pidfile= ruma "$@"
