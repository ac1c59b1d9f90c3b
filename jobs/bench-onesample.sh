#!/usr/bin/env bash
# Where one sample's decode rate goes, in interleaved rounds:
#   read    mdi-bench read: the machine's read bandwidth on all the threads the
#           engine uses (best of 5 passes), probed before and after the
#           round's runs, the larger of the two; r_mean, that probe's 5 passes'
#           bytes over their time (a rate over time, like the engine's)
#   kernel  mdi-bench decode-read: the decode step's matrix products alone, with
#           the engine's kernel, shapes and order; as many passes as the engine
#           makes decode steps (their bytes over their time; and the best pass).
#           Between them, as many plain read passes over the same weights
#           (kernel, read, read, kernel): k/r_same is the kernel's rate over
#           theirs, the median over the groups of four, which meet the machine
#           in the same seconds. With --ranks R, R such processes at once, each
#           with 22/R layers (and the head), their rates summed, k/r_same averaged
#   engine  mdi-llm: decode tok/s x weight bytes per token. With --ranks R, R
#           ranks in a ring with R samples in groups of one, so that each rank
#           works on one sample while the next works on another and every
#           weight is still read once per token
#   e_step  mdi-bench engine-read (one rank only; '-' with --ranks R > 1): the
#           engine's own decode step (stage.h: attention, norms, head and
#           greedy pick included) on the same model, as many steps as the
#           engine makes, their bytes over their time; framed like the kernel by
#           plain reads of the weights a step reads: e/r_same, the median over
#           the groups of four of the steps' rate over the reads'; w_read,
#           those read passes over the model's weights (their bytes over
#           their time), and w_read/read, them against the probe's best pass
#   e_p50   the engine at its median step: R samples x weight bytes per token
#           over the median time between a sample's tokens (mdi-llm's
#           inter_token_s), so that slow minutes of a shared machine during
#           the run weigh as little as in the probe's best pass; p50/read is
#           it over the probe
# and the ratios engine/kernel (the engine's own overhead; with R ranks also
# the ring's idle time), kernel/read (the kernel on this pattern against the
# probe), engine/read (the issue's efficiency, with the probe taken in the
# same minute), engine/r_mean (the engine against the probe's rate over time)
# and p50/read (the engine's median step against the probe's best pass).
#   jobs/bench-onesample.sh [--dir DIR] [--rounds N] [--threads T] [--tokens N] [--ranks R]
# --threads is per rank. --dir holds the synthetic TinyLlama model (created
# once, 4.4 GB; default /tmp/mdi-bench, as jobs/bench.sh). Prints one line per
# round and the medians.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=/tmp/mdi-bench rounds=5 threads=1 tokens=48 ranks=1
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;; --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;; --tokens) tokens=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;;
    *) echo "bench-onesample.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
for v in "$rounds" "$threads" "$tokens" "$ranks"; do
  case $v in ''|*[!0-9]*|0) echo "bench-onesample.sh: --rounds, --threads, --tokens and --ranks take positive integers, got '$v'" >&2; exit 2 ;; esac
done
[ "$ranks" -le 22 ] || { echo "bench-onesample.sh: --ranks must be at most 22, the model's layers" >&2; exit 2; }
[ "$tokens" -ge 2 ] || { echo "bench-onesample.sh: --tokens must be at least 2 (the decode rate counts the tokens after the first)" >&2; exit 2; }
source "$here/jobs/lib_bench.sh"
out=$(mktemp -d /tmp/mdi-onesample.XXXXXX)
trap 'rm -rf "$out"' EXIT
layers=$(((22 + ranks / 2) / ranks))
launch=("$B/mdi-llm")
[ "$ranks" -eq 1 ] || launch=(mpirun -np "$ranks" "${MDI_MPIRUN_FLAGS[@]}" --bind-to none "$B/mdi-llm")
# R decode kernels at once, each for as many passes over its 22/R layers as a
# rank makes steps: prints the sum of their best passes and of their means,
# and the mean of their k/r_same. Fails if any of them fails.
kernels() {
  local pids=() k
  for k in $(seq 1 "$ranks"); do
    "$B/mdi-bench" decode-read --layers "$layers" --threads "$threads" \
      --reps $(((tokens * ranks + 1) / 2 * 2)) >"$out/k$k" &
    pids+=($!)
  done
  local bad=0
  for k in "${pids[@]}"; do wait "$k" || bad=1; done
  [ "$bad" -eq 0 ] || { echo "bench-onesample.sh: mdi-bench decode-read failed" >&2; return 1; }
  awk '$1 == "decode_kernel" { best += $2; mean += $5; nk++ } $1 == "decode_vs_read" { same += $3; n++ }
       END { if (nk != '"$ranks"' || n != '"$ranks"') exit 1; print best, mean, same / n }' "$out"/k[0-9]* ||
    { echo "bench-onesample.sh: mdi-bench decode-read printed no result" >&2; return 1; }
}
echo "# $ranks rank(s) x $threads thread(s), $ranks sample(s) in groups of 1, $tokens tokens each; GB/s of weights"
printf '%5s %8s %8s %8s %8s %8s %8s %13s %11s %8s %11s %13s %8s %8s %8s %8s %8s %11s\n' round read r_mean kernel k_best engine \
  tok/s engine/kernel kernel/read k/r_same engine/read engine/r_mean e_step e/r_same e_p50 p50/read w_read w_read/read
