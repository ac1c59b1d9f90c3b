#!/usr/bin/env bash
# stories260K converted from llama2.c and from GGUF reproduces the reference
# texts exactly, on 1 rank run directly and under mpirun with 1, 2, 3 and 5
# ranks, from a single file and from shards, cut at whole or half layers.
source "$(dirname "$0")/lib_e2e.sh"
need_models
M=$MDI_MODELS_DIR/stories260K

"$MDI_CONVERT" "$M/stories260K.bin" --tokenizer "$M/tok512.bin" -o "$TMP/s.h5" --quiet
"$MDI_CONVERT" "$M/stories260K.gguf" -o "$TMP/g.h5" --quiet

expect_eq "tokenize prompt 1" "1 403 407 261 378" "$("$MDI_LLM" --model "$TMP/s.h5" --tokenize "Once upon a time")"
expect_eq "tokenize prompt 2" "1 291 376 400 428" "$("$MDI_LLM" --model "$TMP/s.h5" --tokenize "The little dog")"

for model in s g; do
  out=$("$MDI_LLM" --model "$TMP/$model.h5" --prompt "Once upon a time" --temperature 0 --max-tokens 60 2>"$TMP/err")
  expect_eq "$model.h5 prompt 1, direct run" "$REF1" "$out"
  out=$("$MDI_LLM" --model "$TMP/$model.h5" --prompt "The little dog" --temperature 0 --max-tokens 60 2>"$TMP/err")
  expect_eq "$model.h5 prompt 2, direct run" "$REF2" "$out"
done

# A vocabulary without BOS ("none"): the prompt goes in without it and its echo
# keeps every word, with no leading space (as sentencepiece decodes it).
perl -0777 -pe 's/(bos_token_id\x04\x00\x00\x00)\x01\x00\x00\x00/$1\xff\xff\xff\xff/' \
  "$M/stories260K.gguf" >"$TMP/nobos.gguf"
"$MDI_CONVERT" "$TMP/nobos.gguf" -o "$TMP/nobos.h5" --quiet
expect_eq "no BOS: tokenize" "403 407 261 378" "$("$MDI_LLM" --model "$TMP/nobos.h5" --tokenize "Once upon a time")"
out=$("$MDI_LLM" --model "$TMP/nobos.h5" --prompt "Once upon a time" --temperature 0 --max-tokens 4 2>"$TMP/err")
case $out in "Once upon a time"?*) pass "no BOS: the echo keeps the first word" ;;
  *) fail "no BOS: output '$out' does not start with the prompt" ;; esac

for n in 1 2 3 5; do
  out=$(run_np "$n" --model "$TMP/s.h5" --prompt "Once upon a time" --samples 1 --temperature 0 --max-tokens 60)
  expect_eq "single file, $n ranks, prompt 1" "$REF1" "$out"
  "$MDI_CONVERT" "$M/stories260K.bin" --tokenizer "$M/tok512.bin" -o "$TMP/shards$n" --shards "$n" --quiet
  out=$(run_np "$n" --model "$TMP/shards$n" --prompt "The little dog" --samples 1 --temperature 0 --max-tokens 60)
  expect_eq "$n shards, $n ranks, prompt 2" "$REF2" "$out"
done

out=$(run_np 3 --model "$TMP/s.h5" --split 1,3,1 --prompt "Once upon a time" --samples 1 --temperature 0 --max-tokens 60)
expect_eq "explicit --split 1,3,1" "$REF1" "$out"

# Half layers: a rank may end after a layer's attention and the next start
# with its MLP, or hold half a layer alone (10 ranks: one half each), from the
# whole file and from shards cut the same way; both balances. Same text.
for spec in "2 2.5,2.5" "3 0.5,4,0.5" "4 1.5,1,1,1.5" "10 $(printf '0.5,%.0s' 1 2 3 4 5 6 7 8 9)0.5"; do
  read -r n split <<<"$spec"
  out=$(run_np "$n" --model "$TMP/s.h5" --split "$split" --prompt "Once upon a time" --samples 2 --temperature 0 --max-tokens 60)
  expect_eq "--split $split, sample 0" "$REF1" "$(sample_text 0 <(printf '%s\n' "$out"))"
  expect_eq "--split $split, sample 1" "$REF1" "$(sample_text 1 <(printf '%s\n' "$out"))"
