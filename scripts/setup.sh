#!/usr/bin/env bash
# Install everything Ruma and its tests need on a fresh machine (idempotent).
# Sourced by scripts/serve.sh and scripts/test.sh; safe to run on its own.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# Re-install only when the package metadata changed since the last install.
stamp=.venv/.ruma-installed
want="$(cat setup.cfg setup.py pyproject.toml ruma/protocol/_speedups.c | sha256sum | cut -d' ' -f1)-${RUMA_EXTRAS:-test}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    # compat mode puts the repository itself on sys.path, so twistd finds twisted/plugins here.
    .venv/bin/python -m pip install -q -e ".[${RUMA_EXTRAS:-test}]" --config-settings editable_mode=compat
    echo "$want" > "$stamp"
fi
