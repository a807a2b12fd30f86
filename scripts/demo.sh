#!/bin/bash
# Set everything up, build, and run the demo: a private PostgreSQL, a
# generator of changes, and siphon streaming them to the terminal.
# Ctrl-C stops it and removes the private cluster. Extra arguments go to
# `siphon demo` (e.g. --duration 20 --rate 10).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release
exec build/release/siphon demo "$@"
