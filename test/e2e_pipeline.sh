#!/usr/bin/env bash
# The recurrent pipeline keeps every sample's text independent of the number
# of ranks, the group size and the samples beside it; samples that end early
# (EOS) leave the others unaffected.
source "$(dirname "$0")/lib_e2e.sh"
need_models
M=$MDI_MODELS_DIR/stories260K
"$MDI_CONVERT" "$M/stories260K.bin" --tokenizer "$M/tok512.bin" -o "$TMP/s.h5" --quiet
printf '%s\n' "Once upon a time" "The little dog" "Tom and Sue went to the park" "A big red" >"$TMP/prompts"
mapfile -t prompts <"$TMP/prompts"

# check_run LABEL TEMP MAXTOK SEED NRANKS EXTRA... : every sample equals its one-sample run
check_run() {
  local label=$1 temp=$2 maxtok=$3 seed=$4 n=$5; shift 5
  run_np "$n" --model "$TMP/s.h5" --prompt-file "$TMP/prompts" --temperature "$temp" \
    --max-tokens "$maxtok" --seed "$seed" "$@" >"$TMP/multi"
  for i in 0 1 2 3; do
    local want
    want=$(cat "$TMP/single.$temp.$maxtok.$seed.$i")
    expect_eq "$label: sample $i" "$want" "$(sample_text "$i" "$TMP/multi")"
  done
}

for spec in "0 60 1" "0.8 80 7" "1.0 400 3"; do
  read -r temp maxtok seed <<<"$spec"
  for i in 0 1 2 3; do
    "$MDI_LLM" --model "$TMP/s.h5" --prompt "${prompts[$i]}" --temperature "$temp" \
      --max-tokens "$maxtok" --seed "$seed" >"$TMP/single.$temp.$maxtok.$seed.$i" 2>"$TMP/err"
  done
done

check_run "greedy, 2 ranks" 0 60 1 2
check_run "greedy, 3 ranks" 0 60 1 3
check_run "T=0.8 seed 7, 2 ranks" 0.8 80 7 2
check_run "T=0.8 seed 7, 3 ranks" 0.8 80 7 3
check_run "T=0.8 seed 7, 1 rank, group size 4" 0.8 80 7 1 --group-size 4
check_run "T=0.8 seed 7, 2 ranks, group size 2" 0.8 80 7 2 --group-size 2
check_run "T=0.8 seed 7, 3 ranks, prefill chunk 3" 0.8 80 7 3 --prefill-chunk 3
# prompt rows stream while a message holds at most this many rows (256 with
# AVX-512, 4 with AVX2, 1 without vectors), else they go through BLIS
max_stream=$("$MDI_LLM" --help | grep -oE "most [0-9]+ rows" | grep -oE "[0-9]+")
kernel() { if [ "$1" -le "$max_stream" ]; then echo "$1 stream"; else echo "$1 blis"; fi; }
# short prompts: --prefill-chunk is cut to a group's prompt rows, 2 samples x
# 14 tokens (BOS + "Tom and Sue went to the park"), not a buffer of 2^31 rows;
# with AVX-512 the prompt rows still stream
check_run "greedy, 2 ranks, prefill chunk 2147483647" 0 60 1 2 --prefill-chunk 2147483647 \
  --stats-json "$TMP/big.json"
expect_eq "prefill chunk 2147483647 on short prompts: message rows, kernel" "$(kernel 28)" \
  "$(grep -oE '"(message_rows|prompt_kernel)": "?[a-z0-9]+' "$TMP/big.json" | sed -E 's/.*: "?//' | xargs)"

# a 184-token prompt in 2 samples, messages of up to 300 rows: prompt rows go
# through BLIS instead of the streaming kernel (tensor.h,
# mdi_matmul_stream_max_rows); greedy text is the same as in 16-row chunks,
# which stream with AVX-512
long="${REF1%%$'\n'*}"; long="$long $long $long"
for chunk in 16 300; do
  run_np 2 --model "$TMP/s.h5" --prompt "$long" --samples 2 --group-size 2 --temperature 0 \
    --max-tokens 40 --prefill-chunk "$chunk" --stats-json "$TMP/long$chunk.json" >"$TMP/long$chunk"
done
expect_eq "long prompt through BLIS (chunk 300): message rows, kernel" "$(kernel 300)" \
  "$(grep -oE '"(message_rows|prompt_kernel)": "?[a-z0-9]+' "$TMP/long300.json" | sed -E 's/.*: "?//' | xargs)"
expect_eq "long prompt in 16-row chunks: message rows, kernel" "$(kernel 16)" \
  "$(grep -oE '"(message_rows|prompt_kernel)": "?[a-z0-9]+' "$TMP/long16.json" | sed -E 's/.*: "?//' | xargs)"
if [ -s "$TMP/long16" ]; then
  expect_eq "long prompt: BLIS and streamed prefill give the same greedy text" "$(cat "$TMP/long16")" "$(cat "$TMP/long300")"
else fail "long prompt: no text"; fi

# One sample whose prompt comes in chunks of 2 rows on 3 ranks: the chunks
# need no sampled token, so rank 0 sends the next ones before the first comes
# back (up to 3 messages out at once, one per rank), and the text is unchanged.
run_np 3 --model "$TMP/s.h5" --prompt "${prompts[2]}" --samples 1 --temperature 0 \
  --max-tokens 60 --seed 1 --prefill-chunk 2 --stats-json "$TMP/chunks.json" >"$TMP/chunks"
expect_eq "prompt chunks in flight together: text" "$(cat "$TMP/single.0.60.1.2")" "$(cat "$TMP/chunks")"
expect_eq "prompt chunks in flight together: max_in_flight" "3" \
  "$(grep -o '"max_in_flight": [0-9]*' "$TMP/chunks.json" | awk '{print $2}')"

# Long sampled stories end at EOS at different times; the others go on unaffected.
check_run "T=1 seed 3, 400 tokens, 3 ranks" 1.0 400 3 3
n_eos=$(grep -c '(end: eos, ' "$TMP/multi" || true)
lengths=$(grep -oE '\(end: [a-z-]+, [0-9]+ tokens\)' "$TMP/multi" | sort -u | wc -l)
if [ "$n_eos" -ge 1 ] && [ "$lengths" -ge 2 ]; then
  pass "samples ended at different lengths ($n_eos by EOS)"
else
  fail "expected some samples to end early by EOS (eos: $n_eos, distinct endings: $lengths)"
  cat "$TMP/multi" | grep end
fi
finish
