#!/usr/bin/env bash
# The benchmark tools on tiny sizes: every mdi-bench mode prints its line
# (decode-read and engine-read two) with positive values, bad arguments
# exit 2 with a message, and the job scripts refuse bad options before any
# work. (The numbers themselves belong to jobs/*.sh runs, not to a test: this
# machine is shared.)
source "$(dirname "$0")/lib_e2e.sh"
BENCH=$MDI_BUILD_DIR/mdi-bench
JOBS=$MDI_SOURCE_DIR/jobs

# mode_line NAME REGEX ARGS... : exit 0 and stdout is one line matching REGEX
mode_line() {
  local name=$1 re=$2 rc=0
  shift 2
  timeout 120 "$BENCH" "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
  if [ "$rc" -ne 0 ]; then fail "$name: exit $rc: $(head -3 "$TMP/err")"
  elif [ "$(wc -l <"$TMP/out")" -ne 1 ] || ! grep -qE "$re" "$TMP/out"; then
    fail "$name: output '$(cat "$TMP/out")' does not match $re"
  else pass "$name: $(cat "$TMP/out")"; fi
}
pos='[0-9]*[1-9][0-9]*\.[0-9]+|0*\.[0-9]*[1-9][0-9]*' # a positive decimal
mode_line "read" "^read_bandwidth ($pos) GB/s mean ($pos) GB/s threads=1$" read --mb 16 --reps 1
# the read probe's mean pass is never above its best
if timeout 120 "$BENCH" read --mb 16 --reps 4 >"$TMP/out" 2>"$TMP/err" &&
  awk '$1 == "read_bandwidth" && $5 + 0 > 0 && $5 + 0 <= $2 + 0 { ok = 1 } END { exit !ok }' "$TMP/out"; then
  pass "read: mean <= best: $(cat "$TMP/out")"
else
  fail "read: mean not in (0, best]: '$(cat "$TMP/out" "$TMP/err")'"
