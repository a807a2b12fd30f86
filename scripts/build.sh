#!/bin/bash
# Configure and build one flavour: scripts/build.sh release|asan
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-release}"
case "$flavour" in
  release) extra=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  # clang: its UndefinedBehaviorSanitizer checks more (e.g. pointer arithmetic on NULL)
  asan)    extra=(-DCMAKE_BUILD_TYPE=Debug -DSP_SANITIZE=address,undefined -DCMAKE_C_COMPILER=clang) ;;
  *) echo "build: unknown flavour $flavour (release or asan)" >&2; exit 2 ;;
esac
cmake -S . -B "build/$flavour" "${extra[@]}" >/dev/null
cmake --build "build/$flavour" -j"$(nproc)"
