#!/usr/bin/env bash
# mdi-convert command line: help, version, usage errors (exit 2, one line),
# conversion of stories260K to a file and to shards (whole layers and half
# layers, --split and --balance), --inspect, and refusals.
# Env: MDI_CONVERT (the binary), MDI_MODELS_DIR (test models; default ../shared/models).
set -euo pipefail

CONVERT=${MDI_CONVERT:?MDI_CONVERT must name the mdi-convert binary}
MODELS=${MDI_MODELS_DIR:-../shared/models}
BIN=$MODELS/stories260K/stories260K.bin
TOK=$MODELS/stories260K/tok512.bin

if [[ ! -f $BIN || ! -f $TOK ]]; then
    if [[ ${CI:-} == true ]]; then
        echo "FAIL: test models missing under $MODELS (CI=true: models are required)" >&2
        exit 1
    fi
    echo "SKIP: test models missing under $MODELS"
    exit 0
fi

WORK=$(mktemp -d /tmp/mdi-e2e-convert-XXXXXX)
trap 'rm -rf "$WORK"' EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# expect_fail CODE SUBSTRING CMD...: CMD exits with CODE and prints exactly one
# line on stderr that starts with "mdi-convert: " and contains SUBSTRING.
expect_fail() {
    local code=$1 want=$2 got
    shift 2
    set +e
    "$@" >"$WORK/out" 2>"$WORK/err"
    got=$?
    set -e
    [[ $got == "$code" ]] || fail "$* exited $got, expected $code; stderr: $(cat "$WORK/err")"
    [[ $(wc -l <"$WORK/err") == 1 ]] || fail "$*: stderr is not one line: $(cat "$WORK/err")"
    grep -q '^mdi-convert: ' "$WORK/err" || fail "$*: message lacks the prefix: $(cat "$WORK/err")"
    grep -qF -- "$want" "$WORK/err" || fail "$*: stderr lacks '$want': $(cat "$WORK/err")"
}

# --help: exit 0, every flag documented.
"$CONVERT" --help >"$WORK/help"
for flag in --tokenizer -o --output --shards --split --balance memory time 10.5,11.5 --dtype \
    --quiet --synthetic --seed --inspect --help --version f16 bf16; do
    grep -qF -- "$flag" "$WORK/help" || fail "--help does not mention $flag"
done
"$CONVERT" --version | grep -q '^mdi-convert ' || fail "--version output"

# Usage errors: exit 2, one line.
expect_fail 2 "unknown option '--bogus'" "$CONVERT" --bogus
expect_fail 2 "no INPUT given" "$CONVERT"
expect_fail 2 "no output given" "$CONVERT" "$BIN" --tokenizer "$TOK"
expect_fail 2 "-o/--output is empty" "$CONVERT" "$BIN" --tokenizer "$TOK" -o ""
expect_fail 2 "--tokenizer is empty: give the tokenizer file" "$CONVERT" "$BIN" --tokenizer "" -o "$WORK/x"
expect_fail 2 "--shards needs a value" "$CONVERT" "$BIN" -o "$WORK/x" --shards
expect_fail 2 "--shards '2x'" "$CONVERT" "$BIN" -o "$WORK/x" --shards 2x
expect_fail 2 "--shards '0'" "$CONVERT" "$BIN" -o "$WORK/x" --shards 0
expect_fail 2 "--shards '-3': expected a whole number in [1, " "$CONVERT" "$BIN" -o "$WORK/x" --shards -3
expect_fail 2 "--dtype 'f64'" "$CONVERT" "$BIN" -o "$WORK/x" --dtype f64
expect_fail 2 "--split" "$CONVERT" "$BIN" -o "$WORK/x" --split 2,,3
expect_fail 2 "not both" "$CONVERT" "$BIN" -o "$WORK/x" --shards 2 --split 2,3
expect_fail 2 "--split '2.25,2.75': expected layer counts" "$CONVERT" "$BIN" -o "$WORK/x" --split 2.25,2.75
expect_fail 2 "--balance 'fast': expected memory or time" "$CONVERT" "$BIN" -o "$WORK/x" --shards 2 --balance fast
expect_fail 2 "give either --balance or --split, not both" \
    "$CONVERT" "$BIN" -o "$WORK/x" --split 2.5,2.5 --balance time
