#!/usr/bin/env bash
# The paper's experiment on this machine: a synthetic TinyLlama-1.1B-geometry
# model (f32) on 1, 2 and 3 ranks with 1..8 samples, against the machine's own
# limits measured in the same run.
#   jobs/bench.sh [--dir DIR] [--out DIR] [--tokens N] [--configs "1x1 1x2 2x1 3x1"] [--samples "1 2 4 8"]
# --dir holds the model (created once, 4.4 GB; default /tmp/mdi-bench);
# --out gets bench.csv, runs/*.json and the PNG plots (default jobs/results).
# A config RxT is R ranks with T threads each.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=/tmp/mdi-bench out=$here/jobs/results tokens=24 configs="1x1 1x2 2x1 3x1" samples="1 2 4 8"
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;; --out) out=$2; shift 2 ;; --tokens) tokens=$2; shift 2 ;;
    --configs) configs=$2; shift 2 ;; --samples) samples=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[ -x "$here/build/mdi-llm" ] && [ -x "$here/build/mdi-bench" ] || "$here/jobs/setup.sh" "$here/build"
for tool in jq gnuplot; do
  command -v "$tool" >/dev/null || {
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get install -y -qq "$([ $tool = gnuplot ] && echo gnuplot-nox || echo jq)" >&2; }
done
source "$here/jobs/env.sh"
B=$here/build
mkdir -p "$dir" "$out/runs"
model=$dir/tinyllama-1.1b.h5
[ -f "$model" ] || "$B/mdi-convert" --synthetic tinyllama-1.1b -o "$model" --quiet
"$B/mdi-convert" --inspect "$model" | sed 's/^/# /'

# ---- the machine, measured now ------------------------------------------------------
bw1=$("$B/mdi-bench" read --threads 1 | awk '{print $2}')
bw2=$("$B/mdi-bench" read --threads 2 | awk '{print $2}')
triad2=$("$B/mdi-bench" triad --threads 2 | awk '{print $2}')
gemm1=$("$B/mdi-bench" sgemm --threads 1 --m 128 | awk '{print $2}')
gemm2=$("$B/mdi-bench" sgemm --threads 2 --m 128 | awk '{print $2}')
# weight bytes read per decode step: every layer plus the output head (f32)
wbytes=$(( (22 * 44044288 + 32000 * 2048) * 4 ))
echo "# read bandwidth: ${bw1} GB/s (1 thread), ${bw2} GB/s (2 threads); triad ${triad2} GB/s (2 threads)"
echo "# sgemm 128x5632x2048: ${gemm1} GFLOP/s (1 thread), ${gemm2} GFLOP/s (2 threads)"
echo "# weights read per decode step: $wbytes bytes"

# a prompt of exactly 8 tokens (byte-level tokenizer of the synthetic model)
prompt="Once up"
run() { # run LABEL RANKS THREADS S PROMPT TOKENS EXTRA...
  local label=$1 r=$2 t=$3 s=$4 p=$5 n=$6; shift 6
  mpirun -np "$r" "${MDI_MPIRUN_FLAGS[@]}" --bind-to none "$B/mdi-llm" --model "$model" \
    --prompt "$p" --samples "$s" --max-tokens "$n" --temperature 0 --threads "$t" --quiet \
    --stats-json "$out/runs/$label.json" "$@" >/dev/null
}

