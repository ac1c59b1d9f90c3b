#!/usr/bin/env bash
# Install what mdi-llm needs from Debian's archive (if missing) and build it.
#   jobs/setup.sh [BUILD_DIR] [extra cmake args...]
# BUILD_DIR defaults to ./build. Safe to run again: installs only what is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
shift || true

pkgs=(build-essential cmake pkg-config git openmpi-bin libopenmpi-dev libblis-dev
      libhdf5-dev hdf5-tools libcmocka-dev
      iproute2 iptables libnetfilter-queue-dev)  # the last three: emulated edge cluster (jobs/cluster.sh)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" >&2
cmake --build "$build" -j "$(nproc)" >&2
echo "setup: built $build" >&2
