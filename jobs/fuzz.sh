#!/usr/bin/env bash
# libFuzzer targets for every input parser (test/fuzz/*.c; docs/FUZZING.md).
# Installs clang and libFuzzer from Debian if missing, builds each target with
# -fsanitize=fuzzer,address,undefined straight from the sources (not part of
# the CMake build), prepares seed corpora from ../shared/models, and runs the
# targets one after another, each for the given time, on one core.
#   jobs/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# SECONDS_PER_TARGET defaults to 600. Targets: llama2c gguf safetensors spm
# tokenizer hdf5 (default: all). MDI_FUZZ_WORK (default /tmp/mdi-fuzz) holds
# the builds, corpora (kept and grown from run to run), crashes and logs,
# outside the repository. MDI_MODELS_DIR: the test models (../shared/models).
# Crashing inputs land in $MDI_FUZZ_WORK/crashes/TARGET/; once fixed, copy them
# to test/fuzz/regress/TARGET/, where the fuzz_regress test replays them.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-600}
[ $# -gt 0 ] && shift
all=(llama2c gguf safetensors spm tokenizer hdf5)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi
work=${MDI_FUZZ_WORK:-/tmp/mdi-fuzz}
models=${MDI_MODELS_DIR:-$here/../shared/models}
case $work in "$here"|"$here"/*) echo "fuzz: MDI_FUZZ_WORK must be outside the repository" >&2; exit 1;; esac
for t in "${targets[@]}"; do
  [ -f "$here/test/fuzz/fuzz_$t.c" ] || { echo "fuzz: unknown target '$t' (${all[*]})" >&2; exit 1; }
done
rm -rf "$work/tmp" # temporary directories a crashed target could not remove
mkdir -p "$work/build/obj" "$work/tmp"

# ---- toolchain: clang with libFuzzer and the sanitizer runtimes -------------------
probe() {
  printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; return (int)n * 0; }\n' |
    clang -fsanitize=fuzzer,address,undefined -fopenmp -x c - -o "$work/build/probe" 2>/dev/null
}
if ! command -v clang >/dev/null || ! probe; then
  # Debian 12: clang is clang-14; libFuzzer and the sanitizer runtimes are in
  # libclang-rt-14-dev (libclang-rt-dev), OpenMP for clang in libomp-14-dev.
  echo "fuzz: installing clang libclang-rt-dev libomp-dev" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    clang libclang-rt-dev libomp-dev libhdf5-dev libblis-dev >&2
  probe || { echo "fuzz: clang cannot build a libFuzzer target" >&2; exit 1; }
fi

# ---- build: the parsers and what they need, instrumented, then one binary per target ----
arch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
cflags=(-std=c11 -g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=undefined -fopenmp
        -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
        -I"$here/include" -I"$here/src" -I"$here/weights-tools"
        -I/usr/include/hdf5/serial -I"/usr/include/$arch")
libs=(-L"/usr/lib/$arch/hdf5/serial" -lhdf5 -lblis -lm)
# Everything but the programs and the MPI modules.
srcs=()
for f in "$here"/src/*.c "$here"/weights-tools/*.c; do
  case $(basename "$f") in main.c|mdi_convert.c) continue;; esac
  grep -qE '#include (<mpi.h>|"mdi/(ring|engine|pipeline).h")' "$f" && continue
  srcs+=("$f")
done
rm -f "$work"/build/obj/*.o
objs=()
for s in "${srcs[@]}"; do
  o=$work/build/obj/$(basename "${s%.c}").o
  clang "${cflags[@]}" -fsanitize=fuzzer-no-link,address,undefined -c "$s" -o "$o"
  objs+=("$o")
done
for t in "${targets[@]}"; do
  clang "${cflags[@]}" -fsanitize=fuzzer,address,undefined "$here/test/fuzz/fuzz_$t.c" \
    "${objs[@]}" "${libs[@]}" -o "$work/build/fuzz_$t"
done
echo "fuzz: built ${targets[*]} in $work/build" >&2

# ---- seed corpora from ../shared/models (rebuilt every run, outside the repo) --------
sep=$'\n@@MDI@@\n'
m=$models
need() { [ -f "$m/$1" ] || { echo "fuzz: $m/$1 is missing (set MDI_MODELS_DIR)" >&2; exit 1; }; }
for f in stories260K/stories260K.bin stories260K/tok512.bin stories260K/stories260K.gguf \
         stories260K-hf/config.json stories260K-hf/model.safetensors stories260K-hf/tokenizer.model \
         llama2-tokenizer/tokenizer.model llama2-tokenizer/encodings.json; do
  need "$f"
done
rm -rf "$work/seeds"
for t in "${all[@]}"; do mkdir -p "$work/seeds/$t"; done
s=$work/seeds
# llama2c: header, mode byte (1: RoPE tables, as stories260K.bin has them), tokenizer
{ head -c 28 "$m/stories260K/stories260K.bin"; printf '\001'; cat "$m/stories260K/tok512.bin"; } > "$s/llama2c/stories260K"
{ head -c 28 "$m/stories260K/stories260K.bin"; printf '\000'; cat "$m/stories260K/tok512.bin"; } > "$s/llama2c/stories260K-norope"
{ head -c 28 "$m/stories260K/stories260K.bin"; printf '\001'; cat "$m/stories260K-hf/tokenizer.model"; } > "$s/llama2c/stories260K-spm"
# gguf: header, metadata (with the vocabulary) and tensor table
head -c 32768 "$m/stories260K/stories260K.gguf" > "$s/gguf/stories260K"
# safetensors: config.json, the safetensors length and header, tokenizer.model [, index]
hf=$m/stories260K-hf
hlen=$(od -An -t u8 -N8 "$hf/model.safetensors" | tr -d ' ')
{ cat "$hf/config.json"; printf '%s' "$sep"; head -c $((8 + hlen)) "$hf/model.safetensors"
  printf '%s' "$sep"; cat "$hf/tokenizer.model"; } > "$s/safetensors/stories260K"
{ cat "$s/safetensors/stories260K"; printf '%s' "$sep"
  printf '{"metadata": {}, "weight_map": {"model.norm.weight": "model.safetensors"}}'; } > "$s/safetensors/stories260K-index"
# spm: SentencePiece models (the Llama 2 one cut to -max_len), a tokenizer.bin
cp "$hf/tokenizer.model" "$s/spm/stories260K.model"
head -c 65536 "$m/llama2-tokenizer/tokenizer.model" > "$s/spm/llama2.model"
cp "$m/stories260K/tok512.bin" "$s/spm/tok512.bin"
# tokenizer: flags byte (4: Llama 2 vocabulary + BOS, 5: built-in + BOS) and a text
texts=$work/build/texts
if command -v jq >/dev/null; then
  jq -r '.[].text | @base64' "$m/llama2-tokenizer/encodings.json" > "$texts"
else
  python3 -c 'import json,sys,base64; [print(base64.b64encode(e["text"].encode()).decode()) for e in json.load(open(sys.argv[1]))]' \
    "$m/llama2-tokenizer/encodings.json" > "$texts"
fi
i=0
while read -r b; do
  { printf '\004'; printf '%s' "$b" | base64 -d; } > "$s/tokenizer/enc-$i"
  { printf '\005'; printf '%s' "$b" | base64 -d; } > "$s/tokenizer/builtin-$i"
  i=$((i + 1))
done < "$texts"
# hdf5: the base files untouched (byte 0 picks whole model, shard 0, shard 1)
printf '\000' > "$s/hdf5/whole"; printf '\001' > "$s/hdf5/shard0"; printf '\002' > "$s/hdf5/shard1"

declare -A max_len=([llama2c]=16384 [gguf]=32768 [safetensors]=32768 [spm]=65536
                    [tokenizer]=4096 [hdf5]=4096)

# ---- run, one target at a time --------------------------------------------------------
summary=$work/summary.txt
printf '%-12s %8s %12s %8s %8s %8s %8s\n' target seconds execs cov ft corpus crashes | tee "$summary"
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t" "$work/crashes/$t" "$work/logs"
  log=$work/logs/$t.log
  stamp=$work/logs/$t.start
  touch "$stamp"
  start=$(date +%s)
  rc=0
  TMPDIR=$work/tmp MDI_FUZZ_TOKENIZER=$m/llama2-tokenizer/tokenizer.model \
    "$work/build/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -timeout=30 -max_len="${max_len[$t]}" -print_final_stats=1 \
    -artifact_prefix="$work/crashes/$t/" "$work/corpus/$t" "$work/seeds/$t" > "$log" 2>&1 || rc=$?
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<< "$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<< "$last")
  crashes=$(find "$work/crashes/$t" -type f -newer "$stamp" | wc -l)
  printf '%-12s %8s %12s %8s %8s %8s %8s\n' "$t" "$took" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
    "${corp:-?}" "$crashes" | tee -a "$summary"
  if [ "$rc" -ne 0 ]; then
    echo "fuzz: $t stopped with status $rc; see $log and $work/crashes/$t/" >&2
  fi
done
echo "fuzz: summary in $summary, logs in $work/logs" >&2
