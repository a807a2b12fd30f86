#!/bin/bash
# siphon benchmark: the one command.
#
#   bench/run.sh               full run: every workload at full size, 5 rounds, latency
#   bench/run.sh --quick       the same at 1/10 of the rows, shorter latency runs
#   bench/run.sh --help        every option (workloads, consumers, rounds, scale, ...)
#   bench/run.sh --profile     where siphon spends its CPU on W1 (null sink), no comparison
#
# Installs what is missing (Debian 12, as root), builds siphon in build/bench
# (CMAKE_BUILD_TYPE=Release) and runs bench/bench.py, which starts a private
# PostgreSQL 15 in a temporary directory (never the system cluster) and stops it
# at the end. Results go to bench/out/<UTC timestamp>/ (report.md, results.json).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"

want_build=1
for a in "$@"; do
  case "$a" in
    -h|--help) want_build=0 ;;
  esac
done

if [ "$want_build" = 1 ]; then
  # Build dependencies and PostgreSQL 15 (the project's own setup script).
  "$root/scripts/setup.sh"
  # What only the benchmark needs: the reference output plugin, GNU time (not
  # used for figures, handy to cross-check), perf (fsync timestamps for the
  # latency run, sampling profile) and valgrind (callgrind profile).
  extra=(postgresql-15-wal2json postgresql-contrib time linux-perf valgrind python3)
  missing=()
  for p in "${extra[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "bench: missing packages: ${missing[*]}; run as root to install them" >&2
      exit 2
    fi
    echo "bench: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  cmake -S "$root" -B "$root/build/bench" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$root/build/bench" -j"$(nproc)" --target siphon
fi

export SIPHON_BENCH_CMD="bench/run.sh${*:+ $*}"
exec /usr/bin/python3 "$here/bench.py" --siphon "$root/build/bench/siphon" "$@"
