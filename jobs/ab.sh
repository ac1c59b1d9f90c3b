#!/usr/bin/env bash
# Two builds of mdi-llm against each other, in interleaved rounds, so that a
# code change is judged in the same minutes on a noisy machine:
#   jobs/ab.sh --old BUILD [--new BUILD] [--model FILE | --dir DIR] [--rounds N]
#              [--samples S] [--threads T] [--ranks R] [--tokens N] [--prompt P]
#              [--probe-mb N]
# BUILD is a build directory holding mdi-llm (--new defaults to this
# checkout's build/; without --model, jobs/setup.sh builds that first if it
# is missing, as the other benchmark scripts do). Each round probes the read
# bandwidth (mdi-bench read of the new build on ranks x threads threads, over
# --probe-mb MiB, default 1024), runs both builds (the old one first in odd
# rounds, the new one first in even rounds) and probes again. It prints a line
# per round as it ends: the decode tok/s of each, new/old, and each build's
# efficiency: weight bytes read per second (decode tok/s / group size x the
# ranks' step_weight_bytes) over the larger probe. After the last round, the
# medians and in how many rounds the new build was faster. The model is
# --model, or the synthetic TinyLlama-geometry model in --dir (made once,
# 4.4 GB; default /tmp/mdi-bench, as jobs/bench.sh). Several ranks start with
# $MDI_MPIEXEC if set (a launcher and its flags, as the tests set it), else
# mpirun with jobs/env.sh's flags.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
old="" new=$here/build dir=/tmp/mdi-bench model="" rounds=6 samples=1 threads=1 ranks=1 tokens=48
prompt="Once upon a time" probe_mb=1024 dir_given=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --old|--new|--model|--dir|--rounds|--samples|--threads|--ranks|--tokens|--prompt|--probe-mb)
      [ $# -ge 2 ] || { echo "ab.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in
        --old) old=$2 ;; --new) new=$2 ;; --model) model=$2 ;; --dir) dir=$2 dir_given=1 ;;
        --prompt) prompt=$2 ;;
        *) case $2 in ''|*[!0-9]*) echo "ab.sh: $1 takes a positive integer, got '$2'" >&2; exit 2 ;; esac
           [ $((10#$2)) -gt 0 ] || { echo "ab.sh: $1 takes a positive integer, got '$2'" >&2; exit 2; }
           v=$((10#$2))
           case "$1" in
             --rounds) rounds=$v ;; --samples) samples=$v ;; --threads) threads=$v ;;
             --ranks) ranks=$v ;; --tokens) tokens=$v ;; --probe-mb) probe_mb=$v ;;
           esac ;;
      esac
      shift 2 ;;
    *) echo "ab.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[ "$tokens" -ge 2 ] || { echo "ab.sh: --tokens must be at least 2 (the decode rate counts the tokens after the first)" >&2; exit 2; }
[ -n "$old" ] || { echo "ab.sh: --old BUILD is required (a build directory holding mdi-llm)" >&2; exit 2; }
[ -z "$model" ] || [ "$dir_given" -eq 0 ] || { echo "ab.sh: --model and --dir exclude each other" >&2; exit 2; }
[ -x "$old/mdi-llm" ] || { echo "ab.sh: $old/mdi-llm is not an executable file" >&2; exit 2; }
if [ -n "$model" ]; then
  [ -r "$model" ] || { echo "ab.sh: --model $model cannot be read" >&2; exit 2; }
  source "$here/jobs/env.sh"
else
  bench_tools=awk # lib_bench.sh installs what is missing; ab.sh needs no jq
  source "$here/jobs/lib_bench.sh"
fi
for f in mdi-llm mdi-bench; do
  [ -x "$new/$f" ] || { echo "ab.sh: $new/$f is not an executable file" >&2; exit 2; }
done
out=$(mktemp -d /tmp/mdi-ab.XXXXXX)
trap 'rm -rf "$out"' EXIT
launch=()
if [ "$ranks" -gt 1 ]; then
  if [ -n "${MDI_MPIEXEC:-}" ]; then read -r -a launch <<<"$MDI_MPIEXEC"; launch+=(-np "$ranks")
  else launch=(mpirun -np "$ranks" "${MDI_MPIRUN_FLAGS[@]}" --bind-to none); fi
fi

# run BUILD LABEL: one engine run; prints decode tok/s and the weight bytes of
# one group pass (the ranks' step_weight_bytes / group size), read from
# --stats-json (one top-level key per line, one line per rank)
run() {
  rm -f "$out/$2.json"
  ${launch[@]+"${launch[@]}"} "$1/mdi-llm" --model "$model" --prompt "$prompt" --samples "$samples" \
    --max-tokens "$tokens" --temperature 0 --threads "$threads" --quiet \
    --stats-json "$out/$2.json" >/dev/null 2>"$out/$2.err" || {
    echo "ab.sh: $1/mdi-llm failed:" >&2; cat "$out/$2.err" >&2; exit 1; }
  awk '/^  "decode_tokens_per_s": / { d = $2 + 0 }
       /^  "group_size": / { g = $2 + 0 }
       { s = $0
         while (match(s, /"step_weight_bytes": [0-9]+/)) {
           w += substr(s, RSTART + 21, RLENGTH - 21); s = substr(s, RSTART + RLENGTH) } }
       END { if (d <= 0) { print "decode_tokens_per_s is missing or 0 (did every sample stop at its first token?)"; exit 1 }
             if (g <= 0) { print "group_size is missing"; exit 1 }
             if (w <= 0) { print "step_weight_bytes is missing (a build older than 169ac18?)"; exit 1 }
             printf "%s %.0f\n", d, w / g }' "$out/$2.json" >"$out/$2.fig" || {
    echo "ab.sh: $1/mdi-llm: its --stats-json: $(cat "$out/$2.fig")" >&2; exit 1; }
  cat "$out/$2.fig"
}
probe() {
  "$new/mdi-bench" read --threads $((ranks * threads)) --mb "$probe_mb" | awk '{ print $2 }' || {
    echo "ab.sh: the read probe ($new/mdi-bench read) failed" >&2; exit 1; }
}

echo "# old $old, new $new; $ranks rank(s) x $threads thread(s), $samples sample(s), $tokens tokens; $model"
printf '%5s %8s %10s %10s %8s %8s %8s\n' round read old_tok/s new_tok/s new/old old_eff new_eff
for r in $(seq 1 "$rounds"); do
  before=$(probe)
  if [ $((r % 2)) -eq 1 ]; then a=$(run "$old" old); b=$(run "$new" new)
  else b=$(run "$new" new); a=$(run "$old" old); fi
  after=$(probe)
  echo "$r $before $after $a $b" | awk '{ bw = ($2 > $3 ? $2 : $3)
    printf "%5d %8.2f %10.3f %10.3f %8.3f %8.3f %8.3f\n", $1, bw, $4, $6, $6 / $4, $4 * $5 / (bw * 1e9), $6 * $7 / (bw * 1e9) }' |
    tee -a "$out/rounds"
done
awk '
  function median(v, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  { n++; ratio[n] = $5; eo[n] = $6; en[n] = $7; faster += $4 > $3 }
  END { printf "# medians: new/old %.3f, old_eff %.3f, new_eff %.3f; new faster in %d of %d rounds\n",
          median(ratio, n), median(eo, n), median(en, n), faster, n }' "$out/rounds"