fi
mode_line "triad" "^triad_bandwidth ($pos) GB/s threads=1$" triad --mb 16 --reps 1
mode_line "sgemm" "^sgemm ($pos) GFLOP/s m=8 n=64 k=64 threads=1 blis=[a-z0-9_]+ panel=0$" sgemm --m 8 --n 64 --k 64 --reps 3
# --panel packs W as the engine does for a group; mdi_matmul unpacks it for BLIS
mode_line "sgemm packed" "^sgemm ($pos) GFLOP/s m=8 n=64 k=100 threads=1 blis=[a-z0-9_]+ panel=48$" sgemm --m 8 --n 64 --k 100 --panel 48 --reps 2
mode_line "stream" "^stream_kernel ($pos) GB/s rows=1 threads=1 panel=64$" stream --n 64 --k 64 --mb 8 --reps 1
# by default, laid out as the engine lays it out for the rows: packed for a few
# rows where the walker takes them (AVX-512 builds), otherwise row-major
mode_line "stream 2 rows" "^stream_kernel ($pos) GB/s rows=2 threads=1 panel=(64|0)$" stream --rows 2 --n 64 --k 64 --mb 8 --reps 1
mode_line "stream 8 rows" "^stream_kernel ($pos) GB/s rows=8 threads=1 panel=0$" stream --rows 8 --n 64 --k 64 --mb 8 --reps 1
mode_line "stream row-major" "^stream_kernel ($pos) GB/s rows=2 threads=1 panel=0$" stream --rows 2 --n 64 --k 64 --mb 8 --reps 1 --panel 0
mode_line "stream paneled" "^stream_kernel ($pos) GB/s rows=1 threads=1 panel=48$" stream --n 64 --k 100 --mb 8 --reps 1 --panel 48
mode_line "stream long rows" "^stream_kernel ($pos) GB/s rows=1 threads=1 panel=[1-9][0-9]*$" stream --n 8 --k 5000 --mb 8 --reps 1
mode_line "decode" "^decode_kernel ($pos) GB/s mean ($pos) GB/s tok_s ($pos) layers=1 threads=1$" decode --layers 1 --reps 2
# the best pass is at least the mean
if awk '{ exit !($2 >= $5) }' "$TMP/out"; then pass "decode: best >= mean"; else fail "decode: best < mean: $(cat "$TMP/out")"; fi
mode_line "attention" "^attention ($pos) ms per token pos=40 layers=2 heads=32 kv_heads=4 head_dim=64$" attention --pos 40 --layers 2 --reps 2
# paired_lines NAME FIRST SECOND ARGS... : exit 0 and two lines, FIRST (its
# best pass >= its mean) and SECOND, the kernel's or the engine's step's rate
# against reads of the same weights (min <= median <= max)
paired_lines() {
  local name=$1 first=$2 second=$3 rc=0
  shift 3
  timeout $((120 * E2E_SCALE)) "$BENCH" "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
  if [ "$rc" -eq 0 ] && [ "$(wc -l <"$TMP/out")" -eq 2 ] &&
    grep -qE "$first" <(head -1 "$TMP/out") && grep -qE "$second" <(tail -1 "$TMP/out") &&
    awk 'NR == 1 { ok = $2 >= $5 } NR == 2 { ok = ok && $5 <= $3 && $3 <= $7 } END { exit !ok }' "$TMP/out"; then
    pass "$name: $(tr '\n' ' ' <"$TMP/out")"
  else fail "$name: exit $rc: '$(cat "$TMP/out" "$TMP/err")'"; fi
}
# decode-read: the decode line, then the kernel against reads of the same
# weights over 4 / 2 = 2 groups
paired_lines "decode-read" "^decode_kernel ($pos) GB/s mean ($pos) GB/s tok_s ($pos) layers=1 threads=1$" \
  "^decode_vs_read median ($pos) min ($pos) max ($pos) read_mean ($pos) GB/s groups 2$" decode-read --layers 1 --reps 4

# usage NAME PATTERN CMD... : exit 2, stderr matches PATTERN
usage() {
  local name=$1 pat=$2 rc=0
  shift 2
  timeout 60 "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
  if [ "$rc" -ne 2 ]; then fail "$name: exit $rc, expected 2: $(head -3 "$TMP/err")"
  elif ! grep -qE -- "$pat" "$TMP/err"; then fail "$name: stderr lacks '$pat': $(cat "$TMP/err")"
  else pass "$name"; fi
}
usage "mdi-bench without a mode" "usage: mdi-bench read\|triad\|sgemm\|stream\|decode\|decode-read\|engine-read\|attention$" "$BENCH"
usage "mdi-bench unknown mode" "usage: mdi-bench" "$BENCH" sum
usage "mdi-bench zero reps" "--reps '0' must be a positive integer" "$BENCH" decode --reps 0
usage "mdi-bench decode-read odd reps" "decode-read --reps 3 must be even" "$BENCH" decode-read --layers 1 --reps 3
usage "mdi-bench attention at position 0" "--pos '0' must be a positive integer" "$BENCH" attention --pos 0
usage "mdi-bench trailing garbage" "--layers '2x' must be a positive integer" "$BENCH" decode --layers 2x
usage "mdi-bench unknown option" "unknown option '--bogus'" "$BENCH" read --bogus 1
usage "mdi-bench option without value" "--mb needs a value" "$BENCH" read --mb
usage "mdi-bench panel not a multiple of 16" "--panel '40' must be 0 or a multiple of 16" "$BENCH" stream --panel 40
usage "mdi-bench negative panel" "--panel '-16' must be 0 or a multiple of 16" "$BENCH" stream --panel -16
rc=0; BLIS_ARCH_TYPE=99 timeout 60 "$BENCH" sgemm >"$TMP/out" 2>"$TMP/err" || rc=$?
if [ "$rc" -eq 1 ] && grep -q "^mdi-bench: BLIS_ARCH_TYPE=99 is not a BLIS kernel set" "$TMP/err"; then
  pass "mdi-bench refuses BLIS_ARCH_TYPE=99"