expect_fail 2 "--balance needs --shards N" "$CONVERT" "$BIN" -o "$WORK/x" --balance memory
expect_fail 2 "--balance given twice" "$CONVERT" "$BIN" -o "$WORK/x" --shards 2 --balance time --balance time
expect_fail 2 "--seed only applies to --synthetic" "$CONVERT" "$BIN" -o "$WORK/x" --seed 3
expect_fail 2 "--seed 'x'" "$CONVERT" --synthetic tiny --seed x -o "$WORK/x"
expect_fail 2 "unexpected extra argument" "$CONVERT" "$BIN" "$TOK" -o "$WORK/x"
expect_fail 2 "-o/--output given twice" "$CONVERT" "$BIN" -o "$WORK/x" -o "$WORK/y"
expect_fail 2 "--inspect PATH takes no other arguments" "$CONVERT" --inspect "$BIN" -o "$WORK/x"

# Runtime errors: exit 1, one line, nothing written.
expect_fail 1 "pass --tokenizer tokenizer.bin" "$CONVERT" "$BIN" -o "$WORK/x.h5"
expect_fail 1 "not a recognised model" "$CONVERT" "$TOK" -o "$WORK/x.h5"
# llama2.c's tokenizer.bin has no piece count: another model's (32000 pieces
# against 512) must not be cut to fit
expect_fail 1 "holds 32000 pieces but the model's vocabulary has 512" "$CONVERT" "$BIN" \
    --tokenizer "$MODELS/llama2-tokenizer/tokenizer.bin" -o "$WORK/x.h5"
expect_fail 1 "No such file" "$CONVERT" "$WORK/missing.bin" -o "$WORK/x.h5"
printf '24ka\001\000\000\000' | cat - "$BIN" >"$WORK/ak42.bin" # export.py --version 1's magic
expect_fail 1 'a llama2.c export in the newer "ak42" format' "$CONVERT" "$WORK/ak42.bin" -o "$WORK/x.h5"
rm -f "$WORK/ak42.bin"
# A tokenizer value the vocabulary check refuses: the message names the file.
cp "$TOK" "$WORK/tnan.bin"
printf '\000\000\300\177' | dd of="$WORK/tnan.bin" bs=1 seek=4 conv=notrunc status=none # piece 0 score NaN
expect_fail 1 "tnan.bin: vocab: piece 0 has score NaN" "$CONVERT" "$BIN" --tokenizer "$WORK/tnan.bin" -o "$WORK/x.h5"
rm -f "$WORK/tnan.bin"
expect_fail 1 "not an HDF5 file" "$CONVERT" --inspect "$BIN"
# A FIFO where a file belongs is refused, not waited on.
mkfifo "$WORK/fifo"
expect_fail 1 "fifo: not a regular file" timeout 30 "$CONVERT" "$BIN" --tokenizer "$WORK/fifo" -o "$WORK/x.h5"
mkdir "$WORK/hffifo"
cp "$MODELS/stories260K-hf/config.json" "$MODELS/stories260K-hf/tokenizer.model" "$WORK/hffifo/"
mkfifo "$WORK/hffifo/model.safetensors"
expect_fail 1 "model.safetensors: not a regular file" timeout 30 "$CONVERT" "$WORK/hffifo" -o "$WORK/x.h5"
rm "$WORK/hffifo/model.safetensors"
cp "$MODELS/stories260K-hf/model.safetensors" "$WORK/hffifo/"
mkfifo "$WORK/hffifo/tokenizer_config.json"
expect_fail 1 "tokenizer_config.json: not a regular file" timeout 30 "$CONVERT" "$WORK/hffifo" -o "$WORK/x.h5"
rm "$WORK/hffifo/tokenizer_config.json"
ln -s "$WORK/nowhere.json" "$WORK/hffifo/tokenizer_config.json"
expect_fail 1 "tokenizer_config.json: a symbolic link to nothing" "$CONVERT" "$WORK/hffifo" -o "$WORK/x.h5"
rm -rf "$WORK/fifo" "$WORK/hffifo"
expect_fail 1 "split covers" "$CONVERT" "$BIN" --tokenizer "$TOK" --split 2,4,4 -o "$WORK/x"
grep -qF "but the model has 5" "$WORK/err" || fail "--split 2,4,4: $(cat "$WORK/err")"
expect_fail 1 "split covers 2.5 layers but the model has 5" \
    "$CONVERT" "$BIN" --tokenizer "$TOK" --split 2.5 -o "$WORK/x"
expect_fail 1 "--shards 11 but $BIN has only 5 layers (10 half-layers): every shard" \
    "$CONVERT" "$BIN" --tokenizer "$TOK" --shards 11 -o "$WORK/x"
expect_fail 1 "$WORK/x/ ends in '/' but the output is one file (a directory of shards needs --shards N)" \
    "$CONVERT" "$BIN" --tokenizer "$TOK" -o "$WORK/x/"
