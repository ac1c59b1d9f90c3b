#!/usr/bin/env bash
# Valgrind memcheck of mdi-llm and mdi-convert on stories260K:
#   1. mdi-convert writes the model as 2 shards;
#   2. a 2-rank generation (2 samples, so the pipeline really overlaps), via mpirun;
#   3. a 2-rank run that fails during set-up (rank 1 has no shard) and unwinds.
# Every process runs under
#   valgrind --tool=memcheck --error-exitcode=99 --leak-check=full
#            --errors-for-leak-kinds=definite --suppressions=jobs/valgrind.supp
# where the suppressions cover only the MPI runtime's own blocks (see the file).
# Prints one line per process and exits 1 if any has an invalid access, a use of
# uninitialised memory or a definite leak (0 when all are clean).
#   jobs/valgrind.sh [BUILD_DIR]
# BUILD_DIR (default build-valgrind) is built if needed with -DCMAKE_BUILD_TYPE=Debug
# -DMDI_NATIVE=OFF: valgrind 3.19 cannot run AVX-512 code, which -march=native emits on
# such CPUs. Logs stay in BUILD_DIR/valgrind/. Installs valgrind (apt) if missing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build-valgrind}
models=${MDI_MODELS_DIR:-$here/../shared/models}/stories260K

if ! command -v valgrind >/dev/null; then
  echo "valgrind.sh: installing valgrind" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends valgrind >&2
fi
if [ ! -x "$build/mdi-llm" ] || [ ! -x "$build/mdi-convert" ]; then
  "$here/jobs/setup.sh" "$build" -DCMAKE_BUILD_TYPE=Debug -DMDI_NATIVE=OFF
fi
if grep -qw avx512f /proc/cpuinfo && ! grep -q '^MDI_NATIVE:BOOL=OFF' "$build/CMakeCache.txt"; then
  echo "valgrind.sh: $build is built with -march=native on an AVX-512 CPU, which valgrind" \
       "cannot run; reconfigure it with -DMDI_NATIVE=OFF or use another directory" >&2
  exit 2
fi
for f in stories260K.bin tok512.bin; do
  [ -f "$models/$f" ] || { echo "valgrind.sh: $models/$f is missing" >&2; exit 2; }
done

source "$here/jobs/env.sh"
# MPI plug-ins stay loaded, so their frames keep names the suppressions can match
export OMPI_MCA_mca_base_component_disable_dlclose=1
out=$build/valgrind
rm -rf "$out"
mkdir -p "$out"
VG=(valgrind --tool=memcheck --error-exitcode=99 --leak-check=full
    --errors-for-leak-kinds=definite --num-callers=40
    --suppressions="$here/jobs/valgrind.supp")
MPI=(mpirun -np 2 "${MDI_MPIRUN_FLAGS[@]}" --mca btl self,vader,tcp
     -x OMPI_MCA_mca_base_component_disable_dlclose)
status=0

# run NAME EXPECTED_STATUS CMD... : run CMD, check its exit status
run() {
  local name=$1 want=$2 rc=0
  shift 2
  echo "valgrind.sh: $name" >&2
  timeout 900 "$@" >"$out/$name.out" 2>"$out/$name.err" || rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "valgrind.sh: $name exited $rc, expected $want (valgrind errors exit 99); see $out/$name.err" >&2
    status=1
  fi
}

run convert 0 "${VG[@]}" --log-file="$out/convert.log" "$build/mdi-convert" \
  "$models/stories260K.bin" --tokenizer "$models/tok512.bin" -o "$out/shards" --shards 2 --quiet
run generate 0 "${MPI[@]}" "${VG[@]}" --log-file="$out/generate.rank%q{OMPI_COMM_WORLD_RANK}.log" \
  "$build/mdi-llm" --model "$out/shards" --prompt "Once upon a time" --max-tokens 24 \
  --temperature 0.8 --seed 5 --stats-json "$out/stats.json"
mkdir -p "$out/one-shard"
cp "$out"/shards/model-00-of-02.* "$out/one-shard/"
run setup-failure 1 "${MPI[@]}" "${VG[@]}" \
  --log-file="$out/setup-failure.rank%q{OMPI_COMM_WORLD_RANK}.log" \
  "$build/mdi-llm" --model "$out/one-shard" --prompt "Once upon a time" --max-tokens 8
grep -q "no shard with index 1" "$out/setup-failure.err" ||
  { echo "valgrind.sh: setup-failure did not fail as planned: $(head -3 "$out/setup-failure.err")" >&2; status=1; }
[ "$(grep -c '^\[[01]\] (end: max-tokens, 24 tokens)' "$out/generate.out")" -eq 2 ] ||
  { echo "valgrind.sh: the generation did not produce its 2 samples" >&2; status=1; }

# One line per process: errors valgrind counts, invalid accesses, definite leaks.
printf '%-34s %8s %8s %14s %14s\n' "process" "errors" "invalid" "definite" "possible" >&2
for log in "$out"/*.log; do
  errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$log" | tail -1)
  invalid=$(grep -cE "Invalid (read|write|free)|uninitialised|Conditional jump|Mismatched free|overlap|Syscall param" "$log" || true)
  definite=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tail -1)
  possible=$(sed -n 's/.*possibly lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tail -1)
  printf '%-34s %8s %8s %14s %14s\n' "$(basename "$log" .log)" "${errors:-?}" "$invalid" \
    "${definite:-0} B" "${possible:-0} B" >&2
  if [ "${errors:-1}" != 0 ]; then
    status=1
    echo "valgrind.sh: $log:" >&2
    grep -A12 -E "^==[0-9]+== (Invalid|Conditional|Use of|Syscall|Mismatched|Source and dest)|definitely lost in loss record" "$log" | head -60 >&2
  fi
done
if [ "$status" -eq 0 ]; then
  echo "valgrind.sh: clean: no invalid accesses, no uninitialised reads, no definite leaks (logs: $out)" >&2
else
  echo "valgrind.sh: FAILED (logs: $out)" >&2
fi
exit "$status"
