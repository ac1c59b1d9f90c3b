#!/usr/bin/env bash
# Bad placements and bad inputs: every rank exits non-zero within seconds,
# rank 0 prints one line naming the problem, nothing hangs.
source "$(dirname "$0")/lib_e2e.sh"
: "${MDI_FIFO_READER:?is set by ctest (test/tests.cmake)}"
need_models
M=$MDI_MODELS_DIR/stories260K
conv() { "$MDI_CONVERT" "$@" --quiet; }
conv "$M/stories260K.bin" --tokenizer "$M/tok512.bin" -o "$TMP/s.h5"
conv "$M/stories260K.bin" --tokenizer "$M/tok512.bin" -o "$TMP/a23" --split 2,3
conv "$M/stories260K.bin" --tokenizer "$M/tok512.bin" -o "$TMP/a32" --split 3,2
conv "$M/stories260K.gguf" -o "$TMP/g23" --split 2,3
conv "$M/stories260K.bin" --tokenizer "$M/tok512.bin" -o "$TMP/h55" --split 2.5,2.5
MPI=("${MPIEXEC[@]}")
P=(--prompt "Once upon a time" --max-tokens 8)

# one_message NAME PATTERN ARGS... : like expect_fail, and the message is printed once
one_message() {
  local name=$1 pat=$2; shift 2
  expect_fail "$name" "$pat" "$@"
  local n
  n=$(grep -cE -- "$pat" "$TMP/err" || true)
  [ "$n" -le 1 ] || fail "$name: message printed $n times"
}

mkdir "$TMP/mixed" "$TMP/gap" "$TMP/overlap" "$TMP/missing" "$TMP/halfgap"
cp "$TMP"/a23/model-00-of-02.* "$TMP/mixed/"; cp "$TMP"/g23/model-01-of-02.* "$TMP/mixed/"
cp "$TMP"/a23/model-00-of-02.* "$TMP/gap/"; cp "$TMP"/a32/model-01-of-02.* "$TMP/gap/"
cp "$TMP"/a32/model-00-of-02.* "$TMP/overlap/"; cp "$TMP"/a23/model-01-of-02.* "$TMP/overlap/"
cp "$TMP"/a23/model-00-of-02.* "$TMP/missing/"
cp "$TMP"/a23/model-00-of-02.* "$TMP/halfgap/"; cp "$TMP"/h55/model-01-of-02.* "$TMP/halfgap/"

one_message "shards of two models" "different models" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/mixed" "${P[@]}"
one_message "gap between shards" "gap or overlap" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/gap" "${P[@]}"
one_message "overlapping shards" "gap or overlap" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/overlap" "${P[@]}"
one_message "half a layer missing between shards" "holds layer 2's MLP and layers 3-4 but layer 2's attention is next" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/halfgap" "${P[@]}"
mkdir "$TMP/stray"; cp "$TMP"/a23/model-*.h5 "$TMP/s.h5" "$TMP/stray/"
one_message "whole-model file beside shards" "stray: model-00-of-02.L000-001.h5 and s.h5 both claim shard index 0" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/stray" "${P[@]}"
one_message "missing shard" "rank 1 .*no shard with index 1" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/missing" "${P[@]}"
one_message "shard count != ranks" "2-way split but this is rank 2: run with -np 2" "${MPI[@]}" -np 3 "$MDI_LLM" --model "$TMP/a23" "${P[@]}"
one_message "more ranks than half-layers" "11 ranks but the model has only 5 layers \(10 half-layers\)" "${MPI[@]}" -np 11 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}"
one_message "split in quarter layers" "--split '2.25,2.75': expected layer counts" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" --split 2.25,2.75 "${P[@]}"
one_message "split and balance at once" "either --split or --balance" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" --split 2.5,2.5 --balance time "${P[@]}"
one_message "balance with shards" "--balance applies to a whole-model file" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/h55" --balance memory "${P[@]}"
one_message "speeds and split at once" "either --split or --speeds" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" --split 2.5,2.5 --speeds 1,2 "${P[@]}"
one_message "speeds with memory balance" "--speeds weighs the time balance" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" --balance memory --speeds auto "${P[@]}"
one_message "speeds with shards" "--speeds applies to a whole-model file" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/h55" --speeds 1,2 "${P[@]}"
one_message "speeds with wrong entry count" "--speeds has 3 entries but 2 ranks" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" --speeds 1,2,1 "${P[@]}"
one_message "speeds with one entry for 2 ranks" "--speeds has 1 entry but 2 ranks" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" --speeds 1 "${P[@]}"
one_message "split with wrong entry count" "--split has 3 entries but 2 ranks" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" --split 1,2,2 "${P[@]}"
one_message "split with wrong sum" "split covers 6 layers but the model has 5" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" --split 3,3 "${P[@]}"
one_message "missing model (3 ranks)" "No such file or directory" "${MPI[@]}" -np 3 "$MDI_LLM" --model "$TMP/nope.h5" "${P[@]}"
one_message "one shard file, not the directory" "expected 0 of 3|2-way split" "${MPI[@]}" -np 3 "$MDI_LLM" --model "$TMP/a23/model-00-of-02.L000-001.h5" "${P[@]}"

