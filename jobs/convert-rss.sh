#!/usr/bin/env bash
# Peak memory and wall time of mdi-convert writing a TinyLlama-sized model
# (--synthetic tinyllama-1.1b, f32: 4.4 GB), and determinism: a second
# conversion with the same seed must give a byte-identical file.
#   jobs/convert-rss.sh [OUT_DIR]
# OUT_DIR: where the two model files go (kept there). Without it they go to a
# temporary directory under ${TMPDIR:-/tmp}, and each file is deleted as soon as
# it has been measured and hashed, so at most one 4.4 GB file exists at a time.
# Env: MDI_CONVERT (default build/mdi-convert), SEED (default 7).
# Exit status: 0 when peak RSS < 1 GB (10^9 bytes) and the two files match, else 1.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
CONVERT=${MDI_CONVERT:-$here/build/mdi-convert}
SEED=${SEED:-7}
LIMIT_BYTES=1000000000
need_bytes=4500000000

if [ ! -x "$CONVERT" ]; then
  echo "convert-rss: $CONVERT not found; build first (jobs/setup.sh) or set MDI_CONVERT" >&2
  exit 1
fi
if [ ! -x /usr/bin/time ]; then
  echo "convert-rss: installing GNU time" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends time >&2
fi

keep=0
if [ $# -ge 1 ]; then
  out=$1
  keep=1
  [ -d "$out" ] || { echo "convert-rss: $out is not a directory" >&2; exit 1; }
  need_bytes=$((2 * need_bytes))
  for f in "$out/convert-rss-1.h5" "$out/convert-rss-2.h5"; do
    [ ! -e "$f" ] || { echo "convert-rss: $f exists; remove it first" >&2; exit 1; }
  done
else
  out=$(mktemp -d "${TMPDIR:-/tmp}/mdi-convert-rss.XXXXXX")
  trap 'rm -rf "$out"' EXIT
fi
avail=$(($(df -Pk "$out" | awk 'NR==2 {print $4}') * 1024))
if [ "$avail" -lt "$need_bytes" ]; then
  echo "convert-rss: $out has $((avail / 1000000)) MB free; need $((need_bytes / 1000000)) MB" >&2
  exit 1
fi

# run I: convert into $out/convert-rss-I.h5 under /usr/bin/time; sets rss_kb, wall, bytes, sum
run() {
  local f=$out/convert-rss-$1.h5 tv=$out/time-$1.txt
  echo "convert-rss: run $1: $CONVERT --synthetic tinyllama-1.1b --seed $SEED -o $f" >&2
  /usr/bin/time -v -o "$tv" "$CONVERT" --synthetic tinyllama-1.1b --seed "$SEED" -o "$f"
  rss_kb=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$tv")
  wall=$(sed -n 's/^[[:space:]]*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$tv")
  bytes=$(stat -c %s "$f")
  [ "$1" = 2 ] || "$CONVERT" --inspect "$f" >&2
  sum=$(sha256sum "$f" | cut -d' ' -f1)
  rm -f "$tv"
  [ "$keep" = 1 ] || rm -f "$f"
}

run 1
rss1=$rss_kb wall1=$wall bytes1=$bytes sum1=$sum
run 2
rss2=$rss_kb wall2=$wall sum2=$sum

peak_kb=$((rss1 > rss2 ? rss1 : rss2))
peak_bytes=$((peak_kb * 1024))
echo
echo "model      synthetic tinyllama-1.1b, seed $SEED, f32, one file of $bytes1 bytes"
echo "run 1      peak RSS $rss1 kB ($((rss1 * 1024 / 1000000)) MB), wall $wall1"
echo "run 2      peak RSS $rss2 kB ($((rss2 * 1024 / 1000000)) MB), wall $wall2"
echo "sha256     $sum1"
status=0
if [ "$sum1" = "$sum2" ]; then
  echo "determinism: ok (both runs wrote byte-identical files)"
else
  echo "determinism: FAIL (run 2 sha256 $sum2)"
  status=1
fi
if [ "$peak_bytes" -lt "$LIMIT_BYTES" ]; then
  echo "peak RSS:  ok ($((peak_bytes / 1000000)) MB < 1000 MB)"
else
  echo "peak RSS:  FAIL ($((peak_bytes / 1000000)) MB >= 1000 MB)"
  status=1
fi
[ "$keep" = 0 ] || echo "files kept in $out"
exit "$status"
