#!/usr/bin/env bash
# The Hugging Face checkpoint stories260K-hf through mdi-convert and mdi-llm:
# converted as one file and as 2 shards (f32), greedy generation reproduces
# both reference texts exactly on 1 rank and on 2 ranks; f16 and bf16
# conversions generate (and, as measured, still give the reference texts);
# --inspect reports geometry, dtype, layer (or half-layer) range, model id, tokenizer size and
# bytes; converting twice gives byte-identical files; a checkpoint without
# tokenizer.model is a clear error; progress goes to stderr (lines when not a
# terminal, a bar on a terminal, nothing with --quiet).
source "$(dirname "$0")/lib_e2e.sh"
need_models
HF=$MDI_MODELS_DIR/stories260K-hf
if [ ! -f "$HF/model.safetensors" ] || [ ! -f "$HF/tokenizer.model" ]; then
  if [ "${CI:-}" = true ]; then echo "FAIL: $HF is missing (CI=true: models are required)"; exit 1; fi
  echo "SKIP: $HF is missing"
  exit 0
fi
P1="Once upon a time"
P2="The little dog"

# check NAME CMD...: pass when CMD succeeds
check() {
  local name=$1; shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}
# greedy PROMPT ARGS...: the text of one greedy sample of 60 tokens on 1 rank (no mpirun)
greedy() {
  local prompt=$1; shift
  timeout 120 "$MDI_LLM" "$@" --prompt "$prompt" --temperature 0 --max-tokens 60 2>"$TMP/err"
}
# greedy_np N PROMPT ARGS...: the same under mpirun with N ranks
greedy_np() {
  local n=$1 prompt=$2; shift 2
  run_np "$n" "$@" --prompt "$prompt" --samples 1 --temperature 0 --max-tokens 60
}

# ---- f32: one file and two shards -----------------------------------------------------
"$MDI_CONVERT" "$HF" -o "$TMP/hf.h5" --quiet
"$MDI_CONVERT" "$HF" -o "$TMP/hf2" --shards 2 --quiet
expect_eq "tokenize prompt 1 (hf.h5)" "1 403 407 261 378" "$("$MDI_LLM" --model "$TMP/hf.h5" --tokenize "$P1")"
expect_eq "tokenize prompt 2 (hf.h5)" "1 291 376 400 428" "$("$MDI_LLM" --model "$TMP/hf.h5" --tokenize "$P2")"
expect_eq "hf.h5, 1 rank, prompt 1" "$REF1" "$(greedy "$P1" --model "$TMP/hf.h5")"
expect_eq "hf.h5, 1 rank, prompt 2" "$REF2" "$(greedy "$P2" --model "$TMP/hf.h5")"
expect_eq "hf.h5, 2 ranks, prompt 1" "$REF1" "$(greedy_np 2 "$P1" --model "$TMP/hf.h5")"
expect_eq "hf.h5, 2 ranks, prompt 2" "$REF2" "$(greedy_np 2 "$P2" --model "$TMP/hf.h5")"
expect_eq "2 shards, 2 ranks, prompt 1" "$REF1" "$(greedy_np 2 "$P1" --model "$TMP/hf2")"
expect_eq "2 shards, 2 ranks, prompt 2" "$REF2" "$(greedy_np 2 "$P2" --model "$TMP/hf2")"
# A 2-shard directory is meant for 2 ranks; 1 rank gets a clear refusal, not a wrong answer.
expect_fail "2 shards on 1 rank refused" "2-way split" "$MDI_LLM" --model "$TMP/hf2" --prompt "$P1" --max-tokens 4

# ---- f16 / bf16 ---------------------------------------------------------------------------
# Matrices rounded to 16 bits; measured: the greedy texts are still exactly the references
# (the smallest top-2 logit gap along them is 0.07), so that is asserted.
for dt in f16 bf16; do
  "$MDI_CONVERT" "$HF" -o "$TMP/$dt.h5" --dtype "$dt" --quiet
  "$MDI_CONVERT" --inspect "$TMP/$dt.h5" >"$TMP/inspect-$dt"
  if grep -qx "dtype        $dt" "$TMP/inspect-$dt"; then pass "--inspect $dt.h5 reports dtype $dt"; else
    fail "--inspect $dt.h5 dtype:"; cat "$TMP/inspect-$dt"; fi
  expect_eq "$dt.h5, 1 rank, prompt 1" "$REF1" "$(greedy "$P1" --model "$TMP/$dt.h5")"
  expect_eq "$dt.h5, 1 rank, prompt 2" "$REF2" "$(greedy "$P2" --model "$TMP/$dt.h5")"
  expect_eq "$dt.h5, 2 ranks, prompt 1" "$REF1" "$(greedy_np 2 "$P1" --model "$TMP/$dt.h5")"
done

