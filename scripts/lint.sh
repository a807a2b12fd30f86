#!/bin/bash
# Formatting check: every C file under src/ and tests/ must match .clang-format.
# `scripts/lint.sh --fix` rewrites them instead.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h' 2>/dev/null ||
                     find src tests -name '*.[ch]')
if [ "${1:-}" = "--fix" ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
bad=0
for f in "${files[@]}"; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "lint: $f is not formatted (run scripts/lint.sh --fix)"
    bad=1
  fi
done
[ "$bad" -eq 0 ] && echo "lint: ${#files[@]} files formatted"
exit "$bad"
