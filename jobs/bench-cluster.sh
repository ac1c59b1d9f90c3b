#!/usr/bin/env bash
# Benchmark mdi-llm on an emulated edge cluster (jobs/cluster.sh): TinyLlama
# geometry with synthetic weights, 2 and 3 hosts, unshaped and with each link
# preset, S = 1..2N samples. Prints tokens/s, each rank's busy fraction and the
# bytes per token per hop, by the engine's count and on the wire. Root only.
#
#   jobs/bench-cluster.sh [--build DIR] [--hosts "2 3"] [--presets "none gige fe2ms wifi"]
#                         [--samples "1 2 ..."] [--tokens 16] [--threads 1] [--reps 1]
#                         [--cache DIR] [--out FILE.tsv] [--timeout 900]
#
# --build     where mdi-llm and mdi-convert are (default ./build)
# --samples   sample counts S to run (default 1..2N for each N)
# --tokens    tokens generated per sample (keep it small: a TinyLlama step is
#             ~0.1-0.5 s on a 2-core machine)
# --threads   threads per rank: every emulated host shares this machine's cores
# --reps      runs per point, presets interleaved; the median tokens/s is reported
# --cache     where the synthetic shard sets are made once and kept
#             (default /tmp/mdi-bench-cache, 4.4 GB per host count); hosts get
#             hard links (copies across file systems)
# --out       also write the table as tab-separated values
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(pwd)/build hosts="2 3" presets="none gige fe2ms wifi" samples="" tokens=16
threads=1 reps=1 cache=/tmp/mdi-bench-cache out="" tmo=900
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2 ;;
    --hosts) hosts=$2 ;;
    --presets) presets=$2 ;;
    --samples) samples=$2 ;;
    --tokens) tokens=$2 ;;
    --threads) threads=$2 ;;
    --reps) reps=$2 ;;
    --cache) cache=$2 ;;
    --out) out=$2 ;;
    --timeout) tmo=$2 ;;
    *) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 2 ;;
  esac
  shift 2
done
[ "$(id -u)" -eq 0 ] || { echo "bench-cluster: must run as root (network namespaces)" >&2; exit 1; }
build=$(cd "$build" && pwd)
LLM=$build/mdi-llm CONVERT=$build/mdi-convert
[ -x "$LLM" ] && [ -x "$CONVERT" ] || { echo "bench-cluster: no mdi-llm/mdi-convert in $build" >&2; exit 1; }
tok=${MDI_MODELS_DIR:-$here/../../shared/models}/llama2-tokenizer/tokenizer.bin
PROMPT="Once upon a time"

C=bench$$
export MDI_CLUSTER_ROOT=${MDI_CLUSTER_ROOT:-/tmp/mdi-cluster}
ST=$MDI_CLUSTER_ROOT/$C
TMP=$(mktemp -d /tmp/mdi-bench.XXXXXX)
trap '"$here/cluster.sh" down "$C" >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM HUP

# The synthetic TinyLlama split for n hosts, made once.
model_for() {
  local n=$1 dir=$cache/tinyllama-1.1b-synth-$1
  if [ ! -d "$dir" ]; then
    mkdir -p "$cache"
    local targs=()
    [ -f "$tok" ] && targs=(--tokenizer "$tok")
    echo "bench-cluster: making $dir (synthetic tinyllama-1.1b, $n shards)" >&2
    "$CONVERT" --synthetic tinyllama-1.1b "${targs[@]}" --shards "$n" -o "$dir" --quiet
  fi
  echo "$dir"
}

# Shard k-1 on host k's own disk, seen there as $ST/local/model.
place() {
  local n=$1 dir=$2 k f
  for ((k = 1; k <= n; k++)); do
    mkdir -p "$ST/disk/h$k/model"
    f=$(ls "$dir"/model-"$(printf %02d $((k - 1)))"-of-*.h5)
    ln "$f" "$ST/disk/h$k/model/" 2>/dev/null || cp "$f" "$ST/disk/h$k/model/"
  done
}

# Bytes the hosts have put on their links so far.
wire_bytes() {
  local k s=0 b
  for ((k = 1; k <= $1; k++)); do
    b=$(ip -n "$C-h$k" -s -j link show dev eth0 | grep -o '"tx":{"bytes":[0-9]*' | grep -o '[0-9]*$')
    s=$((s + b))
  done
  echo "$s"
}

jnum() { grep -o "\"$1\": [0-9.]*" "$2" | head -1 | awk '{print $2}'; }