# ---- --inspect ------------------------------------------------------------------------------
"$MDI_CONVERT" "$HF" -o "$TMP/id.h5" 2>"$TMP/conv-err"
id=$(sed -nE 's/.*model_id ([0-9a-f]{16})\)$/\1/p' "$TMP/conv-err")
check "conversion reports a model id ($id)" [ ${#id} -eq 16 ]
check "converting again gives a byte-identical file" cmp -s "$TMP/hf.h5" "$TMP/id.h5"
"$MDI_CONVERT" --inspect "$TMP/hf.h5" >"$TMP/inspect"
for want in "model_id     $id" \
  "geometry     dim 64, hidden_dim 172, n_layers 5, n_heads 8, n_kv_heads 4, head_dim 8" \
  "vocab        vocab_size 512, max_seq_len 512, tied_head 1" \
  "dtype        f32" "layers       [0, 5) (5 of 5)" "shard        0 of 1" \
  "tokenizer    512 pieces (bos 1, eos 2, unk 0)"; do
  check "--inspect hf.h5: $want" grep -qxF -- "$want" "$TMP/inspect"
done
# Bytes: every weight once, f32 (tied head: no /output).
# embedding 512*64 + final norm 64 + 5 layers * (2*64 + 64*64*2 + 32*64*2 + 172*64*3)
bytes32=$((4 * (512 * 64 + 64 + 5 * (2 * 64 + 2 * 64 * 64 + 2 * 32 * 64 + 3 * 172 * 64))))
expect_eq "--inspect hf.h5 bytes" "tensors      47 datasets, $bytes32 bytes" "$(grep '^tensors' "$TMP/inspect")"
# f16: matrices at 2 bytes, norms (11 vectors of 64) stay f32
bytes16=$(((bytes32 - 4 * 11 * 64) / 2 + 4 * 11 * 64))
expect_eq "--inspect f16.h5 bytes" "tensors      47 datasets, $bytes16 bytes" "$(grep '^tensors' "$TMP/inspect-f16")"
"$MDI_CONVERT" --inspect "$TMP/hf2" >"$TMP/inspect2"
# --shards 2 plans as the engine does, in half-layers: the first shard ends after layer 2's attention.
for want in "layers       half-layers [0, 5): layers 0-1 and layer 2's attention (2.5 of 5)" \
  "layers       half-layers [5, 10): layer 2's MLP and layers 3-4 (2.5 of 5)" "shard        1 of 2" \
  "tokenizer    512 pieces (bos 1, eos 2, unk 0)" "tokenizer    (in the layer-0 shard)"; do
  check "--inspect hf2: $want" grep -qxF -- "$want" "$TMP/inspect2"
done
expect_eq "--inspect hf2 summary" "$TMP/hf2: 2 shards, layers [0, 5), model_id $id, $bytes32 tensor bytes: ok" \
  "$(tail -1 "$TMP/inspect2")"

# ---- a checkpoint without tokenizer.model ----------------------------------------------------
mkdir "$TMP/notok"
for f in "$HF"/*; do
  [ "$(basename "$f")" = tokenizer.model ] || ln -s "$f" "$TMP/notok/"
done
expect_fail "no tokenizer.model" \
  "notok has no tokenizer.model \(tokenizer.json-only checkpoints are not supported\); pass --tokenizer FILE" \
  "$MDI_CONVERT" "$TMP/notok" -o "$TMP/notok.h5"
check "no tokenizer.model: one line on stderr" [ "$(wc -l <"$TMP/err")" -eq 1 ]
check "no tokenizer.model: nothing written" [ ! -e "$TMP/notok.h5" ]
# ... and --tokenizer supplies it.
"$MDI_CONVERT" "$TMP/notok" --tokenizer "$HF/tokenizer.model" -o "$TMP/withtok.h5" --quiet
expect_eq "no tokenizer.model + --tokenizer, prompt 2" "$REF2" "$(greedy "$P2" --model "$TMP/withtok.h5")"

# ---- progress --------------------------------------------------------------------------------
"$MDI_CONVERT" "$HF" -o "$TMP/q.h5" --quiet 2>"$TMP/q-err"
check "--quiet: stderr empty" [ ! -s "$TMP/q-err" ]
want=$'mdi-convert: 20% (1/5 layers)\nmdi-convert: 40% (2/5 layers)\nmdi-convert: 60% (3/5 layers)\nmdi-convert: 80% (4/5 layers)\nmdi-convert: 100% (5/5 layers)'
expect_eq "progress lines on a non-tty stderr" "$want" "$(grep -F 'layers)' "$TMP/conv-err")"
check "no bar (carriage return) on a non-tty stderr" [ "$(tr -cd '\r' <"$TMP/conv-err" | wc -c)" -eq 0 ]
if command -v script >/dev/null && script -qec true /dev/null >/dev/null 2>&1; then
  # script gives the command a terminal; what the terminal showed lands on script's stdout.
  cmd=$(printf '%q ' "$MDI_CONVERT" "$HF" -o "$TMP/tty.h5")
  script -qec "$cmd" /dev/null >"$TMP/tty-out" 2>&1 || fail "conversion under script failed"
  check "progress bar on a terminal" \
    grep -qF $'\rmdi-convert: [####################] 100% (5/5 layers)' "$TMP/tty-out"
  check "no progress lines on a terminal" [ "$(grep -c 'mdi-convert: [0-9]*% (' "$TMP/tty-out")" -eq 0 ]
  cmd=$(printf '%q ' "$MDI_CONVERT" "$HF" -o "$TMP/tty-q.h5" --quiet)
  script -qec "$cmd" /dev/null >"$TMP/tty-out" 2>&1 || fail "quiet conversion under script failed"
  check "--quiet on a terminal: nothing shown" [ ! -s "$TMP/tty-out" ]
else
  echo "SKIP: no usable 'script' (util-linux): the terminal progress bar is not checked"
fi
finish
