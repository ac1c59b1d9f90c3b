#!/usr/bin/env bash
# Nothing is allocated per token (STYLE.md): every mdi-llm process makes as
# many heap allocations for 200 generated tokens per sample as for 8. The
# counter (test/alloc_count.c, LD_PRELOAD) sees malloc, calloc, realloc and
# the aligned allocators of our code and of every library on the token path
# (Open MPI, libgomp, BLIS). A single allocation per token on any rank would
# add at least 3 x 192 = 576; MPI start-up and shut-down vary by a few dozen.
source "$(dirname "$0")/lib_e2e.sh"
need_models
if [ -z "${MDI_ALLOC_COUNT_LIB:-}" ]; then
  echo "SKIP: sanitizer build (the allocation counter cannot wrap the sanitizer's malloc)"
  exit 0
fi
M=$MDI_MODELS_DIR/stories260K
"$MDI_CONVERT" "$M/stories260K.bin" --tokenizer "$M/tok512.bin" -o "$TMP/s.h5" --quiet
printf '%s\n' "Once upon a time" "The little dog" "Tom and Sue" >"$TMP/prompts"
LIMIT=100

# allocs NRANKS TOKENS ARGS... : allocations summed over the ranks' processes
allocs() {
  local n=$1 tokens=$2; shift 2
  rm -rf "$TMP/count" && mkdir "$TMP/count"
  MDI_ALLOC_COUNT_DIR=$TMP/count timeout 120 "${MPIEXEC[@]}" -np "$n" \
    -x LD_PRELOAD="$MDI_ALLOC_COUNT_LIB" -x MDI_ALLOC_COUNT_DIR \
    "$MDI_LLM" --model "$TMP/s.h5" --prompt-file "$TMP/prompts" --temperature 0 \
    --max-tokens "$tokens" --quiet "$@" >"$TMP/out" 2>"$TMP/err" || {
    echo "mdi-llm failed:" >&2
    cat "$TMP/err" >&2
    return 1
  }
  local files=("$TMP"/count/*)
  if [ "${#files[@]}" -ne "$n" ] || [ ! -f "${files[0]}" ]; then
    echo "expected $n counts, found ${#files[@]}" >&2
    return 1
  fi
  cat "${files[@]}" | awk '{ s += $1 } END { print s }'
}

# check LABEL NRANKS ARGS... : 200 tokens per sample allocate no more than 8
check() {
  local label=$1 n=$2 short long
  shift 2
  if ! short=$(allocs "$n" 8 "$@") || ! long=$(allocs "$n" 200 "$@"); then
    fail "$label: run failed"
    return
  fi
  local extra=$((long - short))
  if [ "${extra#-}" -lt "$LIMIT" ]; then
    pass "$label: $short allocations for 8 tokens, $long for 200"
  else
    fail "$label: $short allocations for 8 tokens, $long for 200 ($extra more)"
  fi
}

check "1 rank, 1 thread" 1 --threads 1
check "1 rank, 2 threads" 1 --threads 2
check "2 ranks, 1 thread each" 2 --threads 1
check "3 ranks, half-layer split, group size 1" 3 --threads 1 --split 1.5,2,1.5 --group-size 1
finish