# BLIS_ARCH_TYPE values that BLIS would abort on or misread: refused before
# BLIS starts, by every rank together (one rank's environment is enough)
one_message "BLIS_ARCH_TYPE out of range" "BLIS_ARCH_TYPE=99 is not a BLIS kernel set \(0 to [0-9]+, or -1\)" env BLIS_ARCH_TYPE=99 "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}"
one_message "BLIS_ARCH_TYPE a name" "BLIS_ARCH_TYPE='zen3' is not a number: BLIS would read it as 0 and run its 'skx' kernels" env BLIS_ARCH_TYPE=zen3 "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}"
one_message "BLIS_ARCH_TYPE empty" "BLIS_ARCH_TYPE='' is not a number" env BLIS_ARCH_TYPE= "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}"
one_message "BLIS_ARCH_TYPE not built" "BLIS_ARCH_TYPE=2 asks for the 'knc' kernels, which this BLIS was not built with" env BLIS_ARCH_TYPE=2 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}"
one_message "BLIS_ARCH_TYPE on rank 1 only" "^mdi-llm: rank 1 \(.*\): BLIS_ARCH_TYPE=17 asks for the 'cortexa57' kernels" "${MPI[@]}" -np 1 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" : -np 1 env BLIS_ARCH_TYPE=17 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}"
if grep -q "libblis" "$TMP/err"; then fail "BLIS_ARCH_TYPE on rank 1 only: BLIS's own abort ran"; head -5 "$TMP/err"; fi
one_message "BLIS_ARCH_TYPE with --tokenize" "BLIS_ARCH_TYPE=99 is not" env BLIS_ARCH_TYPE=99 "$MDI_LLM" --model "$TMP/s.h5" --tokenize "Once"

# One damaged byte inside the HDF5 file. damage OUT PATTERN DELTA BYTE: a copy
# of s.h5 with BYTE at DELTA past the one place where PATTERN (grep -P) is.
damage() {
  local at
  at=$(LC_ALL=C grep -obUaP "$2" "$TMP/s.h5" | cut -d: -f1)
  if [[ ! $at =~ ^[0-9]+$ ]]; then
    fail "damage $1: '$2' is not in s.h5 once (offsets: ${at:-none}); has the writer's layout changed?"
    return 1
  fi
  cp "$TMP/s.h5" "$1" && printf "$4" | dd of="$1" bs=1 seek=$((at + $3)) conv=notrunc status=none
}
# n_heads' type, a 4-byte integer, made 49184 bits wide: libhdf5 crashed
# converting it (mdi-convert --inspect did). Both readers now check the type.
if damage "$TMP/wide.h5" 'n_heads\x00\x10\x08\x00\x00\x04\x00\x00\x00\x00\x00\x20\x00' 19 '\xc0'; then
  one_message "attribute of a damaged type" "wide.h5: attribute 'n_heads' has a damaged or unsupported number type" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/wide.h5" "${P[@]}"
  one_message "attribute of a damaged type (--inspect)" "^mdi-convert: .*wide.h5: attribute n_heads has a damaged or unsupported number type$" "$MDI_CONVERT" --inspect "$TMP/wide.h5"
