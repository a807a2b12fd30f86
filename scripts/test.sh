#!/bin/bash
# Set everything up, build, and run every test: unit and integration tests
# against real servers, in a normal build and again under AddressSanitizer
# and UndefinedBehaviorSanitizer.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1

passed=0
failed=0
run_flavour() {
  local flavour=$1
  echo "=== $flavour build"
  scripts/build.sh "$flavour" || { failed=$((failed + 1)); return; }
  echo "=== $flavour tests"
  local log="build/$flavour/ctest.log"
  ctest --test-dir "build/$flavour" --output-on-failure -j2 2>&1 | tee "$log"
  local p f
  p=$(grep -Eo '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed' "$log" | wc -l)
  f=$(grep -Eo '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .*(\*\*\*|Failed|Timeout|Not Run)' "$log" | wc -l)
  passed=$((passed + p))
  failed=$((failed + f))
}

run_flavour release
run_flavour asan

echo
echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
