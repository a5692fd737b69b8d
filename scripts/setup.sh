#!/usr/bin/env bash
# Create .venv and install protiso with its test dependencies and the Ray extra. torch is
# pinned to the CPU build first, so that nothing pulls a multi-GB CUDA build. Debian's
# Chromium (for the report's browser tests) is installed when missing and apt-get is usable.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test,ray]"
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || echo "setup: could not install chromium; the report's browser tests will be skipped" >&2
fi