[[ -z $(ls -A "$WORK" | grep -v -e '^out$' -e '^err$' -e '^help$') ]] || fail "leftovers: $(ls "$WORK")"

# One file: quiet means no output at all; inspect shows the geometry.
"$CONVERT" "$BIN" --tokenizer "$TOK" -o "$WORK/one.h5" --quiet 2>"$WORK/err"
[[ ! -s $WORK/err ]] || fail "--quiet printed: $(cat "$WORK/err")"
"$CONVERT" --inspect "$WORK/one.h5" >"$WORK/inspect"
for want in "format       mdi-llm, version 1" \
    "dim 64, hidden_dim 172, n_layers 5, n_heads 8, n_kv_heads 4, head_dim 8" \
    "vocab_size 512, max_seq_len 512, tied_head 1" "dtype        f32" \
    "layers       [0, 5)" "shard        0 of 1" "tokenizer    512 pieces"; do
    grep -qF -- "$want" "$WORK/inspect" || fail "--inspect lacks '$want': $(cat "$WORK/inspect")"
done
expect_fail 1 "exists; remove it first" "$CONVERT" "$BIN" --tokenizer "$TOK" -o "$WORK/one.h5"

# A new output directory named with a trailing slash is that directory.
"$CONVERT" "$BIN" --tokenizer "$TOK" -o "$WORK/slash/" --shards 2 --quiet 2>"$WORK/err" &&
    [[ $(ls "$WORK/slash" | wc -l) -eq 2 ]] || fail "-o DIR/ --shards 2: $(cat "$WORK/err")"
rm -rf "$WORK/slash"

# Shards: progress on stderr (not a terminal: one line per step), names, inspect.
"$CONVERT" "$BIN" --tokenizer "$TOK" --split 1,1,3 --dtype f16 -o "$WORK/shards" 2>"$WORK/err"
grep -qF "mdi-convert: 100% (5/5 layers)" "$WORK/err" || fail "no progress: $(cat "$WORK/err")"
[[ $(ls "$WORK/shards") == $'model-00-of-03.L000-000.h5\nmodel-01-of-03.L001-001.h5\nmodel-02-of-03.L002-004.h5' ]] ||
    fail "shard names: $(ls "$WORK/shards")"
"$CONVERT" --inspect "$WORK/shards" >"$WORK/inspect"
grep -qF "3 shards, layers [0, 5)" "$WORK/inspect" || fail "inspect dir: $(cat "$WORK/inspect")"
grep -qF "dtype        f16" "$WORK/inspect" || fail "inspect dtype: $(cat "$WORK/inspect")"
[[ $(grep -c "^model_id" "$WORK/inspect") == 3 && $(grep "^model_id" "$WORK/inspect" | sort -u | wc -l) == 1 ]] ||
    fail "model ids differ across shards"
"$CONVERT" "$BIN" --tokenizer "$TOK" --shards 2 -q -o "$WORK/two"
[[ $(ls "$WORK/two" | wc -l) == 2 ]] || fail "--shards 2 wrote $(ls "$WORK/two")"
"$CONVERT" --inspect "$WORK/two/$(ls "$WORK/two" | tail -1)" | grep -qF "shard        1 of 2" ||
    fail "inspect of shard 1"

# Half layers: a shard may end with a layer's attention ("a") and the next start with its
# MLP ("m"); such files are format version 2 (attributes and datasets: test_convert.c).
# shards SPLIT NAMES...: --split SPLIT writes exactly the files NAMES, counting progress in
# layers up to 100% once, and --inspect passes.
PROGRESS=$(for i in 1 2 3 4 5; do echo "mdi-convert: $((20 * i))% ($i/5 layers)"; done)
shards() {
    local split=$1 dir=$WORK/split-$1
    shift
    "$CONVERT" "$BIN" --tokenizer "$TOK" --split "$split" -o "$dir" 2>"$WORK/err"
    # A layer counts once both its halves are written, whichever shards hold them.
    [[ $(grep -F 'layers)' "$WORK/err") == "$PROGRESS" ]] || fail "--split $split progress: $(cat "$WORK/err")"
    [[ $(ls "$dir") == "$(printf '%s\n' "$@")" ]] || fail "--split $split wrote $(ls "$dir")"
    "$CONVERT" --inspect "$dir" >"$WORK/inspect" || fail "--inspect of --split $split"
    grep -qF "$(basename "$dir"): $# shards, layers [0, 5)" "$WORK/inspect" ||
        fail "--split $split summary: $(tail -1 "$WORK/inspect")"
}
shards 2.5,2.5 model-00-of-02.L000-002a.h5 model-01-of-02.L002m-004.h5
for want in "format       mdi-llm, version 2" \
    "layers       half-layers [0, 5): layers 0-1 and layer 2's attention (2.5 of 5)" \
    "layers       half-layers [5, 10): layer 2's MLP and layers 3-4 (2.5 of 5)"; do
    grep -qxF -- "$want" "$WORK/inspect" || fail "--inspect lacks '$want': $(cat "$WORK/inspect")"
