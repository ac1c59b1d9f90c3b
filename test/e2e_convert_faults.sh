#!/usr/bin/env bash
# mdi-convert when the disk or the input lets it down: a full disk (a small
# tmpfs, root only), an output directory that cannot be written, inputs that
# are truncated or whose header lies, and a conversion killed mid-write.
# Each failure: exit status 1, one line "mdi-convert: ..." naming the problem,
# and nothing under the output name (nor a temporary file, except after SIGKILL).
# Bad inputs run under a 1 GiB address-space limit (not in sanitizer builds),
# so a size read from a lying header cannot become a huge allocation.
source "$(dirname "$0")/lib_e2e.sh"
MOUNTS=()
cleanup() {
  local m
  for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LIMIT_KB=1048576
if ldd "$MDI_CONVERT" 2>/dev/null | grep libasan >/dev/null; then
  LIMIT_KB=unlimited # ASan reserves terabytes of address space up front
fi

# expect_conv NAME OUT WANT ARGS... : mdi-convert ARGS exits 1 within 60 s with one
# stderr line "mdi-convert: ...WANT..." (fixed string), and neither OUT nor OUT.tmp-* exists.
expect_conv() {
  local name=$1 out=$2 want=$3 rc=0
  shift 3
  (ulimit -v "$LIMIT_KB"
   [ -z "${FSIZE_KB:-}" ] || { trap '' XFSZ; ulimit -f "$FSIZE_KB"; } # writes past it fail (EFBIG)
   exec timeout 60 "$MDI_CONVERT" "$@") >"$TMP/out" 2>"$TMP/err" || rc=$?
  local left
  left=$(ls -d "$out" "$out".tmp-* 2>/dev/null || true)
  if [ "$rc" -ne 1 ]; then fail "$name: exit status $rc, expected 1:"; head -3 "$TMP/err"
  elif [ "$(wc -l <"$TMP/err")" -ne 1 ] || ! grep -q '^mdi-convert: ' "$TMP/err"; then
    fail "$name: stderr is not one 'mdi-convert: ' line:"; head -5 "$TMP/err"
  elif ! grep -qF -- "$want" "$TMP/err"; then fail "$name: stderr lacks '$want': $(cat "$TMP/err")"
  elif [ -n "$left" ]; then fail "$name: left behind: $left"
  else pass "$name: $(cat "$TMP/err")"; fi
}

# mount_tmpfs DIR OPTIONS : a private tmpfs at DIR (root only); 1 if that is not possible
mount_tmpfs() {
  mkdir -p "$1"
  [ "$(id -u)" -eq 0 ] || return 1
  mount -t tmpfs -o "$2" tmpfs "$1" 2>"$TMP/mount.err" || return 1
  MOUNTS+=("$1")
}

# ---- disk full -------------------------------------------------------------------------
# The tiny synthetic model is 870 KiB: the disk fills in the first tensor, in the middle
# of the layers, and at the last one.
if mount_tmpfs "$TMP/full" size=1m; then
  umount "$TMP/full"
  for kb in 64 400 860; do
    mount -t tmpfs -o "size=${kb}k" tmpfs "$TMP/full"
    expect_conv "disk full at ${kb} KiB (one file)" "$TMP/full/m.h5" "(disk full?)" \
      --synthetic tiny -o "$TMP/full/m.h5" --quiet
    expect_conv "disk full at ${kb} KiB (2 shards)" "$TMP/full/m" "(disk full?)" \
      --synthetic tiny -o "$TMP/full/m" --shards 2 --quiet
    [ -z "$(ls -A "$TMP/full")" ] || fail "disk full at ${kb} KiB: left $(ls -A "$TMP/full")"
    umount "$TMP/full"
  done
else
  echo "SKIP: disk-full cases: cannot mount a tmpfs here ($(id -un); $(cat "$TMP/mount.err" 2>/dev/null))"
fi

# ---- file size limit -------------------------------------------------------------------
# The same, with the process's file size limit instead of a full disk (no root needed):
# HDF5 then fails as late as closing the file, which once crashed its exit handler.
for kb in 64 400 860; do
  FSIZE_KB=$kb expect_conv "file size limit ${kb} KiB (one file)" "$TMP/m.h5" "(disk full?)" \
    --synthetic tiny -o "$TMP/m.h5" --quiet
  FSIZE_KB=$((kb / 2)) expect_conv "file size limit $((kb / 2)) KiB (2 shards)" "$TMP/m" "(disk full?)" \
    --synthetic tiny -o "$TMP/m" --shards 2 --quiet
done

# ---- output directory not writable -----------------------------------------------------
expect_conv "output under a file" /dev/null/m.h5 "cannot create /dev/null/m.h5.tmp-" \
  --synthetic tiny -o /dev/null/m.h5 --quiet
grep -qF "Not a directory" "$TMP/err" || fail "output under a file: no reason given"
expect_conv "shards under a file" /dev/null/m "cannot create directory /dev/null/m.tmp-" \
  --synthetic tiny -o /dev/null/m --shards 2 --quiet
expect_conv "output directory missing" "$TMP/no/such/m.h5" "No such file or directory" \
  --synthetic tiny -o "$TMP/no/such/m.h5" --quiet
if mount_tmpfs "$TMP/ro" size=1m,ro; then
  why="Read-only file system"
elif [ "$(id -u)" -ne 0 ]; then
  chmod 555 "$TMP/ro"
  why="Permission denied"
else
  why=""
  echo "SKIP: read-only output directory: cannot mount a read-only tmpfs as root ($(cat "$TMP/mount.err"))"
fi
if [ -n "$why" ]; then
  expect_conv "read-only output directory" "$TMP/ro/m.h5" "$why" \
    --synthetic tiny -o "$TMP/ro/m.h5" --quiet
  expect_conv "read-only output directory (shards)" "$TMP/ro/m" "$why" \
    --synthetic tiny -o "$TMP/ro/m" --shards 2 --quiet
fi

# ---- killed while writing --------------------------------------------------------------
# 100 MB of synthetic weights; SIGKILL once the temporary file passes 8 MB. The output
# name must not exist; the temporary file may (nothing can remove it after SIGKILL).
cat >"$TMP/big.json" <<'EOF'
{"dim": 512, "hidden_dim": 1376, "n_layers": 8, "n_heads": 8, "vocab_size": 512, "max_seq_len": 2048}
EOF
"$MDI_CONVERT" --synthetic "$TMP/big.json" -o "$TMP/killed.h5" --quiet 2>"$TMP/err" &
pid=$!
for i in $(seq 1 3000); do # up to ~30 s
  sz=$(stat -c %s "$TMP/killed.h5.tmp-$pid" 2>/dev/null || echo 0)
  [ "$sz" -gt 8000000 ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.01
done
kill -KILL "$pid" 2>/dev/null || true
rc=0
wait "$pid" 2>/dev/null || rc=$?
if [ "$rc" -ne 137 ]; then
  echo "SKIP: killed mid-write: the conversion ended (status $rc) before it could be killed"
elif [ -e "$TMP/killed.h5" ]; then
  fail "killed mid-write: $TMP/killed.h5 exists"
else
  pass "killed mid-write: nothing under the output name ($(ls "$TMP" | grep -c 'killed.h5.tmp-') temporary file left)"
fi
rm -f "$TMP"/killed.h5*

# ---- inputs that are truncated or lie about sizes (stories260K) ------------------------
M=$MDI_MODELS_DIR/stories260K
if [ ! -f "$M/stories260K.bin" ] || [ ! -f "$M/stories260K.gguf" ]; then
  [ "${CI:-}" = true ] && { fail "$M is missing (CI=true: models are required)"; finish; }
  echo "SKIP: bad-input cases: $M is missing"
  finish
  exit
fi
BIN=$M/stories260K.bin TOK=$M/tok512.bin GGUF=$M/stories260K.gguf
O=$TMP/o.h5
# poke_bytes FILE OFFSET HEXBYTES : overwrite bytes in place
poke_bytes() { printf "$(echo "$3" | sed 's/../\\x&/g')" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }

head -c 20 "$BIN" >"$TMP/short.bin"
expect_conv "llama2.c file shorter than its header" "$O" "short.bin: not a recognised model" "$TMP/short.bin" --tokenizer "$TOK" -o "$O"
head -c $(( $(stat -c %s "$BIN") / 2 )) "$BIN" >"$TMP/half.bin"
# (mdi-convert tells formats apart by content: a llama2.c file must match its header)
expect_conv "llama2.c file cut in half" "$O" "half.bin: not a recognised model" "$TMP/half.bin" --tokenizer "$TOK" -o "$O"
cp "$BIN" "$TMP/lie.bin" # dim 65536, hidden 262144, 4096 layers, ...: terabytes
poke_bytes "$TMP/lie.bin" 0 00000100000004000010000000040000000400000000400000001000
expect_conv "llama2.c header with absurd sizes" "$O" "lie.bin: not a recognised model" "$TMP/lie.bin" --tokenizer "$TOK" -o "$O"
cp "$BIN" "$TMP/nan.bin" # token_embedding[100] = NaN (the floats start after the 28-byte header)
poke_bytes "$TMP/nan.bin" $((28 + 4 * 100)) 0000c07f
expect_conv "NaN in a llama2.c weight" "$O" "nan.bin: tensor token_embedding holds a non-finite value (nan) at index 100" "$TMP/nan.bin" --tokenizer "$TOK" -o "$O"
# wq of layer 0, element 5 = 70000 (after the embedding and rms_att): beyond
# f16's range, within bf16's; 3.4e38 rounds past bf16's largest value
WQ5=$((28 + 4 * (512 * 64 + 5 * 64) + 4 * 5))
cp "$BIN" "$TMP/big.bin"
poke_bytes "$TMP/big.bin" "$WQ5" 00b88847
expect_conv "a weight beyond f16's range" "$O" "big.bin: tensor wq of layer 0 holds a value beyond f16's range of +-65504 (70000) at index 5; convert with --dtype bf16 or f32" "$TMP/big.bin" --tokenizer "$TOK" --dtype f16 -o "$O"
if "$MDI_CONVERT" "$TMP/big.bin" --tokenizer "$TOK" --dtype bf16 -o "$O" --quiet 2>"$TMP/err"; then
  pass "70000 converts to bf16"; rm -f "$O"
else fail "70000 to bf16: $(cat "$TMP/err")"; fi
poke_bytes "$TMP/big.bin" "$WQ5" 9ec97f7f
expect_conv "a weight beyond bf16's range" "$O" "tensor wq of layer 0 holds a value beyond bf16's range (3.4e+38) at index 5; convert with --dtype f32" "$TMP/big.bin" --tokenizer "$TOK" --dtype bf16 -o "$O"

head -c 100 "$GGUF" >"$TMP/short.gguf"
expect_conv "GGUF cut inside its header" "$O" "past end of file" "$TMP/short.gguf" -o "$O"
head -c $(( $(stat -c %s "$GGUF") - 1000 )) "$GGUF" >"$TMP/cut.gguf"
expect_conv "GGUF cut inside its tensor data" "$O" "runs past end of file" "$TMP/cut.gguf" -o "$O"
cp "$GGUF" "$TMP/lie.gguf" # n_tensors = 2^62
poke_bytes "$TMP/lie.gguf" 8 0000000000000040
expect_conv "GGUF tensor count past the end of the file" "$O" "n_tensors = 4611686018427387904" "$TMP/lie.gguf" -o "$O"
cp "$GGUF" "$TMP/lie2.gguf" # n_kv = 2^62
poke_bytes "$TMP/lie2.gguf" 16 0000000000000040
expect_conv "GGUF metadata count past the end of the file" "$O" "n_kv = 4611686018427387904" "$TMP/lie2.gguf" -o "$O"
finish