else fail "mdi-bench with BLIS_ARCH_TYPE=99: exit $rc: $(head -3 "$TMP/err")"; fi
usage "bench-onesample.sh zero rounds" "take positive integers, got '0'" bash "$JOBS/bench-onesample.sh" --rounds 0
usage "bench-onesample.sh zero ranks" "take positive integers, got '0'" bash "$JOBS/bench-onesample.sh" --ranks 0
usage "bench-onesample.sh more ranks than layers" "--ranks must be at most 22" bash "$JOBS/bench-onesample.sh" --ranks 23
usage "bench-onesample.sh one token" "--tokens must be at least 2" bash "$JOBS/bench-onesample.sh" --tokens 1
usage "bench-onesample.sh unknown option" "unknown option '--fast'" bash "$JOBS/bench-onesample.sh" --fast
usage "bench-hetero.sh quota out of range" "--quota takes a percentage 5-100, got '3'" bash "$JOBS/bench-hetero.sh" --quota 3
help=$(bash "$JOBS/bench-onesample.sh" --help)
if grep -q "jobs/bench-onesample.sh \[--dir DIR\].*\[--ranks R\]" <<<"$help" &&
  [ "$(tail -1 <<<"$help")" = "# round and the medians." ]; then
  pass "bench-onesample.sh --help"
else
  fail "bench-onesample.sh --help lacks its usage line or its last line"
fi
# run.sh --help prints its whole header comment and nothing after it
if bash "$JOBS/run.sh" --help >"$TMP/out" 2>&1 && grep -q '^#   jobs/run.sh -n N' "$TMP/out" &&
  [ "$(tail -1 "$TMP/out")" = "#                                      (BLIS_ARCH_TYPE when set: jobs/env.sh)" ]; then
  pass "run.sh --help"
else
  fail "run.sh --help: $(tail -2 "$TMP/out")"
fi
# jobs/env.sh under the callers' `set -euo pipefail`, for a user who is not
# root on a CPU that is not AMD (id and grep stand in): it must not stop the
# caller, and it passes BLIS_ARCH_TYPE to mpirun only when it is set.
env_flags() {
  env -u BLIS_ARCH_TYPE ${1:+BLIS_ARCH_TYPE=$1} bash -c 'set -euo pipefail
    id() { echo 1000; }; grep() { return 1; }
    source "$1"; echo "flags: ${MDI_MPIRUN_FLAGS[*]} arch: ${BLIS_ARCH_TYPE:-unset}"' _ "$JOBS/env.sh" 2>&1 || echo "exit $?"
}
out=$(env_flags "")
if [ "$out" = "flags: --mca mpi_yield_when_idle 1 --oversubscribe -x OMP_NUM_THREADS arch: unset" ]; then
  pass "env.sh: not root, BLIS_ARCH_TYPE unset: $out"
else
  fail "env.sh: not root, BLIS_ARCH_TYPE unset: '$out'"
fi
out=$(env_flags 3)
if [ "$out" = "flags: --mca mpi_yield_when_idle 1 --oversubscribe -x OMP_NUM_THREADS -x BLIS_ARCH_TYPE arch: 3" ]; then
  pass "env.sh: BLIS_ARCH_TYPE set: $out"
else
  fail "env.sh: BLIS_ARCH_TYPE set: '$out'"