fi
# max_seq_len's attribute message with a dataspace size of 50184 bytes:
# libhdf5 reads past its buffer parsing the object header (ASan names it; in
# release builds it may crash). --inspect runs HDF5 in a child process and
# ends with one line; what the child printed before dying comes first.
if damage "$TMP/hdr.h5" '\x01\x00\x0c\x00\x0c\x00\x08\x00max_seq_len\x00' 7 '\xc4'; then
  rc=0
  timeout $((60 * E2E_SCALE)) "$MDI_CONVERT" --inspect "$TMP/hdr.h5" >"$TMP/out" 2>"$TMP/err" || rc=$?
  if [ "$rc" -eq 1 ] && [ ! -s "$TMP/out" ] &&
     tail -1 "$TMP/err" | grep -qE "^mdi-convert: .*hdr.h5 is damaged: the HDF5 library (crashed|failed) reading it"; then
    pass "damaged object header (--inspect): $(tail -1 "$TMP/err")"
  else fail "damaged object header (--inspect): exit $rc, $(tail -1 "$TMP/err")"; fi
fi
# A model cut short (an interrupted copy to an edge host) is named truncated,
# with its size and the size its superblock records, on every rank and by
# --inspect.
whole=$(stat -c %s "$TMP/s.h5")
head -c 300000 "$TMP/s.h5" >"$TMP/cut.h5"
one_message "truncated model" "cut.h5: truncated: it has 300000 bytes, its HDF5 superblock records $whole \\(an interrupted copy\\?\\)" \
  "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/cut.h5" "${P[@]}"
one_message "truncated model (--inspect)" "^mdi-convert: .*cut.h5: truncated: it has 300000 bytes, its HDF5 superblock records $whole " \
  "$MDI_CONVERT" --inspect "$TMP/cut.h5"
for v in -1 0 6; do
  if out=$(BLIS_ARCH_TYPE=$v "$MDI_LLM" --model "$TMP/s.h5" --quiet "${P[@]}" 2>"$TMP/err") &&
     [ "$out" == "$(BLIS_ARCH_TYPE=6 "$MDI_LLM" --model "$TMP/s.h5" --quiet "${P[@]}" 2>/dev/null)" ]; then
    pass "BLIS_ARCH_TYPE=$v runs and gives the same text"
  else fail "BLIS_ARCH_TYPE=$v: run failed or text differs"; head -3 "$TMP/err"; fi
done