done
"$MDI_CONVERT" "$M/stories260K.bin" --tokenizer "$M/tok512.bin" -o "$TMP/halves" --split 1.5,3.5 --quiet
out=$(run_np 2 --model "$TMP/halves" --prompt "The little dog" --samples 1 --temperature 0 --max-tokens 60 --stats-json "$TMP/hs.json")
expect_eq "shards of 1.5 and 3.5 layers, prompt 2" "$REF2" "$out"
expect_eq "stats: what each rank holds" \
  "\"holds\": \"layer 0 and layer 1's attention\" \"holds\": \"layer 1's MLP and layers 2-4\"" \
  "$(grep -o '"holds": "[^"]*"' "$TMP/hs.json" | tr '\n' ' ' | sed 's/ $//')"
for how in time memory; do
  out=$(run_np 3 --model "$TMP/s.h5" --balance "$how" --prompt "Once upon a time" --samples 1 --temperature 0 --max-tokens 60)
  expect_eq "--balance $how, 3 ranks" "$REF1" "$out"
done

# Ranks of different speeds: a rank given a third of the speed holds less;
# measured speeds (auto) are reported per rank; the text stays the reference.
holds() { grep -o '"holds": "[^"]*"' "$1" | tr '\n' ' ' | sed 's/ $//'; }
out=$(run_np 2 --model "$TMP/s.h5" --speeds 3,1 --prompt "Once upon a time" --samples 1 --temperature 0 --max-tokens 60 --stats-json "$TMP/sp.json")
expect_eq "--speeds 3,1" "$REF1" "$out"
expect_eq "--speeds 3,1: placement" "\"holds\": \"layers 0-3\" \"holds\": \"layer 4\"" "$(holds "$TMP/sp.json")"
out=$(run_np 2 --model "$TMP/s.h5" --speeds 1,3 --prompt "Once upon a time" --samples 1 --temperature 0 --max-tokens 60 --stats-json "$TMP/sp.json")
expect_eq "--speeds 1,3" "$REF1" "$out"
expect_eq "--speeds 1,3: placement" "\"holds\": \"layer 0's attention\" \"holds\": \"layer 0's MLP and layers 1-4\"" "$(holds "$TMP/sp.json")"
expect_eq "--speeds 1,3: speeds reported" '"speed": 0.333 "speed": 1.000' \
  "$(grep -o '"speed": [0-9.]*' "$TMP/sp.json" | tr '\n' ' ' | sed 's/ $//')"
out=$(run_np 3 --model "$TMP/s.h5" --speeds auto --prompt "Once upon a time" --samples 3 --temperature 0 --max-tokens 60 --stats-json "$TMP/sp.json")
for i in 0 1 2; do
  expect_eq "--speeds auto, 3 ranks, sample $i" "$REF1" "$(sample_text "$i" <(printf '%s\n' "$out"))"
done
probes=$(grep -o '"speed": [0-9.]*, "speed_probe_bytes_per_s": [0-9]*' "$TMP/sp.json" |
  awk -F'[:,] *' '$2 > 0 && $2 <= 1 && $4 > 1e6 { ok++; if ($2 == 1) top++ } END { print ok + 0, (top > 0) }')
expect_eq "--speeds auto: every rank measured, the fastest at 1" "3 1" "$probes"

# Default S = number of ranks: three greedy samples of one prompt, all the reference.
run_np 3 --model "$TMP/shards3" --prompt "Once upon a time" --temperature 0 --max-tokens 60 >"$TMP/multi"
for i in 0 1 2; do
  expect_eq "3 ranks, default 3 samples, sample $i" "$REF1" "$(sample_text "$i" "$TMP/multi")"
done
grep -q '^\[2\] (end: max-tokens, 60 tokens)$' "$TMP/multi" && pass "end record" || fail "end record missing"
run_np 2 --model "$TMP/s.h5" --prompt "Once upon a time" --max-tokens 1 --temperature 0 >"$TMP/one"
grep -q '^\[1\] (end: max-tokens, 1 token)$' "$TMP/one" && pass "end record, 1 token" || fail "end record: $(cat "$TMP/one")"

# Text out is valid UTF-8 whatever bytes the model samples (at temperature 100
# the byte pieces come in any order): ill-formed runs become U+FFFD.
for s in 1 4; do
  "$MDI_LLM" --model "$TMP/s.h5" --prompt "Once" --temperature 100 --top-p 1 --max-tokens 200 \
    --seed 3 --samples "$s" --quiet >"$TMP/hot" 2>"$TMP/err"
  if iconv -f UTF-8 -t UTF-8 "$TMP/hot" >/dev/null 2>&1; then pass "random bytes, $s sample(s): valid UTF-8 out"
  else fail "random bytes, $s sample(s): output is not valid UTF-8"; fi
done

# A line longer than 4096 bytes goes out in pieces cut between characters,
# the later ones marked "[i]+ ": 4095 a's, then a 3-byte character that would
# straddle the cut (a synthetic model with the Llama 2 tokenizer, context 4096).
printf '{"dim": 64, "hidden_dim": 128, "n_layers": 1, "n_heads": 4, "vocab_size": 32000, "max_seq_len": 4096}' >"$TMP/l2.json"
"$MDI_CONVERT" --synthetic "$TMP/l2.json" --tokenizer "$MDI_MODELS_DIR/llama2-tokenizer/tokenizer.model" \
  -o "$TMP/l2.h5" --quiet
as=$(printf 'a%.0s' $(seq 4095))
"$MDI_LLM" --model "$TMP/l2.h5" --prompt "${as}日本" --samples 2 --max-tokens 0 --quiet >"$TMP/long"
expect_eq "a 4101-byte line: two pieces, cut between characters" \
  "[0] $as|[0]+ 日本|[0] (end: max-tokens, 0 tokens)" "$(grep '^\[0\]' "$TMP/long" | tr '\n' '|' | sed 's/|$//')"

# A sample's text is its lines joined by newlines: a final newline gives an
# empty last line; a line that reads like an end record is text, since the end
# record is always a sample's last.
"$MDI_LLM" --model "$TMP/s.h5" --prompt $'Hi\n' --samples 2 --max-tokens 0 --quiet >"$TMP/nl"
expect_eq "text ending in a newline: an empty last line" "[0] Hi|[0] |[0] (end: max-tokens, 0 tokens)" \
  "$(grep '^\[0\]' "$TMP/nl" | tr '\n' '|' | sed 's/|$//')"
"$MDI_LLM" --model "$TMP/s.h5" --prompt "(end: eos, 7 tokens)" --samples 2 --max-tokens 0 --quiet >"$TMP/fake"
expect_eq "a line like an end record is text" "(end: eos, 7 tokens)" "$(sample_text 1 "$TMP/fake")"

# Without --max-tokens, a prompt that leaves fewer than 256 positions runs to
# the end of the context (512 positions: the prompt, then all but the last
# generated token). e2e_errors.sh checks that --max-tokens 256, given, is
# refused for the same prompt.
long=$(printf 'Once upon a time %.0s' $(seq 1 70))
n_long=$("$MDI_LLM" --model "$TMP/s.h5" --tokenize "$long" | wc -w)
run_np 2 --model "$TMP/s.h5" --prompt "$long" --samples 2 --temperature 0 >"$TMP/ctx"
expect_eq "default --max-tokens stops at the context's end" \
  "[0] (end: context-full, $((512 - n_long + 1)) tokens) [1] (end: context-full, $((512 - n_long + 1)) tokens)" \
  "$(grep -E '^\[[01]\] \(end: ' "$TMP/ctx" | tr '\n' ' ' | sed 's/ $//')"

# --stats-json: the decode rate counts the tokens after the first; every rank's
# working span lies within its wall time and its busy fractions within (0, 1].
run_np 2 --model "$TMP/s.h5" --prompt "Once upon a time" --samples 1 --temperature 0 \
  --max-tokens 10 --stats-json "$TMP/stats.json" >/dev/null
num() { grep -o "\"$1\": [0-9.e+-]*" "$TMP/stats.json" | head -1 | awk '{print $2}'; }
expect_eq "stats: tokens_generated" "10" "$(num tokens_generated)"
expect_eq "stats: decode_tokens" "9" "$(num decode_tokens)"
if awk -v d="$(num decode_s)" -v w="$(num wall_s)" 'BEGIN { exit !(d > 0 && d < w) }'; then
  pass "stats: 0 < decode_s < wall_s"
else
  fail "stats: decode_s $(num decode_s), wall_s $(num wall_s)"
fi
spans=$(grep -o '"wall_s": [0-9.]*, "busy_fraction": [0-9.]*, "active_s": [0-9.]*, "busy_active_fraction": [0-9.]*' "$TMP/stats.json" |
  awk -F'[:,] *' '$2 > 0 && $4 > 0 && $4 <= 1 && $6 > 0 && $6 <= $2 && $8 >= $4 && $8 <= 1.0001 { ok++ } END { print ok + 0 }')
expect_eq "stats: both ranks' spans and busy fractions consistent" "2" "$spans"
# Inter-token latency: one gap per token after a sample's first, ordered
# figures; with one sample the gaps tile the decode time, so that it lies
# between count x min and count x max (each printed to 1 us).
itl() { grep -o '"inter_token_s": {[^}]*}' "$1" | tr -d '"{},' |
  awk '{ print $3, $5, $7, $9, $11, $13 }'; }
read -r c lo p50 p90 p99 hi <<<"$(itl "$TMP/stats.json")"
expect_eq "stats: inter_token_s count, one sample" "9" "$c"
if awk -v c="$c" -v a="$lo" -v b="$p50" -v d="$p90" -v e="$p99" -v f="$hi" -v s="$(num decode_s)" \
  'BEGIN { exit !(a > 0 && a <= b && b <= d && d <= e && e <= f && c * (a - 1e-6) <= s && s <= c * (f + 1e-6)) }'; then
  pass "stats: 0 < min <= p50 <= p90 <= p99 <= max, and count x min <= decode_s <= count x max"
else
  fail "stats: inter_token_s $c $lo $p50 $p90 $p99 $hi, decode_s $(num decode_s)"
fi
run_np 2 --model "$TMP/s.h5" --prompt "Once upon a time" --samples 3 --temperature 0 \
  --max-tokens 10 --stats-json "$TMP/stats3.json" >/dev/null
expect_eq "stats: inter_token_s count, three samples" "27" "$(itl "$TMP/stats3.json" | awk '{ print $1 }')"
expect_eq "stats: the latency line on stderr" "1" \
  "$(grep -c "^mdi-llm: time between a sample's tokens: median [0-9.e+-]* ms, 90th percentile [0-9.e+-]* ms, most [0-9.e+-]* ms (27 gaps)\$" "$TMP/err")"

# Micro-batched groups: four greedy samples in groups of 1, 2 and 4 on 1 to 4
# ranks; every sample of every run is the reference text. The weights are
# packed for the group where the streaming product packs for that many rows
# (mdi-bench's default layout for them: groups of one always; 2 and 4 on
# AVX-512 builds), else row-major, and --stats-json says which.
for spec in "1 1" "1 2" "1 4" "2 1" "2 2" "2 4" "3 2" "4 1" "4 4"; do
  read -r n g <<<"$spec"
  run_np "$n" --model "$TMP/s.h5" --prompt "Once upon a time" --samples 4 --group-size "$g" \
    --temperature 0 --max-tokens 60 --stats-json "$TMP/groups.json" >"$TMP/groups"
  for i in 0 1 2 3; do
    expect_eq "$n ranks, group size $g, sample $i" "$REF1" "$(sample_text "$i" "$TMP/groups")"
  done
  layout=rows
  "$MDI_BUILD_DIR/mdi-bench" stream --rows "$g" --n 64 --k 64 --mb 1 --reps 1 | grep -q ' panel=64$' &&
    layout=panels
  [ "$g" -eq 1 ] && [ "$layout" != panels ] && fail "mdi-bench does not pack for one row"
  expect_eq "$n ranks, group size $g, weight layout" "\"weight_layout\": \"$layout\"," \
    "$(grep -o '"weight_layout": "[a-z]*",' "$TMP/groups.json")"
done
finish