fi
# bench-onesample.sh stops at a failed probe or kernel run, naming it, with
# no row: a copy of the scripts with a fake build (its mdi-bench fails in the
# mode $FAKE_FAIL; with FAKE_FAIL=silent, decode-read prints nothing) and a
# placeholder model, so no 4.4 GB model is made.
mkdir -p "$TMP/co/jobs" "$TMP/co/build" "$TMP/co/bin" "$TMP/co/dir"
cp "$JOBS/bench-onesample.sh" "$JOBS/lib_bench.sh" "$JOBS/env.sh" "$TMP/co/jobs/"
printf '#!/bin/sh\nexit 0\n' >"$TMP/co/build/mdi-llm"
# jq answers the engine's decode rate (7 tok/s), its median time between a
# sample's tokens (0.15 s) and its weight bytes per token
printf '#!/bin/sh\ncase "$1" in .decode_tokens_per_s) echo 7.0 ;; .inter_token_s.p50) echo 0.15 ;; *) echo 4140000000 ;; esac\n' >"$TMP/co/bin/jq"
cat >"$TMP/co/build/mdi-bench" <<'FAKE'
#!/bin/sh
[ "$FAKE_FAIL" = "$1" ] && { echo "mdi-bench: fake failure" >&2; exit 3; }
[ "$FAKE_FAIL" = silent ] && [ "$1" = decode-read ] && exit 0
case $1 in
  read) echo "read_bandwidth 30.0 GB/s mean 28.0 GB/s threads=1" ;;
  decode-read) echo "decode_kernel 29.0 GB/s mean 27.0 GB/s tok_s 6.5 layers=22 threads=1"
    echo "decode_vs_read median 0.98 min 0.95 max 1.01 read_mean 27.5 GB/s groups 2" ;;
  engine-read) echo "engine_step 30.0 GB/s mean 28.5 GB/s tok_s 6.9 layers=22 threads=1"
    echo "engine_vs_read median 0.99 min 0.97 max 1.02 read_mean 28.8 GB/s groups 24" ;;
esac
FAKE
chmod +x "$TMP/co/build/"* "$TMP/co/bin/jq"
touch "$TMP/co/dir/tinyllama-1.1b.h5"
for mode in read decode-read engine-read silent; do
  rc=0
  FAKE_FAIL=$mode PATH="$TMP/co/bin:$PATH" timeout 60 bash "$TMP/co/jobs/bench-onesample.sh" --dir "$TMP/co/dir" \
    --rounds 2 >"$TMP/out" 2>"$TMP/err" || rc=$?
  want="mdi-bench $mode failed"
  [ "$mode" = silent ] && want="mdi-bench decode-read printed no result"
  if [ "$rc" -eq 1 ] && grep -q "^bench-onesample.sh: $want$" "$TMP/err" && ! grep -q '^ *1 ' "$TMP/out"; then
    pass "bench-onesample.sh stops: $want"
  else
    fail "bench-onesample.sh with mdi-bench $mode failing: exit $rc, stdout $(tail -2 "$TMP/out"), stderr $(head -3 "$TMP/err")"
  fi
done
rc=0
FAKE_FAIL=none PATH="$TMP/co/bin:$PATH" timeout 60 bash "$TMP/co/jobs/bench-onesample.sh" --dir "$TMP/co/dir" \
  --rounds 1 >"$TMP/out" 2>"$TMP/err" || rc=$?
# engine 7 x 4.14 = 28.98 GB/s against probes of 30 (mean 28) and a kernel of
# 27 (best 29); the engine's own step 28.5 GB/s, 0.99 of reads beside it; at
# its median step 4.14 / 0.15 = 27.6 GB/s, 0.92 of the probe; the reads of
# the weights beside the engine's step 28.8 GB/s, 0.96 of the probe
expect_eq "bench-onesample.sh with a fake build that works: the row's figures and the medians" \
  "0|1 30.00 28.00 27.00 29.00 28.98 7.00 1.073 0.900 0.980 0.966 1.035 28.50 0.990 27.60 0.920 28.80 0.960
# medians: engine/kernel 1.073, kernel/read 0.900, k/r_same 0.980, engine/read 0.966, engine/r_mean 1.035, e/r_same 0.990, w_read/read 0.960, p50/read 0.920" \
  "$rc|$(grep -E '^ *1 |^# medians' "$TMP/out" | tr -s ' ' | sed 's/^ //')"