echo "config,ranks,threads,samples,group_size,tokens_per_s,first_token_s,busy_min,busy_max,peak_rss_max_mb,peak_rss_rank0_mb,bytes_per_token_hop,weight_gbs,bandwidth_gbs,efficiency,decode_tokens_per_s" >"$out/bench.csv"
printf '%-6s %3s %5s %7s %9s %8s %8s %9s %7s %5s\n' config S group tok/s dec_tok/s ttft_s busy_min rss_maxMB wire_B eff
for c in $configs; do
  r=${c%x*} t=${c#*x}
  # the machine is shared and drifts: the bound for a config is measured right before it
  bw=$("$B/mdi-bench" read --threads "$([ $((r * t)) -ge 2 ] && echo 2 || echo 1)" | awk '{print $2}')
  for s in $samples; do
    label="$c-s$s"
    run "$label" "$r" "$t" "$s" "$prompt" "$tokens"
    j=$out/runs/$label.json
    read -r g tps ttft busy_min busy_max rss_max rss0 sent gen dtps < <(jq -r '[.group_size, .tokens_per_s, .first_token_s,
        ([.per_rank[].busy_fraction]|min), ([.per_rank[].busy_fraction]|max),
        ([.per_rank[].peak_rss_bytes]|max/1048576|floor), (.per_rank[0].peak_rss_bytes/1048576|floor),
        (.per_rank[0].wire_bytes_per_token|floor), .tokens_generated, .decode_tokens_per_s] | @tsv' "$j")
    wire=$([ "$r" -gt 1 ] && echo "$sent" || echo 0)
    # weights stream once per group pass: decode tokens/s / group size passes a second
    wgbs=$(awk -v tps="$dtps" -v g="$g" -v w="$wbytes" 'BEGIN{printf "%.2f", tps / g * w / 1e9}')
    eff=$(awk -v x="$wgbs" -v b="$bw" 'BEGIN{printf "%.2f", x / b}')
    echo "$c,$r,$t,$s,$g,$tps,$ttft,$busy_min,$busy_max,$rss_max,$rss0,$wire,$wgbs,$bw,$eff,$dtps" >>"$out/bench.csv"
    printf '%-6s %3s %5s %7.2f %9.2f %8.3f %8.2f %9s %7s %5s\n' "$c" "$s" "$g" "$tps" "$dtps" "$ttft" "$busy_min" "$rss_max" "$wire" "$eff"
  done
done

# ---- the targets of issue 7, from the table above --------------------------------------
awk -F, 'NR > 1 { key = $1 "-" $4; dec[key] = $16; tot[key] = $6; eff[key] = $15; busy[key] = $8 }
  END {
    for (i = 1; i <= 2; i++) {
      c = "1x" i
      if ((c "-1") in eff) printf "# target: 1 sample, %s: %.0f%% of the bandwidth bound (>= 95%%)\n", c, 100 * eff[c "-1"]
      if ((c "-1") in dec && (c "-8") in dec && dec[c "-1"] > 0)
        printf "# target: 8 samples vs 1, %s: %.2fx decode, %.2fx whole run (>= 4x)\n", c, dec[c "-8"] / dec[c "-1"], tot[c "-8"] / tot[c "-1"]
    }
    for (s = 2; s <= 8; s *= 2)
      if (("2x1-" s) in eff) printf "# target: 2x1, S = %d: %.0f%% of the 2-core bound (>= 95%%), busy min %.2f (>= 0.90)\n", s, 100 * eff["2x1-" s], busy["2x1-" s]
  }' "$out/bench.csv"

# ---- prefill: a 128-token prompt, one token generated --------------------------------
long=$(head -c 127 /dev/zero | tr '\0' 'a')
for t in 1 2; do
  run "prefill-1x$t" 1 "$t" 1 "$long" 1
  ttft=$(jq -r .first_token_s "$out/runs/prefill-1x$t.json")
  gemm=$([ "$t" -eq 2 ] && echo "$gemm2" || echo "$gemm1")
  awk -v t="$ttft" -v g="$gemm" -v th="$t" 'BEGIN{f = 2 * 128 * (22 * 44044288 + 32000 * 2048 / 128) / t / 1e9;
    printf "# prefill 128 tokens, %d thread(s): %.3f s = %.1f GFLOP/s, %.0f%% of sgemm (%.1f GFLOP/s)\n", th, t, f, 100 * f / g, g}'
done

# ---- plots ------------------------------------------------------------------------
gnuplot <<GP
set datafile separator ","
set terminal pngcairo size 800,500
set output "$out/throughput.png"
set title "Throughput, synthetic TinyLlama-1.1B geometry (f32)"
set xlabel "samples in flight (S)"; set ylabel "tokens/s"; set key left top; set grid
plot for [c in "$configs"] "< grep '^".c.",' $out/bench.csv" using 4:6 with linespoints title c." (ranks x threads)"
set output "$out/memory.png"
set title "Peak RSS of the largest rank"; set xlabel "ranks"; set ylabel "MB"; set style fill solid
plot "< awk -F, 'NR > 1 && \$4 == 1' $out/bench.csv | sort -t, -k2n" using 2:10 with linespoints title "S = 1"
GP
echo "# wrote $out/bench.csv, $out/throughput.png, $out/memory.png"
