# Helpers sourced by test/e2e_*.sh. Environment from ctest (test/tests.cmake):
# MDI_LLM, MDI_CONVERT, MDI_MPIEXEC, MDI_MODELS_DIR.
set -euo pipefail
: "${MDI_LLM:?}" "${MDI_CONVERT:?}" "${MDI_MPIEXEC:?}" "${MDI_MODELS_DIR:?}"
read -r -a MPIEXEC <<<"$MDI_MPIEXEC"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mdi-e2e.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
N_PASS=0
N_FAIL=0
# Time limits of the helpers below; sanitizer builds run several times slower
# (and CI runs two tests at once), so their limits are 4x.
E2E_SCALE=1
if ldd "$MDI_LLM" 2>/dev/null | grep -q libasan; then E2E_SCALE=4; fi

# Models are required in CI; elsewhere their absence skips the script visibly.
need_models() {
  if [ ! -f "$MDI_MODELS_DIR/stories260K/stories260K.bin" ]; then
    if [ "${CI:-}" = true ]; then
      echo "FAIL: $MDI_MODELS_DIR/stories260K is missing (CI=true: models are required)"
      exit 1
    fi
    echo "SKIP: $MDI_MODELS_DIR/stories260K is missing"
    exit 0
  fi
}

pass() { N_PASS=$((N_PASS + 1)); echo "ok: $*"; }
fail() { N_FAIL=$((N_FAIL + 1)); echo "FAIL: $*"; }

# expect_eq NAME EXPECTED ACTUAL
expect_eq() {
  if [ "$2" == "$3" ]; then pass "$1"; else
    fail "$1"; diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | head -20 || true; fi
}

# mpirun N ARGS... : run mdi-llm on N ranks (stdout kept, stderr to $TMP/err)
run_np() {
  local n=$1; shift
  timeout $((120 * E2E_SCALE)) "${MPIEXEC[@]}" -np "$n" "$MDI_LLM" "$@" 2>"$TMP/err"
}

# expect_fail NAME PATTERN CMD... : CMD exits non-zero within 60 s and its stderr matches PATTERN
expect_fail() {
  local name=$1 pat=$2; shift 2
  local rc=0
  timeout $((60 * E2E_SCALE)) "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
  if [ "$rc" -eq 0 ]; then fail "$name: exited 0"; return; fi
  if [ "$rc" -eq 124 ]; then fail "$name: hung (killed after $((60 * E2E_SCALE)) s)"; return; fi
  if [ "$rc" -ge 128 ]; then fail "$name: died by signal $((rc - 128))"; return; fi
  if grep -qE -- "$pat" "$TMP/err"; then pass "$name"; else
    fail "$name: stderr does not match '$pat':"; head -5 "$TMP/err"; fi
}

# Reconstruct sample i's text from multi-sample output ("[i] line" records;
# the last one is always the end record, whatever the text's lines look like).
sample_text() {
  local i=$1 file=$2
  grep -E "^\[$i\] " "$file" | sed '$d' | sed -E "s/^\[$i\] //"
}

finish() {
  echo "$N_PASS passed, $N_FAIL failed"
  [ "$N_FAIL" -eq 0 ]
}

# Reference texts from ../shared/models/README.md (llama2.c, greedy, 64 positions).
REF1=$'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily'
REF2=$'The little dog was a little girl named Lily. She loved to play with her toys and her toys. One day, she saw a big box with a big box. It was a big, red ball. She wanted to play with it'