# MPMD launches: ranks given different options fail together (they used to
# hang: one rank left the others waiting in a collective); --model and
# --threads may differ per host
one_message "bad option on rank 1 only" "^mdi-llm: rank 1 \(.*\): unknown option '--bogus'" "${MPI[@]}" -np 1 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" : -np 1 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --bogus
one_message "bad option on rank 0 only" "^mdi-llm: unknown option '--bogus'" "${MPI[@]}" -np 1 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --bogus : -np 1 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}"
one_message "--tokenize on rank 1 only" "^mdi-llm: rank 1 was given --tokenize and rank 0 was not: every rank needs the same options \(only --model and --threads may differ\)" "${MPI[@]}" -np 1 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" : -np 1 "$MDI_LLM" --model "$TMP/s.h5" --tokenize "Once"
one_message "--speeds auto on rank 2 only" "^mdi-llm: rank 2 was given --speeds and rank 0 was not" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" : -np 1 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --speeds auto
one_message "--version on rank 1 only" "^mdi-llm: rank 1 was given --version and rank 0 was not: every rank" "${MPI[@]}" -np 1 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" : -np 1 "$MDI_LLM" --version
one_message "--help on rank 0 only" "^mdi-llm: rank 0 was given --help and rank 1 was not: every rank" "${MPI[@]}" -np 1 "$MDI_LLM" --help : -np 1 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}"
one_message "other --speeds on rank 1" "^mdi-llm: rank 1 was given a different --speeds than rank 0" "${MPI[@]}" -np 1 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --speeds 1,2 : -np 1 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --speeds 2,1
one_message "other --max-tokens on rank 1" "^mdi-llm: rank 1 was given a different --max-tokens than rank 0" "${MPI[@]}" -np 1 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" : -np 1 "$MDI_LLM" --model "$TMP/s.h5" --prompt "Once upon a time" --max-tokens 9
ln -s "$TMP/s.h5" "$TMP/elsewhere.h5"
if out=$(timeout 60 "${MPI[@]}" -np 1 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --samples 2 : -np 1 "$MDI_LLM" --model "$TMP/elsewhere.h5" --threads 1 "${P[@]}" --samples 2 2>"$TMP/err") &&
   [ "$out" == "$(timeout 60 "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --samples 2 2>/dev/null)" ]; then
  pass "MPMD with another --model path and --threads on rank 1: same text"
else fail "MPMD with another --model path and --threads: run failed or text differs"; head -3 "$TMP/err"; fi

echo "not a model" >"$TMP/junk.h5"
one_message "not an HDF5 file" "not an HDF5 file" "$MDI_LLM" --model "$TMP/junk.h5" "${P[@]}"
mkdir "$TMP/empty"
one_message "directory without shards" "no shard with index 0" "$MDI_LLM" --model "$TMP/empty" "${P[@]}"

long=$(printf 'Once upon a time %.0s' $(seq 1 200))
one_message "prompt longer than context" "more than the model's context of 512" "$MDI_LLM" --model "$TMP/s.h5" --prompt "$long" --max-tokens 8
one_message "prompt longer than context, default --max-tokens" "more than the model's context of 512" "$MDI_LLM" --model "$TMP/s.h5" --prompt "$long"
one_message "prompt + max tokens over context" "needs 516 positions" "$MDI_LLM" --model "$TMP/s.h5" --prompt "Once upon a time" --max-tokens 512
long70=$(printf 'Once upon a time %.0s' $(seq 1 70)) # fits the context, but not with 256 more
one_message "given --max-tokens 256 over context" "--max-tokens is 256: that needs [0-9]+ positions" "$MDI_LLM" --model "$TMP/s.h5" --prompt "$long70" --max-tokens 256
one_message "empty prompt" "empty" "$MDI_LLM" --model "$TMP/s.h5" --prompt "" --max-tokens 8
printf 'Once upon\n\xff\xfe broken\n' >"$TMP/badutf8"
one_message "prompt not UTF-8" "line 2 of --prompt-file $TMP/badutf8 is not valid UTF-8 at byte 1 \\(0xff\\)" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" --prompt-file "$TMP/badutf8" --max-tokens 8
printf 'Once upon\n\nA dog\n' >"$TMP/blank"
one_message "blank prompt line" "line 2 of --prompt-file $TMP/blank is empty" "$MDI_LLM" --model "$TMP/s.h5" --prompt-file "$TMP/blank" --max-tokens 8
one_message "prompt file is a directory" "--prompt-file $TMP: cannot be read: Is a directory" "$MDI_LLM" --model "$TMP/s.h5" --prompt-file "$TMP" --max-tokens 8
one_message "prompt file missing" "cannot be opened" "$MDI_LLM" --model "$TMP/s.h5" --prompt-file "$TMP/none" --max-tokens 8
one_message "stats file unwritable" "--stats-json .* cannot be written" "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --stats-json "$TMP/no/such/dir/s.json"
mkdir "$TMP/sdir"
one_message "stats file is a directory" "--stats-json $TMP/sdir is a directory" "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --stats-json "$TMP/sdir"
mkfifo "$TMP/sfifo"
one_message "stats file is a pipe without a reader" "--stats-json $TMP/sfifo is a pipe that no process reads" \
  "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --stats-json "$TMP/sfifo"
