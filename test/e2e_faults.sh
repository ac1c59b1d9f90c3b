#!/usr/bin/env bash
# Faults at run time, on 3 ranks of a synthetic model slow enough to interrupt
# (dim 512, 8 layers, byte-level vocabulary; smaller in sanitizer builds; no model
# files needed):
#  - a rank killed with SIGKILL mid-generation ends the job within 10 s,
#    mpirun names the rank that was lost, and the text streamed before the
#    kill is kept (a prefix of the text of the same greedy run);
#  - a rank stopped with SIGSTOP is found by rank 0 after --timeout 3, whose one
#    line names the stage that stopped answering; the job ends within 15 s;
#  - rank 0 itself stopped: rank 1 names it (workers wait 2 x --timeout + grace,
#    7.5 s here);
#  - set-up that never ends (a FIFO as the prompt file; rank 0 stopped during
#    set-up; a rank that never reaches MPI_Init) ends after --setup-timeout with
#    a line naming the rank and its step.
# Every wait is bounded; stopped and running processes are killed on any exit.
source "$(dirname "$0")/lib_e2e.sh"
NP=3
RUN_PID="" # mpirun of the case under way
declare -a RANK_PIDS=()

LLM_EXE=$(readlink -f "$MDI_LLM")

# signal_ranks SIG : send SIG to the case's rank processes that are still mdi-llm
# (a pid that has been reused by another program is left alone)
signal_ranks() {
  local p
  for p in "${RANK_PIDS[@]}"; do
    [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$LLM_EXE" ] && kill "-$1" "$p" 2>/dev/null || true
  done
}

# End the case's processes (continue the stopped ones so they can die).
cleanup_run() {
  signal_ranks CONT
  [ -n "$RUN_PID" ] && kill -KILL "$RUN_PID" 2>/dev/null || true
  signal_ranks KILL
  [ -n "$RUN_PID" ] && wait "$RUN_PID" 2>/dev/null || true
  RUN_PID=""
  RANK_PIDS=()
}

cleanup() {
  cleanup_run
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# About 80 tokens/s on 3 ranks either way; the seeds give greedy text that does not
# repeat one piece, so the prefix check means something.
# The time limits are the promises (10 s after a kill, 15 s after a stall) in the
# release build; the sanitizer build, ~30x slower, checks the same paths for
# memory errors with room to finish.
if ldd "$MDI_LLM" 2>/dev/null | grep libasan >/dev/null; then # sanitizer build: ~30x slower
  CONFIG='{"dim": 128, "hidden_dim": 344, "n_layers": 6, "n_heads": 4, "vocab_size": 512'
  SEED=9 KILL_LIMIT=30 STALL_LIMIT=45
else
  CONFIG='{"dim": 512, "hidden_dim": 1376, "n_layers": 8, "n_heads": 8, "vocab_size": 512'
  SEED=8 KILL_LIMIT=10 STALL_LIMIT=15
fi
echo "$CONFIG, \"max_seq_len\": 2048}" >"$TMP/model.json"
"$MDI_CONVERT" --synthetic "$TMP/model.json" --seed "$SEED" -o "$TMP/shards" --shards "$NP" --quiet
GEN=(--model "$TMP/shards" --prompt "Once upon a time" --temperature 0)

# start NAME ARGS... : mpirun on NP ranks in the background; RUN_PID, RANK_PIDS[rank]
start() {
  local name=$1; shift
  RANK_PIDS=()
  "${MPIEXEC[@]}" -np "$NP" "$MDI_LLM" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  RUN_PID=$!
  local i p r
  for i in $(seq 1 100); do # up to 10 s for every rank to start
    for p in $(pgrep -P "$RUN_PID" 2>/dev/null || true); do
      r=$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
      [ -n "$r" ] && RANK_PIDS[$r]=$p
    done
    [ "${#RANK_PIDS[@]}" -eq "$NP" ] && return 0
    sleep 0.1
  done
  echo "start $name: found ${#RANK_PIDS[@]} of $NP rank processes"
  return 1
}

# wait_output NAME BYTES : until stdout holds BYTES bytes (up to 60 s; 1 if the run ended first)
# wait_started NAME : wait up to 60 s for rank 0's header line, printed once set-up
# (which --setup-timeout covers, not --timeout) is over
wait_started() {
  local i
  for i in $(seq 1 600); do
    grep -q "^mdi-llm: $NP ranks," "$TMP/$1.err" && return 0
    kill -0 "$RUN_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

wait_output() {
  local i
  for i in $(seq 1 600); do
    [ "$(stat -c %s "$TMP/$1.out")" -ge "$2" ] && return 0
    kill -0 "$RUN_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# wait_end LIMIT : wait up to LIMIT s for mpirun to exit; sets RC (124: still running,
# then killed) and ELAPSED (tenths of a second)
wait_end() {
  local limit=$1 t0=${EPOCHREALTIME/./} i
  for i in $(seq 1 $((limit * 10))); do
    kill -0 "$RUN_PID" 2>/dev/null || break
    sleep 0.1
  done
  ELAPSED=$(( (${EPOCHREALTIME/./} - t0) / 100000 ))
  if kill -0 "$RUN_PID" 2>/dev/null; then
    RC=124
    cleanup_run
    return
  fi
  RC=0
  wait "$RUN_PID" || RC=$?
  RUN_PID=""
  cleanup_run # ranks mpirun left behind, if any
}

# ---- reference: the same greedy run, run to its end ----------------------------------
timeout 120 "${MPIEXEC[@]}" -np "$NP" "$MDI_LLM" "${GEN[@]}" --samples 1 --max-tokens 300 --quiet \
  >"$TMP/ref.out" 2>"$TMP/ref.err" || { fail "reference run"; cat "$TMP/ref.err"; exit 1; }
REF_LEN=$(( $(stat -c %s "$TMP/ref.out") - 1 )) # without the final newline

# ---- a rank is killed ------------------------------------------------------------------
if start kill "${GEN[@]}" --samples 1 --max-tokens 2000 && wait_output kill 400; then
  kill -KILL "${RANK_PIDS[1]}"
  wait_end "$KILL_LIMIT"
  n=$(stat -c %s "$TMP/kill.out")
  if [ "$RC" -eq 124 ]; then fail "killed rank: job still running $KILL_LIMIT s after the kill"
  elif [ "$RC" -eq 0 ]; then fail "killed rank: mpirun exited 0"
  else pass "killed rank: job ended with status $RC after $((ELAPSED / 10)).$((ELAPSED % 10)) s"; fi
  if grep -qE "rank 1 .*(signal 9|Killed)" "$TMP/kill.err"; then pass "killed rank: stderr names rank 1"
  else fail "killed rank: stderr does not name rank 1:"; head -20 "$TMP/kill.err"; fi
  m=$(( n < REF_LEN ? n : REF_LEN ))
  if [ "$n" -ge 400 ] && cmp -s -n "$m" "$TMP/kill.out" "$TMP/ref.out"; then
    pass "killed rank: the $n bytes streamed before the kill are kept and match the greedy run"
  else fail "killed rank: output of $n bytes is not a prefix of the greedy run"; fi
else
  fail "killed rank: no output to interrupt"; head -5 "$TMP/kill.err"; cleanup_run
fi

# ---- a rank stops answering ------------------------------------------------------------
# stall VICTIM SAMPLES MAX PATTERN : SIGSTOP rank VICTIM; the job must end within STALL_LIMIT s
# with 1 to MAX lines matching PATTERN
stall() {
  local victim=$1 samples=$2 max=$3 pat=$4 name="stop$1"
  # one sample streams its text: wait for some; several print whole lines: give them 3 s
  if ! start "$name" "${GEN[@]}" --samples "$samples" --max-tokens 2000 --timeout 3 ||
     { [ "$samples" -eq 1 ] && ! wait_output "$name" 100; } ||
     { [ "$samples" -gt 1 ] && ! { wait_started "$name" && sleep 3 && kill -0 "$RUN_PID"; }; }; then
    fail "stopped rank $victim: no output to interrupt"; head -5 "$TMP/$name.err"; cleanup_run
    return
  fi
  kill -STOP "${RANK_PIDS[$victim]}"
  wait_end "$STALL_LIMIT"
  if [ "$RC" -eq 124 ]; then fail "stopped rank $victim: job still running after $STALL_LIMIT s"; return; fi
  if [ "$RC" -eq 0 ]; then fail "stopped rank $victim: mpirun exited 0"; return; fi
  local k
  k=$(grep -cE -- "$pat" "$TMP/$name.err" || true)
  if [ "$k" -ge 1 ] && [ "$k" -le "$max" ]; then
    pass "stopped rank $victim: ended after $((ELAPSED / 10)).$((ELAPSED % 10)) s, status $RC: $(grep -m1 -E -- "$pat" "$TMP/$name.err")"
  else
    fail "stopped rank $victim: '$pat' printed $k times in:"; grep mdi-llm "$TMP/$name.err" | head -5
  fi
}
# (a live rank starved past the check's 1.5 s would be named too: "ranks 1 (vm), 2 (vm)")
stall 1 1 1 "^mdi-llm: rank 0: ranks? ([0-9]+ \([^)]*\), )*1 \(.*\) stopped answering: no message came back round the ring for 3 s"
stall 2 3 1 "^mdi-llm: rank 0: ranks? ([0-9]+ \([^)]*\), )*2 \(.*\) stopped answering"
# several samples print whole lines; the unfinished ones are printed before the abort
if [ "$(grep -c '^\[[012]\] Once' "$TMP/stop2.out")" -eq 3 ]; then
  pass "stopped rank 2: every sample's text so far is kept"
else fail "stopped rank 2: sample text lost:"; head -c 300 "$TMP/stop2.out"; echo; fi
# rank 0 stopped: rank 1 (waiting on it) and rank 2 may both speak; both blame rank 0
stall 0 1 2 "^mdi-llm: rank [12]: (no message from rank 0 \(.*\) for 7\.5 s: that stage|rank 0 \(.*\)) stopped answering"

# ---- start-up never ends (--setup-timeout) ---------------------------------------------
# A prompt file that is a FIFO with no writer blocks rank 0 in open(), before any
# message exists for --timeout to miss. The start-up watchdog ends the job; its line
# names the rank and what it was doing. Rank 0 gathers every set-up agreement and names
# the ranks it has not heard from; a waiting rank other than 0 speaks 10 s or more
# after the limit, so only when rank 0 cannot.
mkfifo "$TMP/fifo"
"$MDI_CONVERT" --synthetic "$TMP/model.json" --seed "$SEED" -o "$TMP/one.h5" --quiet
# (a rank's own work counts against the limit, its waits for the others do not;
# sanitizer builds get 4x)
S3=$((3 * E2E_SCALE))
SETUP_PAT="did not finish start-up within $S3 s: it was reading the prompt file $TMP/fifo for [0-9.]+ s \(--setup-timeout sets the limit\)\$"
SETUP_LIMIT=$((STALL_LIMIT + 15))
# The stopped-rank cases stop a rank once rank 0 blocks on the FIFO, so MPI's start
# and set-up up to there must fit in their limit, under load too
ST=$((8 * E2E_SCALE))
STOP_LIMIT=$((ST + 25 * E2E_SCALE))

# setup_case NAME LIMIT PATTERN MAX_LINES CMD... : CMD ends within LIMIT s, not with 0, and
# its first "did not finish start-up" line matches PATTERN, with at most MAX_LINES such lines
setup_case() {
  local name=$1 limit=$2 pat=$3 max=$4 rc=0 t0=${EPOCHREALTIME/./} t first k
  shift 4
  timeout "$limit" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" || rc=$?
  t=$(( (${EPOCHREALTIME/./} - t0) / 100000 ))
  first=$(grep -m1 "did not finish start-up" "$TMP/$name.err" || true)
  k=$(grep -c "did not finish start-up" "$TMP/$name.err" || true)
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then fail "$name: status $rc after $((t / 10)).$((t % 10)) s"
  elif ! grep -qE -- "$pat" <<<"$first"; then
    fail "$name: first line '$first' in:"; grep mdi-llm "$TMP/$name.err" | head -5
  elif [ "$k" -gt "$max" ]; then fail "$name: $k lines:"; grep "did not finish" "$TMP/$name.err"
  else pass "$name: status $rc after $((t / 10)).$((t % 10)) s: $first"; fi
}

# one process (no mpirun); no statistics file is left behind (it is written after the run)
setup_case "FIFO prompt file, 1 process" "$SETUP_LIMIT" "^mdi-llm: $SETUP_PAT" 1 \
  "$MDI_LLM" --model "$TMP/one.h5" --prompt-file "$TMP/fifo" --setup-timeout "$S3" --stats-json "$TMP/st.json"
if compgen -G "$TMP/st.json*" >/dev/null; then fail "FIFO prompt file: left $(ls "$TMP"/st.json*)"
else pass "FIFO prompt file: no statistics file left behind"; fi
setup_case "FIFO prompt file, $NP ranks" "$SETUP_LIMIT" "^mdi-llm: rank 0 \(.*\): $SETUP_PAT" 1 \
  "${MPIEXEC[@]}" -np "$NP" "$MDI_LLM" --model "$TMP/shards" --prompt-file "$TMP/fifo" --setup-timeout "$S3"

# at_fifo PID : wait up to 30 s for PID to block opening the FIFO (in set-up, past
# MPI_Init): the kernel names where a sleeping task waits ("0" while it runs)
at_fifo() {
  local i
  for i in $(seq 1 $((300 * E2E_SCALE))); do
    [ "$(cat "/proc/$1/wchan" 2>/dev/null || true)" = wait_for_partner ] && return 0
    sleep 0.1
  done
  echo "rank 0 (pid $1) was not seen waiting on the FIFO (/proc/$1/wchan)"
  return 1
}

# stopped_case NAME VICTIM PATTERN MAX_LINES : rank 0 blocks on the FIFO; rank VICTIM is
# stopped; then (VICTIM > 0) the FIFO gets a prompt, so rank 0 goes on to an
# agreement that VICTIM never joins
stopped_case() {
  local name=$1 victim=$2 pat=$3 max=$4 first k
  if ! start "$name" --model "$TMP/shards" --prompt-file "$TMP/fifo" --setup-timeout "$ST" ||
     ! at_fifo "${RANK_PIDS[0]}"; then
    fail "$name: did not start"; cleanup_run; return
  fi
  kill -STOP "${RANK_PIDS[$victim]}"
  if [ "$victim" -gt 0 ]; then
    sleep 0.5 # the other ranks reach their next agreement
    timeout 10 sh -c 'echo "Once upon a time" >"$1"' sh "$TMP/fifo" || true
  fi
  wait_end "$STOP_LIMIT"
  first=$(grep -m1 "did not finish start-up" "$TMP/$name.err" || true)
  k=$(grep -c "did not finish start-up" "$TMP/$name.err" || true)
  if [ "$RC" -eq 124 ]; then fail "$name: still running after $STOP_LIMIT s"
  elif [ "$RC" -eq 0 ]; then fail "$name: mpirun exited 0"
  elif ! grep -qE -- "$pat" <<<"$first"; then
    fail "$name: first line '$first' in:"; grep mdi-llm "$TMP/$name.err" | head -5
  elif [ "$k" -gt "$max" ]; then fail "$name: $k lines:"; grep "did not finish" "$TMP/$name.err"
  else pass "$name: ended after $((ELAPSED / 10)).$((ELAPSED % 10)) s, status $RC: $first"; fi
}
# rank 1 stopped: rank 0 names it (at the limit + its grace of 2 s); the broadcast
# of an agreement may hold rank 2 behind rank 1 as well
stopped_case "rank 1 stopped in set-up" 1 \
  "^mdi-llm: rank 0 \(.*\): did not finish start-up within $ST s: it was waiting for (rank 1|ranks 1 and 2) \(after [^)]+\) for [0-9.]+ s" 1
# rank 0 stopped: its watchdog stops too; rank 1, waiting for it, ends the job after
# the limit + 10 s. When mpirun continues rank 0 to end it, rank 0 may add its own line.
stopped_case "rank 0 stopped in set-up" 0 \
  "^mdi-llm: rank 1 \(.*\): did not finish start-up within $ST s: it was waiting for rank 0 \(after [^)]+\) for [0-9.]+ s" 2

# A rank that never reaches MPI_Init (here a shell blocked reading the FIFO before it
# would start mdi-llm): rank 0 waits in MPI_Init, which the watchdog covers too.
setup_case "a rank that never starts MPI" "$SETUP_LIMIT" \
  "^mdi-llm: rank 0 \(.*\): did not finish start-up within $S3 s: it was waiting for the other ranks \(after starting MPI\) for [0-9.]+ s" 1 \
  "${MPIEXEC[@]}" -np 1 "$MDI_LLM" --model "$TMP/one.h5" --prompt hi --setup-timeout "$S3" : \
  -np 1 sh -c 'read -r x <"$1"; exec "$2" --model "$3" --prompt hi --setup-timeout "$4"' \
  sh "$TMP/fifo" "$MDI_LLM" "$TMP/one.h5" "$S3"

# A rank that starts late but within the wait's grace (2 s): the job runs, as the wait
# did not eat rank 0's own budget (release builds only: a sanitizer build's start-up
# under load can take the grace; test_watchdog checks the rule itself)
if [ "$E2E_SCALE" -gt 1 ]; then
  pass "a rank that starts late: checked in release builds only"
elif out=$(timeout "$SETUP_LIMIT" "${MPIEXEC[@]}" -np 1 "$MDI_LLM" --model "$TMP/one.h5" --prompt hi \
    --setup-timeout "$S3" --max-tokens 4 --temperature 0 : -np 1 sh -c \
    'sleep "$4"; exec "$1" --model "$2" --prompt hi --setup-timeout "$3" --max-tokens 4 --temperature 0' \
    sh "$MDI_LLM" "$TMP/one.h5" "$S3" "$S3.5" 2>"$TMP/lateok.err") && [ -n "$out" ]; then
  pass "a rank $S3.5 s late with --setup-timeout $S3: the job runs"
else fail "a rank $S3.5 s late:"; head -5 "$TMP/lateok.err"; fi
finish
