#!/usr/bin/env bash
# Hosts of different speeds, emulated on one machine: 2 ranks, one core each,
# rank 1 capped to --quota percent of its core by a CPU cgroup. Compares the
# default placement (time balance, equal ranks) with --speeds auto and with
# the speeds given by hand (1,quota/100), in interleaved rounds.
#   jobs/bench-hetero.sh [--dir DIR] [--quota PCT] [--reps N] [--tokens N] [--samples S]
# --dir holds the synthetic TinyLlama model (created once, 4.4 GB; default
# /tmp/mdi-bench, as jobs/bench.sh). Needs root and the cgroup cpu controller
# (v1 cpu.cfs_quota_us or v2 cpu.max). Prints one line per run and a summary.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=/tmp/mdi-bench quota=50 reps=3 tokens=24 samples=4
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;; --quota) quota=$2; shift 2 ;; --reps) reps=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;; --samples) samples=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "bench-hetero.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
for v in "$reps" "$tokens" "$samples"; do
  case $v in ''|*[!0-9]*|0) echo "bench-hetero.sh: --reps, --tokens and --samples take positive integers, got '$v'" >&2; exit 2 ;; esac
done
case $quota in ''|*[!0-9]*) echo "bench-hetero.sh: --quota takes a percentage 5-100, got '$quota'" >&2; exit 2 ;; esac
if [ "$quota" -lt 5 ] || [ "$quota" -gt 100 ]; then
  echo "bench-hetero.sh: --quota takes a percentage 5-100, got '$quota'" >&2; exit 2
fi
[ "$(id -u)" -eq 0 ] || { echo "bench-hetero.sh: needs root (it creates a CPU cgroup)" >&2; exit 1; }
# the slow host: a cgroup with quota% of one core
if [ -w /sys/fs/cgroup/cpu ] && [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
  cg=/sys/fs/cgroup/cpu/mdi-slow
  mkdir -p "$cg"
  echo 100000 >"$cg/cpu.cfs_period_us"
  echo $((quota * 1000)) >"$cg/cpu.cfs_quota_us"
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
  cg=/sys/fs/cgroup/mdi-slow
  echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
  mkdir -p "$cg"
  echo "$((quota * 1000)) 100000" >"$cg/cpu.max"
else
  echo "bench-hetero.sh: no writable cgroup cpu controller on this machine" >&2; exit 1
fi
source "$here/jobs/lib_bench.sh"
out=$(mktemp -d /tmp/mdi-hetero.XXXXXX)
trap 'rm -rf "$out"' EXIT
# rank 1 joins the cgroup before it becomes mdi-llm
cat >"$out/slow.sh" <<EOF
#!/usr/bin/env bash
[ "\${OMPI_COMM_WORLD_RANK:-0}" = 1 ] && echo \$\$ >"$cg/cgroup.procs"
exec "\$@"
EOF
chmod +x "$out/slow.sh"
slow=$(awk -v q="$quota" 'BEGIN { printf "%g", q / 100 }')
echo "# 2 ranks x 1 thread, rank 1 capped to ${quota}% of a core; $samples samples, $tokens tokens each"
printf '%-14s %5s %12s %10s  %-40s %s\n' placement round decode_tok/s speeds "rank 0 holds" "rank 1 holds"
declare -A sum
for round in $(seq 1 "$reps"); do
  for p in default auto given; do
    extra=()
    [ "$p" = auto ] && extra=(--speeds auto)
    [ "$p" = given ] && extra=(--speeds "1,$slow")
    mpirun -np 2 "${MDI_MPIRUN_FLAGS[@]}" --bind-to core "$out/slow.sh" "$B/mdi-llm" \
      --model "$model" --prompt "Once up" --samples "$samples" --max-tokens "$tokens" \
      --temperature 0 --threads 1 --quiet --stats-json "$out/$p.json" "${extra[@]}" >/dev/null
    rate=$(jq '.decode_tokens_per_s' "$out/$p.json")
    sp=$(jq -r '[.per_rank[].speed | tostring] | join(",")' "$out/$p.json")
    h0=$(jq -r '.per_rank[0].holds' "$out/$p.json")
    h1=$(jq -r '.per_rank[1].holds' "$out/$p.json")
    printf '%-14s %5d %12.2f %10s  %-40s %s\n' "$p" "$round" "$rate" "$sp" "$h0" "$h1"
    sum[$p]=$(awk -v a="${sum[$p]:-0}" -v b="$rate" 'BEGIN { print a + b }')
  done
done
for p in default auto given; do
  awk -v p="$p" -v s="${sum[$p]}" -v n="$reps" -v d="${sum[default]}" \
    'BEGIN { printf "# %-8s mean decode %.2f tok/s, %.2fx the default placement\n", p, s / n, s / d }'
done
