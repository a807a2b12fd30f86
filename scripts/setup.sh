#!/bin/bash
# Install what siphon needs to build and test on Debian 12 (run as root).
# Installs only what is missing, so a second run is quick.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git ca-certificates clang libclang-rt-14-dev clang-format
  libpq-dev libyaml-dev libcmocka-dev librdkafka-dev libnats-dev libhiredis-dev
  libcurl4-openssl-dev libssl-dev libmicrohttpd-dev liblua5.4-dev
  redis-server nats-server
  postgresql-15 postgresql-client-15
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages: ${missing[*]}; run as root (or with sudo) to install them" >&2
    exit 2
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Keep Debian's postgresql package from starting a system cluster we do not use.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