# "mean e/r_same w_read" of the engine's own step against reads of the same
# weights (one rank), into the file $1; "- - -" with several ranks
steps() {
  if [ "$ranks" -gt 1 ]; then echo "- - -" >"$1"; return 0; fi
  "$B/mdi-bench" engine-read --model "$model" --threads "$threads" --reps $(((tokens + 1) / 2 * 2)) >"$out/s" ||
    { echo "bench-onesample.sh: mdi-bench engine-read failed" >&2; return 1; }
  awk '$1 == "engine_step" { m = $5; n++ } $1 == "engine_vs_read" { r = $3; w = $9; n++ }
       END { if (n != 2) exit 1; print m, r, w }' "$out/s" >"$1" ||
    { echo "bench-onesample.sh: mdi-bench engine-read printed no result" >&2; return 1; }
}
# "best mean" of one read probe, into the file $1
probe() {
  "$B/mdi-bench" read --threads $((ranks * threads)) | awk '{ print $2, $5 }' >"$1" && [ -s "$1" ] ||
    { echo "bench-onesample.sh: mdi-bench read failed" >&2; return 1; }
}
for round in $(seq 1 "$rounds"); do
  probe "$out/p1" || exit 1
  read -r read_bw read_mean <"$out/p1"
  kernels >"$out/kr" || exit 1
  read -r k_best k_mean k_same <"$out/kr"
  steps "$out/st" || exit 1
  read -r s_mean s_same w_read <"$out/st"
  "${launch[@]}" --model "$model" --prompt "Once upon a time" --samples "$ranks" --group-size 1 \
    --max-tokens "$tokens" --temperature 0 --threads "$threads" --quiet --stats-json "$out/e.json" >/dev/null
  probe "$out/p2" || exit 1
  read -r after after_mean <"$out/p2"
  read -r read_bw read_mean < <(awk -v a="$read_bw" -v am="$read_mean" -v b="$after" -v bm="$after_mean" \
    'BEGIN { if (a > b) print a, am; else print b, bm }')
  rate=$(jq '.decode_tokens_per_s' "$out/e.json")
  step=$(jq '[.per_rank[].step_weight_bytes] | add' "$out/e.json")
  p50=$(jq '.inter_token_s.p50' "$out/e.json")
  awk -v r="$round" -v rd="$read_bw" -v rm="$read_mean" -v kb="$k_best" -v km="$k_mean" -v ks="$k_same" \
    -v t="$rate" -v s="$step" -v sm="$s_mean" -v ss="$s_same" -v p="$p50" -v n="$ranks" -v w="$w_read" \
    'BEGIN { e = t * s / 1e9; ep = p > 0 ? n * s / p / 1e9 : 0
             wr = "-"
             if (sm != "-") { sm = sprintf("%.2f", sm); ss = sprintf("%.3f", ss); wr = sprintf("%.3f", w / rd); w = sprintf("%.2f", w) }
             printf "%5d %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f %13.3f %11.3f %8.3f %11.3f %13.3f %8s %8s %8.2f %8.3f %8s %11s\n", r, rd, rm, km, kb, e, t, e / km, km / rd, ks, e / rd, e / rm, sm, ss, ep, ep / rd, w, wr }'
done | tee "$out/rows"
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf '# medians: engine/kernel %.3f, kernel/read %.3f, k/r_same %.3f, engine/read %.3f, engine/r_mean %.3f' \
  "$(awk '{ print $8 }' "$out/rows" | median)" "$(awk '{ print $9 }' "$out/rows" | median)" \
  "$(awk '{ print $10 }' "$out/rows" | median)" "$(awk '{ print $11 }' "$out/rows" | median)" \
  "$(awk '{ print $12 }' "$out/rows" | median)"
if [ "$ranks" -eq 1 ]; then
  printf ', e/r_same %.3f, w_read/read %.3f' "$(awk '{ print $14 }' "$out/rows" | median)" \
    "$(awk '{ print $18 }' "$out/rows" | median)"
fi
printf ', p50/read %.3f' "$(awk '{ print $16 }' "$out/rows" | median)"
echo