# run N S T: one generation; sets tps busy rows app wire wall
run() {
  local n=$1 s=$2 t=$3 w0 w1
  w0=$(wire_bytes "$n")
  # in the background, so that a signal reaches the trap (and the cluster goes) at once
  timeout "$tmo" "$here/cluster.sh" mpirun "$C" -np "$n" "$LLM" --model "$ST/local/model" \
    --prompt "$PROMPT" --samples "$s" --temperature 0 --max-tokens "$t" --threads "$threads" \
    --stats-json "$TMP/stats.json" --quiet >/dev/null 2>"$TMP/err" &
  if ! wait $!; then
    echo "bench-cluster: run N=$n S=$s failed:" >&2
    tail -5 "$TMP/err" >&2
    return 1
  fi
  w1=$(wire_bytes "$n")
  wire=$((w1 - w0))
  tps=$(jnum tokens_per_s "$TMP/stats.json")
  wall=$(jnum wall_s "$TMP/stats.json")
  busy=$(grep -o '"busy_fraction": [0-9.]*' "$TMP/stats.json" | awk '{printf "%s%.2f", (NR > 1 ? "/" : ""), $2}')
  app=$(grep -o '"bytes_sent": [0-9]*' "$TMP/stats.json" | awk '{s += $2} END {print s}')
  # every fed position crosses all n hops once; a sample's last token is not fed
  rows=$(($(jnum prompt_tokens "$TMP/stats.json") + $(jnum tokens_generated "$TMP/stats.json") - s))
}

hdr=$(printf '%-5s %-6s %3s %8s %-24s %12s %12s %8s  %s' N preset S tok/s "busy (rank 0/1/..)" \
  "app B/tok/hop" "wire B/tok/hop" wall_s "every run's tok/s")
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); tokens $tokens, threads/rank $threads, reps $reps"
echo "$hdr"
[ -z "$out" ] || printf 'N\tpreset\tS\ttok_s\tbusy\tapp_B_tok_hop\twire_B_tok_hop\twall_s\tall_tok_s\n' >"$out"
declare -A TPS
for n in $hosts; do
  dir=$(model_for "$n")
  "$here/cluster.sh" up "$C" -n "$n" 2>"$TMP/up.err" || { cat "$TMP/up.err" >&2; exit 1; }
  place "$n" "$dir"
  # launch and shutdown traffic, with nothing generated: subtracted from the wire count
  run "$n" "$((2 * n))" 0
  base=$wire
  svals=$samples
  [ -n "$svals" ] || svals=$(seq 1 $((2 * n)))
  for s in $svals; do
    # presets interleaved within each repetition, so that a change in the
    # machine's background load hits them all alike
    declare -A RES=()
    for ((r = 0; r < reps; r++)); do
      for p in $presets; do
        "$here/cluster.sh" shape "$C" --preset "$p" 2>>"$TMP/up.err"
        run "$n" "$s" "$tokens" || continue
        RES[$p]+="$tps $busy $(awk -v a="$app" -v r="$rows" -v n="$n" 'BEGIN {printf "%.0f", a / (r * n)}') $(awk -v w="$wire" -v b="$base" -v r="$rows" -v n="$n" 'BEGIN {printf "%.0f", (w - b) / (r * n)}') $wall"$'\n'
      done
    done
    for p in $presets; do
      [ -n "${RES[$p]:-}" ] || { echo "$n $p $s: every run failed"; continue; }
      k=$(printf '%s' "${RES[$p]}" | wc -l)
      read -r tps busy appb wireb wall <<<"$(printf '%s' "${RES[$p]}" | sort -n | sed -n "$(((k + 1) / 2))p")"
      all=$(printf '%s' "${RES[$p]}" | sort -n | awk '{printf "%s%.2f", (NR > 1 ? "," : ""), $1}')
      TPS[$n.$p.$s]=$tps
      printf '%-5s %-6s %3s %8.3f %-24s %12s %12s %8.2f  %s\n' "$n" "$p" "$s" "$tps" "$busy" "$appb" "$wireb" "$wall" "$all"
      [ -z "$out" ] || printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$p" "$s" "$tps" "$busy" "$appb" "$wireb" "$wall" "$all" >>"$out"
    done
    unset RES
  done
  "$here/cluster.sh" down "$C" 2>/dev/null
done

# The issue's target: 3 hosts, S = 2N = 6, 100 Mbit/s + 2 ms keeps >= 80% of unshaped.
if [ -n "${TPS[3.none.6]:-}" ] && [ -n "${TPS[3.fe2ms.6]:-}" ]; then
  awk -v a="${TPS[3.fe2ms.6]}" -v b="${TPS[3.none.6]}" 'BEGIN {
    r = a / b; printf "target: 3 hosts, S=6, fe2ms / unshaped = %.3f / %.3f = %.0f%% (>= 80%%: %s)\n",
      a, b, 100 * r, (r >= 0.8 ? "met" : "MISSED") }'
fi