# What is not a regular file is written through, as a shell's > would: a link
# stays a link, a pipe's reader and stdout get the statistics after the text.
echo old >"$TMP/real.json"
ln -s real.json "$TMP/link.json"
if "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --stats-json "$TMP/link.json" >/dev/null 2>"$TMP/err" &&
  [ -L "$TMP/link.json" ] && grep -q '"per_rank"' "$TMP/real.json"; then pass "stats through a symbolic link"
else fail "stats through a symbolic link: $(ls -l "$TMP/link.json") $(cat "$TMP/err")"; fi
cat "$TMP/sfifo" >"$TMP/fromfifo" &
reader=$!
if "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --stats-json "$TMP/sfifo" >/dev/null 2>"$TMP/err" &&
  wait "$reader" && grep -q '"per_rank"' "$TMP/fromfifo"; then pass "stats into a pipe with a reader, 2 ranks"
else fail "stats into a pipe: $(cat "$TMP/err")"; kill "$reader" 2>/dev/null || true; fi
if "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --temperature 0 --stats-json /dev/stdout >"$TMP/both" 2>"$TMP/err" &&
  head -c 16 "$TMP/both" | grep -q '^Once upon a time' && grep -q '"per_rank"' "$TMP/both"; then
  pass "stats to /dev/stdout, a file: after the text"
else fail "stats to /dev/stdout: $(head -c 200 "$TMP/both") $(cat "$TMP/err")"; fi
if [ -c /dev/full ]; then
  one_message "stats write fails" "--stats-json /dev/full: write failed: No space left on device" \
    "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --stats-json /dev/full
else echo "skip: stats write fails (no /dev/full)"; fi
# --stats-json never costs a file: a model or the prompt file is refused, and
# a run that fails leaves an existing file as it was (the new one is renamed in).
cp "$TMP/s.h5" "$TMP/victim.h5"
one_message "stats file is a model" "--stats-json $TMP/victim.h5 is an HDF5 file \\(a model\\?\\); it is not overwritten" \
  "$MDI_LLM" --model "$TMP/victim.h5" "${P[@]}" --stats-json "$TMP/victim.h5"
cmp -s "$TMP/s.h5" "$TMP/victim.h5" && pass "stats file is a model: model intact" || fail "stats file is a model: model changed"
printf 'Once upon a time\n' >"$TMP/pp"
one_message "stats file is the prompt file" "--stats-json $TMP/pp is the prompt file" \
  "$MDI_LLM" --model "$TMP/s.h5" --prompt-file "$TMP/pp" --stats-json "$TMP/pp"
echo '{"old": 1}' >"$TMP/old.json"
one_message "failed run, existing stats file" "not an HDF5 file" "$MDI_LLM" --model "$TMP/junk.h5" "${P[@]}" --stats-json "$TMP/old.json"
expect_eq "failed run: the old stats file is kept, no temporary left" '{"old": 1}|' \
  "$(cat "$TMP/old.json")|$(ls "$TMP" | grep 'old.json.tmp' || true)"
if "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --stats-json "$TMP/old.json" >/dev/null 2>"$TMP/err" &&
  grep -q '"per_rank"' "$TMP/old.json"; then pass "a run that ends well replaces the stats file"
else fail "stats file not replaced: $(cat "$TMP/err")"; fi