# with 2 ranks (a fake mpirun): two kernels summed (27 + 27, best 29 + 29),
# no engine-read (its columns '-') and no e/r_same median; two samples' tokens
# per median gap: 2 x 4.14 / 0.15 = 55.2 GB/s
printf '#!/bin/sh\nexit 0\n' >"$TMP/co/bin/mpirun"
chmod +x "$TMP/co/bin/mpirun"
rc=0
FAKE_FAIL=none PATH="$TMP/co/bin:$PATH" timeout 60 bash "$TMP/co/jobs/bench-onesample.sh" --dir "$TMP/co/dir" \
  --rounds 1 --ranks 2 >"$TMP/out" 2>"$TMP/err" || rc=$?
expect_eq "bench-onesample.sh --ranks 2 with a fake build: the row and the medians" \
  "0|1 30.00 28.00 54.00 58.00 28.98 7.00 0.537 1.800 0.980 0.966 1.035 - - 55.20 1.840 - -
# medians: engine/kernel 0.537, kernel/read 1.800, k/r_same 0.980, engine/read 0.966, engine/r_mean 1.035, p50/read 1.840" \
  "$rc|$(grep -E '^ *1 |^# medians' "$TMP/out" | tr -s ' ' | sed 's/^ //')"

# jobs/ab.sh: option errors before any work, then real rounds on stories260K
usage "ab.sh without --old" "--old BUILD is required" bash "$JOBS/ab.sh"
usage "ab.sh --old without mdi-llm" "$TMP/mdi-llm is not an executable file" bash "$JOBS/ab.sh" --old "$TMP"
usage "ab.sh --old without a value" "--old needs a value" bash "$JOBS/ab.sh" --old
usage "ab.sh zero rounds" "--rounds takes a positive integer, got '0'" bash "$JOBS/ab.sh" --old "$MDI_BUILD_DIR" --rounds 0
usage "ab.sh letters for threads" "--threads takes a positive integer, got '2x'" bash "$JOBS/ab.sh" --old "$MDI_BUILD_DIR" --threads 2x
usage "ab.sh one token" "--tokens must be at least 2" bash "$JOBS/ab.sh" --old "$MDI_BUILD_DIR" --tokens 1
usage "ab.sh --model and --dir" "--model and --dir exclude each other" bash "$JOBS/ab.sh" --old "$MDI_BUILD_DIR" --model "$TMP/none.h5" --dir "$TMP"
usage "ab.sh unreadable model" "--model $TMP/none.h5 cannot be read" \
  bash "$JOBS/ab.sh" --old "$MDI_BUILD_DIR" --new "$MDI_BUILD_DIR" --model "$TMP/none.h5"
usage "ab.sh unknown option" "unknown option '--fast'" bash "$JOBS/ab.sh" --fast
if bash "$JOBS/ab.sh" --help | grep -q "^  jobs/ab.sh --old BUILD \[--new BUILD\]"; then pass "ab.sh --help"
else fail "ab.sh --help lacks its usage line"; fi

