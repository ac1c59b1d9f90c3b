#!/usr/bin/env bash
# Three emulated edge hosts on this machine (jobs/cluster.sh: a network
# namespace each, own address and hostname, joined by a bridge): mpirun with a
# real hostfile launches through jobs/rsh-netns.sh, TCP between the hosts. Each
# host holds only its own shard of stories260K; greedy output equals the
# reference, on unshaped and on shaped links. Needs root (skipped otherwise).
source "$(dirname "$0")/lib_e2e.sh"
need_models
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: not root: network namespaces for the emulated hosts cannot be made"
  exit 0
fi
if ! unshare --net --uts --mount true 2>/dev/null; then
  echo "SKIP: this machine does not allow new network namespaces (unshare --net failed)"
  exit 0
fi
M=$MDI_MODELS_DIR/stories260K
JOBS=$(cd "$(dirname "$0")/../jobs" && pwd)
export MDI_CLUSTER_ROOT=$TMP/cluster MDI_CLUSTER_MPIRUN=${MPIEXEC[0]}
C=e2e$$
ST=$MDI_CLUSTER_ROOT/$C
# keepers and delay daemons end on their own after 10 minutes even if this
# script is killed outright; on any exit the cluster is taken down now
trap '"$JOBS/cluster.sh" down "$C" >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM HUP

"$JOBS/cluster.sh" up "$C" -n 3 --ttl 600 2>"$TMP/up.err" || { cat "$TMP/up.err"; fail "cluster up"; finish; }
pass "cluster up: 3 hosts"

# Shard k-1 goes on host k's own disk; every host sees its disk at $ST/local.
"$MDI_CONVERT" "$M/stories260K.bin" --tokenizer "$M/tok512.bin" -o "$TMP/shards" --shards 3 --quiet
for k in 1 2 3; do
  mkdir -p "$ST/disk/h$k/model"
  mv "$TMP"/shards/model-0$((k - 1))-of-03.*.h5 "$ST/disk/h$k/model/"
done
for k in 1 2 3; do
  seen=$("$JOBS/cluster.sh" exec "$C" "h$k" sh -c 'echo "$(hostname) $(ls "$1/local/model") $(ls "$1/disk" | wc -l)"' sh "$ST")
  [[ $seen =~ ^$C-h$k\ model-0$((k - 1))-of-03\.[^\ ]+\.h5\ 0$ ]] && pass "h$k: own hostname, sees only its shard" ||
    fail "h$k sees: $seen"
done

# crun ARGS... : mpirun across the cluster, 120 s at most; stderr in $TMP/err
crun() { timeout 120 "$JOBS/cluster.sh" mpirun "$C" "$@" 2>"$TMP/err"; }
tx_bytes() { ip -n "$C-h$1" -s -j link show dev eth0 | grep -o '"tx":{"bytes":[0-9]*' | grep -o '[0-9]*$'; }
LLM=(-np 3 "$MDI_LLM" --model "$ST/local/model" --temperature 0 --max-tokens 60)

tx0=$(tx_bytes 2)
out=$(crun "${LLM[@]}" --prompt "Once upon a time" --samples 1 --stats-json "$TMP/stats.json") || true
expect_eq "3 hosts, unshaped, prompt 1" "$REF1" "$out"
[ "$out" = "$REF1" ] || head -20 "$TMP/err"
hosts=$(grep -o '"host": "[^"]*"' "$TMP/stats.json" | cut -d'"' -f4 | tr '\n' ' ')
expect_eq "ranks 0,1,2 ran on hosts h1,h2,h3" "$C-h1 $C-h2 $C-h3 " "$hosts"
sent1=$(grep '"rank": 1' "$TMP/stats.json" | grep -o '"bytes_sent": [0-9]*' | grep -o '[0-9]*$')
tx1=$(tx_bytes 2)
if [ -n "$sent1" ] && [ $((tx1 - tx0)) -ge "$sent1" ]; then
  pass "rank 1's $sent1 activation bytes crossed h2's link ($((tx1 - tx0)) bytes on the wire)"
else
  fail "h2 sent $((tx1 - tx0)) bytes on eth0, rank 1 reports ${sent1:-?}: traffic bypassed the link"
fi

crun "${LLM[@]}" --prompt "Once upon a time" >"$TMP/multi" || true
for i in 0 1 2; do
  expect_eq "3 hosts, default 3 samples, sample $i" "$REF1" "$(sample_text "$i" "$TMP/multi")"
done

# Shaped links: 100 Mbit/s with 2 ms one-way latency, where latency can be added.
if [ -d /sys/module/sch_netem ] || zgrep -qE '^CONFIG_NET_SCH_NETEM=(y|m)' /proc/config.gz 2>/dev/null ||
  { command -v iptables >/dev/null && [ -f /usr/include/libnetfilter_queue/libnetfilter_queue.h ]; }; then
  shape=(--preset fe2ms)
else
  shape=(--rate 100)
  echo "note: latency shaping unavailable here (no netem; no iptables/libnetfilter-queue-dev:" \
    "jobs/cluster.sh deps installs them): links are shaped to 100 Mbit/s only"
fi
if "$JOBS/cluster.sh" shape "$C" "${shape[@]}" 2>"$TMP/shape.err"; then
  pass "shape ${shape[*]}"
  out=$(crun "${LLM[@]}" --prompt "The little dog" --samples 1) || true
  expect_eq "3 hosts, shaped ${shape[*]}, prompt 2" "$REF2" "$out"
else
  fail "shape ${shape[*]}: $(tail -2 "$TMP/shape.err")"
fi

# A host without its shard: every rank stops with one message naming that host.
mv "$ST/disk/h3/model" "$ST/disk/h3/gone"
expect_fail "h3 holds no shard" "rank 2 \($C-h3\)" timeout 60 "$JOBS/cluster.sh" mpirun "$C" "${LLM[@]}" --prompt "Hi"
grep -m1 "rank 2" "$TMP/err" || true
mv "$ST/disk/h3/gone" "$ST/disk/h3/model"

expect_fail "rsh agent refuses an unknown host" "not a host of the cluster" \
  env MDI_CLUSTER_DIR="$ST" "$JOBS/rsh-netns.sh" nosuchhost true
expect_fail "a second cluster with the same name is refused" "exists" "$JOBS/cluster.sh" up "$C" -n 2

"$JOBS/cluster.sh" down "$C" 2>/dev/null
left=$(ip netns list | grep -c "^$C-" || true)
[ "$left" -eq 0 ] && [ ! -e "$ST" ] && pass "cluster down removes its namespaces and state" ||
  fail "after down: $left namespaces left, state dir $( [ -e "$ST" ] && echo present || echo gone)"
finish