# --output: the text goes to the file, not stdout, on one rank and several;
# a failed write fails the run (mpirun would drop it silently); the file is
# refused where it would cost another, and a run that cannot start leaves an
# existing file as it was and creates none.
want=$("$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --temperature 0 --samples 2 2>/dev/null)
for np in 1 2; do
  rm -f "$TMP/text.txt"
  got=$("${MPI[@]}" -np $np "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --temperature 0 --samples 2 --output "$TMP/text.txt" 2>"$TMP/err")
  expect_eq "--output on $np rank(s): the text in the file, nothing on stdout" "$want|" "$(cat "$TMP/text.txt")|$got"
done
if [ -c /dev/full ]; then
  one_message "--output write fails, 2 ranks" "--output /dev/full: write failed: No space left on device" \
    "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --output /dev/full
else echo "skip: --output write fails (no /dev/full)"; fi
one_message "--output unwritable" "--output $TMP/no/such/dir/t.txt: cannot be written: No such file or directory" \
  "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --output "$TMP/no/such/dir/t.txt"
one_message "--output is a directory" "--output $TMP/sdir is a directory" "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --output "$TMP/sdir"
one_message "--output is a model" "--output $TMP/victim.h5 is an HDF5 file \\(a model\\?\\); it is not overwritten" \
  "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --output "$TMP/victim.h5"
cmp -s "$TMP/s.h5" "$TMP/victim.h5" && pass "--output is a model: model intact" || fail "--output is a model: model changed"
one_message "--output is the prompt file" "--output $TMP/pp is the prompt file" \
  "$MDI_LLM" --model "$TMP/s.h5" --prompt-file "$TMP/pp" --output "$TMP/pp"
expect_eq "--output is the prompt file: prompt intact" "Once upon a time" "$(cat "$TMP/pp")"
rm -f "$TMP/same.txt"
one_message "--output and --stats-json name one new file two ways" "--stats-json and --output name the same file" \
  "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --output "$TMP/same.txt" --stats-json "$TMP/./same.txt"
expect_eq "refused --output: the file it created is gone" "" "$(ls "$TMP" | grep same.txt || true)"
echo old >"$TMP/old.txt"
one_message "failed start, existing --output" "not an HDF5 file" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/junk.h5" "${P[@]}" --output "$TMP/old.txt"
expect_eq "failed start: the old --output file is kept" "old" "$(cat "$TMP/old.txt")"
one_message "failed start, new --output" "not an HDF5 file" "$MDI_LLM" --model "$TMP/junk.h5" "${P[@]}" --output "$TMP/new.txt"
expect_eq "failed start: no --output file created" "" "$(ls "$TMP" | grep new.txt || true)"

# Prompt files as editors write them: a byte order mark and final blank lines
# are not prompts; a prompt far too long is refused before it is encoded.
printf '\xef\xbb\xbfOnce upon a time\r\n\r\n \t\n\n  ' >"$TMP/bom"
out=$("$MDI_LLM" --model "$TMP/s.h5" --prompt-file "$TMP/bom" --temperature 0 --max-tokens 60 2>"$TMP/err")
expect_eq "BOM and final blank lines (white space too): one prompt, the reference text" "$REF1" "$out"
head -c 3000000 /dev/zero | tr '\0' 'a' >"$TMP/huge"
one_message "a 3 MB prompt: refused before encoding" "line 1 of --prompt-file $TMP/huge has 3000000 bytes, at least [0-9]+ tokens: more than the model's context of 512" \
  "$MDI_LLM" --model "$TMP/s.h5" --prompt-file "$TMP/huge"
one_message "group larger than samples" "--group-size 4 is larger than the 2 samples" "$MDI_LLM" --model "$TMP/s.h5" "${P[@]}" --samples 2 --group-size 4

for bad in "--balance fast" "--speeds 0,1" "--speeds 1,0.0005" "--top-p 1e-50" "--speeds 1,-2" "--speeds 0x1,1" "--speeds fast" "--temperature -1" "--top-p 0" "--top-p 1.5" "--top-k -1" "--samples 0" "--max-tokens -1" "--threads 0" "--timeout 0" "--timeout 0.5" "--setup-timeout 0.5" "--seed x" "--bogus"; do
  read -r -a args <<<"$bad"
  one_message "flag $bad" "${args[0]}" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" --prompt hi "${args[@]}"
done

# Limits checked before anything is allocated, and input that would be lost.
one_message "samples beyond the limit" "--samples: '2147483647' is too large \(max 65536\)" "$MDI_LLM" --model "$TMP/s.h5" --prompt hi --samples 2147483647 --max-tokens 1
one_message "threads beyond the limit" "--threads: '1025' is too large \(max 1024\)" "$MDI_LLM" --model "$TMP/s.h5" --prompt hi --threads 1025
seq 1 65537 >"$TMP/many"
one_message "prompt file beyond the limit" "has more than 65536 prompts" "$MDI_LLM" --model "$TMP/s.h5" --prompt-file "$TMP/many" --max-tokens 1
printf 'Once upon\nup\0on\n' >"$TMP/nul"
one_message "NUL byte in a prompt line" "line 2 of --prompt-file $TMP/nul has a NUL byte" "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" --prompt-file "$TMP/nul" --max-tokens 4
printf 'Once upon\n\0\n' >"$TMP/nul2"
one_message "a final line of a NUL byte" "line 2 of --prompt-file $TMP/nul2 has a NUL byte" "$MDI_LLM" --model "$TMP/s.h5" --prompt-file "$TMP/nul2" --max-tokens 4
printf 'Once upon\n \t \nA dog\n' >"$TMP/white"
one_message "a blank line amid the prompts" "line 2 of --prompt-file $TMP/white is blank \\(only spaces and tabs\\)" "$MDI_LLM" --model "$TMP/s.h5" --prompt-file "$TMP/white" --max-tokens 4
one_message "prompt file missing: the reason" "--prompt-file $TMP/none: cannot be opened: No such file or directory" "$MDI_LLM" --model "$TMP/s.h5" --prompt-file "$TMP/none" --max-tokens 8
# Generated text may hold U+0000 (stories260K samples a NUL byte here): a
# sample's "[i]" records still rebuild its text exactly as one sample streams it.
G=(--model "$TMP/s.h5" --prompt Once --max-tokens 500 --temperature 100 --top-p 1 --seed 2 --quiet)
"$MDI_LLM" "${G[@]}" --samples 1 >"$TMP/one" 2>/dev/null
"$MDI_LLM" "${G[@]}" --samples 2 >"$TMP/two" 2>/dev/null
if tr -d '\n' <"$TMP/one" | grep -qaP '\x00'; then
  rebuilt=$(awk 'BEGIN { RS = "\n"; ORS = "" } /^\[0\] \(end:/ { exit } /^\[0\]\+ / { printf "%s", substr($0, 6); next } /^\[0\] / { if (n++) printf "\n"; printf "%s", substr($0, 5) }' "$TMP/two" | od -An -tx1 | tr -d ' \n')
  whole=$(head -c -1 "$TMP/one" | od -An -tx1 | tr -d ' \n')
  expect_eq "a NUL in generated text: the [0] records hold every byte" "$whole" "$rebuilt"
else fail "a NUL in generated text: the one-sample text holds no NUL any more; pick another seed"; fi
if [ -w /dev/full ]; then
  rc=0
  "$MDI_LLM" --model "$TMP/s.h5" --prompt "Once upon a time" --max-tokens 8 --quiet >/dev/full 2>"$TMP/err" || rc=$?
  if [ "$rc" -eq 1 ] && grep -q "writing to standard output failed: No space left on device" "$TMP/err"; then
    pass "text to a full disk: exit 1, named"
  else
    fail "text to a full disk: exit $rc, stderr: $(head -2 "$TMP/err")"
  fi
  echo '{"old": 2}' >"$TMP/kept.json"
  rc=0
  "$MDI_LLM" --model "$TMP/s.h5" --prompt "Once upon a time" --max-tokens 8 --quiet --stats-json "$TMP/kept.json" >/dev/full 2>"$TMP/err" || rc=$?
  expect_eq "text to a full disk: the run failed, the old stats file is kept" '1|{"old": 2}' "$rc|$(cat "$TMP/kept.json")"
  # A failed write stops the generation: the prompt's echo fails first, so no
  # token is generated (without the stop: up to 400, or EOS).
  rc=0
  "$MDI_LLM" --model "$TMP/s.h5" --prompt "Once upon a time" --max-tokens 400 >/dev/full 2>"$TMP/err" || rc=$?
  expect_eq "text to a full disk: generation stops at once" "1|1" "$rc|$(grep -c '^mdi-llm: 0 tokens in' "$TMP/err")"
  rc=0
  timeout 60 "${MPI[@]}" -np 2 "$MDI_LLM" --model "$TMP/s.h5" --prompt "Once upon a time" --max-tokens 400 --samples 1 --output /dev/full >/dev/null 2>"$TMP/err" || rc=$?
  expect_eq "--output to a full disk, 2 ranks: generation stops at once" "1|1" "$((rc != 0))|$(grep -c '^mdi-llm: 0 tokens in' "$TMP/err")"
fi
# A reader that leaves mid-run, while messages of many groups are round the
# ring: rank 0 takes them back and the run ends cleanly, early, with the cause.
# fifo_reader shrinks the pipe to one page before the run opens it and leaves
# after 300 bytes, so the run can write one page + 300 bytes and no more. It
# writes its samples' lines as they end: everything but its last burst (each
# sample's last line and end record, 32 lines) must be more than that.
E=(--model "$TMP/s.h5" --prompt "Once upon a time" --samples 16 --group-size 1 --max-tokens 200 --temperature 0)
timeout 120 "${MPI[@]}" -np 2 "$MDI_LLM" "${E[@]}" --output "$TMP/full.txt" 2>"$TMP/err" >/dev/null
all=$(sed -n 's/^mdi-llm: \([0-9]*\) tokens in.*/\1/p' "$TMP/err")
before_last=$(head -n -32 "$TMP/full.txt" | wc -c)
if [ "$before_last" -le $(($(getconf PAGESIZE) + 300)) ]; then
  fail "--output reader leaves mid-run: the run writes only $before_last bytes before its last burst; it needs more samples or tokens"
fi
mkfifo "$TMP/early"
timeout 120 "$MDI_FIFO_READER" "$TMP/early" 300 "$TMP/early.ready" &
reader=$!
for _ in $(seq 100); do [ -e "$TMP/early.ready" ] && break; sleep 0.1; done
rc=0 rrc=0
if [ -e "$TMP/early.ready" ]; then
  timeout 120 "${MPI[@]}" -np 2 "$MDI_LLM" "${E[@]}" --output "$TMP/early" >/dev/null 2>"$TMP/err" || rc=$?
  kill "$reader" 2>/dev/null || true # gone already, unless the run failed before 300 bytes
  wait "$reader" || rrc=$?
  got=$(sed -n 's/^mdi-llm: \([0-9]*\) tokens in.*/\1/p' "$TMP/err")
  if [ "$rrc" -eq 0 ] && [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q -- "--output $TMP/early: write failed: Broken pipe" "$TMP/err" &&
    [ -n "$got" ] && [ -n "$all" ] && [ "$got" -lt "$all" ]; then
    pass "--output reader leaves mid-run, 2 ranks, 16 groups: stops after $got of $all tokens"
  else
    fail "--output reader leaves mid-run: exit $rc (reader $rrc), $got of $all tokens, stderr: $(head -3 "$TMP/err")"
  fi
else
  kill "$reader" 2>/dev/null || true
  wait "$reader" || rrc=$?
  fail "--output reader leaves mid-run: fifo_reader was not ready within 10 s (exit $rrc)"
fi

# --max-tokens 0 is valid: the prompt is echoed, nothing is generated.
out=$("$MDI_LLM" --model "$TMP/s.h5" --prompt "Once upon a time" --max-tokens 0 2>/dev/null)
expect_eq "--max-tokens 0 echoes the prompt" "Once upon a time" "$out"
finish