if [ -f "$MDI_MODELS_DIR/stories260K/stories260K.bin" ]; then
  "$MDI_CONVERT" "$MDI_MODELS_DIR/stories260K/stories260K.bin" --tokenizer "$MDI_MODELS_DIR/stories260K/tok512.bin" \
    -o "$TMP/s.h5" --quiet
  # engine-read: the engine's decode step on stories260K (5 layers), 6 steps
  # in 3 groups framed by reads of the same weights
  paired_lines "engine-read" "^engine_step ($pos) GB/s mean ($pos) GB/s tok_s ($pos) layers=5 threads=2$" \
    "^engine_vs_read median ($pos) min ($pos) max ($pos) read_mean ($pos) GB/s groups 3$" \
    engine-read --model "$TMP/s.h5" --threads 2
  usage "mdi-bench engine-read without a model" "engine-read needs --model FILE" "$BENCH" engine-read
  usage "mdi-bench engine-read odd reps" "engine-read --reps 5 must be even" "$BENCH" engine-read --model "$TMP/s.h5" --reps 5
  usage "mdi-bench engine-read beyond the context" "engine-read --reps 514: the model's context holds 512 positions" \
    "$BENCH" engine-read --model "$TMP/s.h5" --reps 514
  expect_fail "mdi-bench engine-read of a missing file" "^mdi-bench: $TMP/none.h5: " "$BENCH" engine-read --model "$TMP/none.h5"
  "$MDI_CONVERT" "$MDI_MODELS_DIR/stories260K/stories260K.bin" --tokenizer "$MDI_MODELS_DIR/stories260K/tok512.bin" \
    -o "$TMP/sh" --shards 2 --quiet
  expect_fail "mdi-bench engine-read of one shard" "holds half-layers \[0, [0-9]+\) of 10: engine-read needs a whole model in one file" \
    "$BENCH" engine-read --model "$(ls "$TMP"/sh/*.h5 | head -1)"
  # ab_run ARGS... : jobs/ab.sh on stories260K with small probes; exit status in $rc
  ab_run() {
    rc=0
    timeout $((150 * E2E_SCALE)) bash "$JOBS/ab.sh" --model "$TMP/s.h5" --probe-mb 32 "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
  }
  row='^ +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$'
  ab_run --old "$MDI_BUILD_DIR" --new "$MDI_BUILD_DIR" --rounds 3 --tokens 8 --ranks 2 --samples 2
  # the summary agrees with the rows: "faster" counts the rows where new > old
  want=$(awk '$1 ~ /^[0-9]+$/ { n++; f += $4 > $3 } END { printf "new faster in %d of %d rounds", f, n }' "$TMP/out")
  if [ "$rc" -eq 0 ] && [ "$(grep -cE "$row" "$TMP/out")" -eq 3 ] &&
     grep -qE "^# medians: new/old [0-9.]+, old_eff [0-9.]+, new_eff [0-9.]+; $want\$" "$TMP/out"; then
    pass "ab.sh: 3 rounds on 2 ranks, one build against itself ($want)"
  else fail "ab.sh: exit $rc: $(cat "$TMP/out" "$TMP/err" | head -8)"; fi
  # a new build that fails on its second run: round 1's row, then the failure, no summary
  mkdir -p "$TMP/broken"
  ln -sf "$MDI_BUILD_DIR/mdi-bench" "$TMP/broken/mdi-bench"
  printf '#!/bin/sh\nif [ -e "%s" ]; then echo "broken build" >&2; exit 3; fi\ntouch "%s"\nexec "%s" "$@"\n' \
    "$TMP/broken/ran" "$TMP/broken/ran" "$MDI_LLM" >"$TMP/broken/mdi-llm"
  chmod +x "$TMP/broken/mdi-llm"
  ab_run --old "$MDI_BUILD_DIR" --new "$TMP/broken" --rounds 3 --tokens 4
  if [ "$rc" -eq 1 ] && grep -q "ab.sh: $TMP/broken/mdi-llm failed:" "$TMP/err" && grep -q "^broken build$" "$TMP/err" &&
     [ "$(grep -cE "$row" "$TMP/out")" -eq 1 ] && ! grep -q "medians" "$TMP/out"; then
    pass "ab.sh: a build failing in round 2 stops the comparison after round 1, without a summary"
  else fail "ab.sh with a build failing in round 2: exit $rc: $(cat "$TMP/out" "$TMP/err" | head -8)"; fi
elif [ "${CI:-}" = true ]; then fail "$MDI_MODELS_DIR/stories260K is missing (CI=true: models are required)"
else echo "SKIP: ab.sh runs: $MDI_MODELS_DIR/stories260K is missing"; fi
finish