done
shards 0.5,4.5 model-00-of-02.L000-000a.h5 model-01-of-02.L000m-004.h5
shards 1,3.5,0.5 model-00-of-03.L000-000.h5 model-01-of-03.L001-004a.h5 model-02-of-03.L004m-004.h5
grep -qxF "format       mdi-llm, version 1" "$WORK/inspect" || fail "whole-layer shard 0 is not version 1"
grep -qxF "layers       half-layers [9, 10): layer 4's MLP (0.5 of 5)" "$WORK/inspect" ||
    fail "--inspect of L004m-004: $(cat "$WORK/inspect")"

# --balance: the synthetic tiny model (4 layers, untied head: its embedding is held but not
# read per token) gets different plans, those of mdi_plan_balanced (test_convert.c checks
# the writer against it for every N): time [0, 3, 8] by default, memory [0, 2, 8].
# balance NAMES... -- ARGS...: mdi-convert --synthetic tiny ARGS writes exactly NAMES.
N_BAL=0
balance() {
    local names=() dir=$WORK/bal-$((N_BAL += 1))
    while [[ $1 != -- ]]; do names+=("$1"); shift; done
    shift
    "$CONVERT" --synthetic tiny "$@" -q -o "$dir"
    [[ $(ls "$dir") == "$(printf '%s\n' "${names[@]}")" ]] || fail "$* wrote $(ls "$dir")"
}
balance model-00-of-02.L000-001a.h5 model-01-of-02.L001m-003.h5 -- --shards 2
balance model-00-of-02.L000-001a.h5 model-01-of-02.L001m-003.h5 -- --shards 2 --balance time
balance model-00-of-02.L000-000.h5 model-01-of-02.L001-003.h5 -- --shards 2 --balance memory
balance model-00-of-03.L000-000a.h5 model-01-of-03.L000m-001.h5 model-02-of-03.L002-003.h5 -- \
    --shards 3 --balance memory
"$CONVERT" --synthetic tiny --shards 1 --balance memory -q -o "$WORK/bal-one.h5" # one file: no plan
[[ -f $WORK/bal-one.h5 ]] || fail "--shards 1 --balance memory did not write one file"

# A signal that ends a conversion mid-write leaves no temporary output: one
# file (SIGTERM, SIGHUP) and a directory of shards (SIGINT; job control on, so
# the background job does not start with SIGINT ignored). A signal ignored
# when the tool starts (nohup's SIGHUP) stays ignored.
interrupt() {
    local sig=$1 want=$2 out=$3 pid rc i
    shift 3
    set -m
    "$CONVERT" --synthetic tinyllama-1.1b -q -o "$WORK/$out" "$@" &
    pid=$!
    set +m
    for ((i = 0; i < 300; i++)); do
        compgen -G "$WORK/$out.tmp-$pid*" >/dev/null && break
        sleep 0.1
    done
    compgen -G "$WORK/$out.tmp-$pid*" >/dev/null || fail "SIG$sig: no $out.tmp-$pid appeared"
    if [[ $sig == HUP-then-TERM ]]; then
        kill -s HUP "$pid"
        sleep 0.3
        sig=TERM
    fi
    kill -s "$sig" "$pid"
    set +e
    wait "$pid"
    rc=$?
    set -e
    [[ $rc == "$want" ]] || fail "SIG$sig: mdi-convert exited $rc, expected $want"
    [[ -z $(compgen -G "$WORK/$out*") ]] || fail "SIG$sig left $(compgen -G "$WORK/$out*" | tr "\n" " ")"
}
interrupt TERM 143 sig-term.h5
interrupt HUP 129 sig-hup.h5
interrupt INT 130 sig-int --shards 3
# SIGHUP ignored (as under nohup): the tool lives on to take the SIGTERM.
(
    trap '' HUP
    interrupt HUP-then-TERM 143 sig-nohup.h5
)
ls -a "$WORK" | grep -q 'tmp-' && fail "temporary output left behind: $(ls -a "$WORK")"

echo "PASS: e2e_convert_cli"
