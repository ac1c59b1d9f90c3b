#!/usr/bin/env bash
# An edge cluster on one machine: N emulated hosts, each a network namespace
# with its own address, hostname and host-local disk, joined by a bridge in a
# further namespace ("the switch"), with optional link shaping. mpirun runs on
# the first host with a real hostfile; jobs/rsh-netns.sh replaces ssh.
# Root only. docs/CLUSTER.md explains the design.
#
#   jobs/cluster.sh up NAME [-n N] [--preset P | --rate MBIT --delay MS]
#                           [--subnet A.B.C] [--slots K] [--ttl SECONDS]
#   jobs/cluster.sh shape NAME (--preset P | --rate MBIT --delay MS)
#   jobs/cluster.sh mpirun NAME [mpirun args...]   mpirun on host h1, hostfile h1..hN
#   jobs/cluster.sh exec NAME HOST PROGRAM [ARGS...]   (HOST: h1..hN or sw)
#   jobs/cluster.sh status NAME
#   jobs/cluster.sh down NAME
#   jobs/cluster.sh deps          install what latency shaping needs (Debian)
#   jobs/cluster.sh presets
#
# NAME (letters and digits, at most 12) prefixes everything the cluster makes:
# namespaces NAME-sw and NAME-h1..NAME-hN (also the hostnames), and the state
# directory $MDI_CLUSTER_ROOT/NAME (default /tmp/mdi-cluster/NAME). Host K sees
# its own disk, STATE/disk/hK, at STATE/local, and no other host's disk.
# Addresses are A.B.C.K/24 (default 10.77.0.K) and exist only inside these
# namespaces: nothing is routed to or from the machine's own network.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root_dir=${MDI_CLUSTER_ROOT:-/tmp/mdi-cluster}

die() { echo "cluster: $*" >&2; exit 1; }
log() { echo "cluster: $*" >&2; }

# preset NAME -> "MBIT MS"
preset() {
  case $1 in
    none) echo "0 0" ;;
    gige) echo "1000 0" ;;
    fe2ms) echo "100 2" ;;
    wifi) echo "50 5" ;;
    *) die "unknown preset '$1' (none, gige, fe2ms, wifi)" ;;
  esac
}

presets() {
  cat <<'EOF'
none    no shaping: veth speed, ~0.05 ms round trip
gige    gigabit Ethernet: 1000 Mbit/s per link, no added latency
fe2ms   100 Mbit/s per link, 2 ms one-way latency (4 ms round trip)
wifi    Wi-Fi-like: 50 Mbit/s per link, 5 ms one-way latency (10 ms round trip)
custom  --rate MBIT (0 = unlimited) --delay MS (decimal, one-way; 0 = none)
EOF
}

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces)"; }

check_name() {
  [[ $1 =~ ^[A-Za-z0-9]{1,12}$ ]] || die "cluster name '$1' must be 1-12 letters or digits"
  state=$root_dir/$1
}

# Install Debian packages that are missing (as jobs/setup.sh does).
install_pkgs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# Base tools: iproute2 (ip, tc), util-linux (unshare, nsenter, mount).
base_deps() {
  command -v ip >/dev/null && command -v tc >/dev/null || install_pkgs iproute2
  command -v nsenter >/dev/null && command -v unshare >/dev/null || install_pkgs util-linux
}

# Latency without netem: iptables (NFQUEUE rule) + the netdelay program, built here.
delay_deps() {
  command -v iptables >/dev/null && [ -f /usr/include/libnetfilter_queue/libnetfilter_queue.h ] ||
    install_pkgs iptables libnetfilter-queue-dev gcc libc6-dev
}

# jobs/netdelay.c -> DIR/netdelay
build_netdelay() {
  netdelay=$1/netdelay
  [ -x "$netdelay" ] && return 0
  mkdir -p "$1"
  gcc -O2 -std=c11 -Wall -o "$netdelay" "$here/netdelay.c" -lnetfilter_queue -lnfnetlink ||
    die "cannot build $here/netdelay.c (needs libnetfilter-queue-dev)"
}

load_state() {
  [ -f "$state/cluster.env" ] || die "no cluster '$name' (no $state/cluster.env)"
  # shellcheck source=/dev/null
  source "$state/cluster.env"
}

# in KEY PROGRAM ARGS... : run in emulated host KEY (h1..hN, sw)
in_host() { MDI_CLUSTER_DIR=$state "$here/rsh-netns.sh" --argv "$@"; }

# Start a keeper: a process in fresh network, UTS and mount namespaces that
# holds them (for --ttl seconds at most). Host keepers mount the cluster's
# /etc/hosts, and the host's disk at STATE/local with STATE/disk hidden.
start_keeper() {
  local key=$1 host=$2 mounts=$3
  local script='echo "$1" >/proc/sys/kernel/hostname || exit 1
if [ "$3" = 1 ]; then
  mount --bind "$2/etc/hosts" /etc/hosts || exit 1
  mount --bind "$2/etc/resolv.conf" /etc/resolv.conf 2>/dev/null || true
  mount --bind "$2/disk/$4" "$2/local" || exit 1
  mount -t tmpfs -o ro,size=4k,mode=755 mdi-hidden "$2/disk" || exit 1
fi
: >"$2/run/$4.ready"
exec sleep "$5"'
  setsid unshare --net --uts --mount --propagation slave -- /bin/sh -c "$script" keeper \
    "$host" "$state" "$mounts" "$key" "$ttl" </dev/null >>"$state/run/keepers.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$state/run/$key.keeper"
  local i
  for ((i = 0; i < 100; i++)); do
    [ -e "$state/run/$key.ready" ] && break
    kill -0 "$pid" 2>/dev/null || die "keeper for $key failed: $(tail -3 "$state/run/keepers.log")"
    sleep 0.05
  done
  [ -e "$state/run/$key.ready" ] || die "keeper for $key not ready after 5 s"
  ip netns attach "$name-$key" "$pid"
  echo "$name-$key" >>"$state/run/netns.list"
  KEEPER=$pid
}

cmd_up() {
  local n=3 subnet=10.77.0 slots=1 rate=0 delay=0
  ttl=21600
  while [ $# -gt 0 ]; do
    case $1 in
      -n) n=$2; shift 2 ;;
      --preset) read -r rate delay <<<"$(preset "$2")"; shift 2 ;;
      --rate) rate=$2; shift 2 ;;
      --delay) delay=$2; shift 2 ;;
      --subnet) subnet=$2; shift 2 ;;
      --slots) slots=$2; shift 2 ;;
      --ttl) ttl=$2; shift 2 ;;
      *) die "up: unknown option $1" ;;
    esac
  done
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 32 ] || die "-n must be 1..32"
  [[ $slots =~ ^[0-9]+$ ]] && [ "$slots" -ge 1 ] || die "--slots must be >= 1"
  [[ $ttl =~ ^[0-9]+$ ]] && [ "$ttl" -ge 10 ] || die "--ttl must be >= 10 seconds"
  [[ $subnet =~ ^(10|192\.168|172\.(1[6-9]|2[0-9]|3[01]))(\.[0-9]{1,3}){0,2}$ ]] &&
    [ "$(tr -cd . <<<"$subnet" | wc -c)" -eq 2 ] || die "--subnet must be a private A.B.C"
  check_shape "$rate" "$delay"
  base_deps
  [ "$delay" = 0 ] || delay_method >/dev/null
  local k
  for k in sw $(seq -f 'h%g' 1 "$n"); do
    [ ! -e "/run/netns/$name-$k" ] || die "namespace $name-$k exists already"
  done
  mkdir -p "$root_dir"
  mkdir "$state" 2>/dev/null || die "$state exists: cluster '$name' is up (jobs/cluster.sh down $name)"
  trap 'log "up failed: removing what was made"; cmd_down_inner' EXIT
  trap 'exit 130' INT TERM HUP
  mkdir -p "$state/run" "$state/etc" "$state/disk" "$state/local"
  {
    echo "n=$n"; echo "subnet=$subnet"; echo "slots=$slots"; echo "ttl=$ttl"
  } >"$state/cluster.env"
  printf '127.0.0.1\tlocalhost\n' >"$state/etc/hosts"
  printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$state/etc/resolv.conf"
  : >"$state/nodes.tsv"
  : >"$state/hostfile"
  for ((k = 1; k <= n; k++)); do
    printf '%s.%d\t%s-h%d\n' "$subnet" "$k" "$name" "$k" >>"$state/etc/hosts"
    printf '%s-h%d slots=%d\n' "$name" "$k" "$slots" >>"$state/hostfile"
    mkdir -p "$state/disk/h$k"
  done
  touch "$state/run/alive"

  start_keeper sw "$name-sw" 0
  printf 'sw\t%s-sw\t-\t%s-sw\t%s\n' "$name" "$name" "$KEEPER" >>"$state/nodes.tsv"
  ip -n "$name-sw" link add br0 type bridge
  ip -n "$name-sw" link set br0 up
  for ((k = 1; k <= n; k++)); do
    start_keeper "h$k" "$name-h$k" 1
    printf 'h%d\t%s-h%d\t%s.%d\t%s-h%d\t%s\n' "$k" "$name" "$k" "$subnet" "$k" "$name" "$k" \
      "$KEEPER" >>"$state/nodes.tsv"
    # the veth pair is born inside the two namespaces: nothing appears in ours
    ip link add "p$k" netns "$name-sw" type veth peer name eth0 netns "$name-h$k"
    ip -n "$name-sw" link set "p$k" master br0
    ip -n "$name-sw" link set "p$k" up
    ip -n "$name-h$k" link set lo up
    ip -n "$name-h$k" addr add "$subnet.$k/24" dev eth0
    ip -n "$name-h$k" link set eth0 up
  done
  apply_shape "$rate" "$delay"
  trap - EXIT INT TERM HUP
  log "up: $n hosts $name-h1..$name-h$n on $subnet.0/24 (state $state, keepers live ${ttl}s)"
  log "up: host-local directory $state/local (host K's files: $state/disk/hK)"
}

check_shape() {
  [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -le 100000 ] || die "--rate must be whole Mbit/s, 0..100000"
  [[ $2 =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v d="$2" 'BEGIN { exit !(d <= 10000) }' ||
    die "--delay must be milliseconds, 0..10000"
}

# How latency is added: netem where the kernel has it, else netdelay (NFQUEUE).
delay_method() {
  if [ -z "${delay_how:-}" ]; then
    if [ -d /sys/module/sch_netem ] || { [ -r /proc/config.gz ] &&
      zgrep -qE '^CONFIG_NET_SCH_NETEM=(y|m)' /proc/config.gz; }; then
      delay_how=netem
    else
      delay_deps
      delay_how=nfqueue
    fi
  fi
  echo "$delay_how"
}

# Remove any shaping: qdiscs, the nft table, the netdelay daemons.
clear_shape() {
  local k pid
  for ((k = 1; k <= n; k++)); do
    tc -n "$name-h$k" qdisc del dev eth0 root 2>/dev/null || true
    tc -n "$name-sw" qdisc del dev "p$k" root 2>/dev/null || true
    in_host "h$k" iptables -t raw -F PREROUTING 2>/dev/null || true
    in_host "h$k" nft delete table inet mdi_delay 2>/dev/null || true
    if [ -f "$state/run/h$k.netdelay" ]; then
      pid=$(cat "$state/run/h$k.netdelay")
      if in_netns_of "$pid" "h$k"; then kill "$pid" 2>/dev/null || true; fi
      rm -f "$state/run/h$k.netdelay"
    fi
  done
  rm -f "$state/shape"
}

# in_netns_of PID KEY: PID lives in host KEY's network namespace
in_netns_of() {
  [ "$(stat -L -c %i "/proc/$1/ns/net" 2>/dev/null)" = "$(stat -L -c %i "/run/netns/$name-$2" 2>/dev/null)" ]
}

# tbf on both ends of every link (host egress = uplink, switch port egress =
# downlink); latency once per packet, on the receiving host's ingress (netdelay)
# or the sending host's egress (netem): one-way delay D, round trip 2D.
apply_shape() {
  local rate=$1 delay=$2 k how=none
  local burst=$((rate * 125000 / 10000)) limit=$((rate * 125000 / 5))
  [ "$burst" -ge 4096 ] || burst=4096
  [ "$limit" -ge 1048576 ] || limit=1048576
  local delay_us
  delay_us=$(awk -v d="$delay" 'BEGIN { printf "%d", d * 1000 + 0.5 }')
  if [ "$delay_us" != 0 ]; then
    delay_method >/dev/null
    how=$delay_how
    [ "$how" != nfqueue ] || build_netdelay "$state/bin"
  fi
  for ((k = 1; k <= n; k++)); do
    if [ "$how" = netem ]; then
      local rate_arg=()
      [ "$rate" = 0 ] || rate_arg=(rate "${rate}mbit")
      tc -n "$name-h$k" qdisc replace dev eth0 root netem delay "${delay_us}us" "${rate_arg[@]}" limit 100000
    elif [ "$rate" != 0 ]; then
      tc -n "$name-h$k" qdisc replace dev eth0 root tbf rate "${rate}mbit" burst "$burst" limit "$limit"
    fi
    [ "$rate" = 0 ] ||
      tc -n "$name-sw" qdisc replace dev "p$k" root tbf rate "${rate}mbit" burst "$burst" limit "$limit"
    [ "$how" = nfqueue ] && start_netdelay "h$k" "$delay_us"
  done
  echo "rate_mbit=$rate delay_ms=$delay delay_method=$how" >"$state/shape"
  log "shape: rate ${rate} Mbit/s (0 = unlimited), one-way delay ${delay} ms ($how)"
}

# netdelay in host KEY's namespaces, then the rule that feeds it.
start_netdelay() {
  local key=$1 us=$2 i
  local logf=$state/run/$key.netdelay.log
  : >"$logf"
  MDI_CLUSTER_DIR=$state setsid "$here/rsh-netns.sh" --argv "$key" "$netdelay" --queue 0 --delay-us "$us" \
    --lifetime "$ttl" --watch "$state/run/alive" </dev/null >"$logf" 2>&1 &
  echo $! >"$state/run/$key.netdelay"
  for ((i = 0; i < 100; i++)); do
    grep -q ready "$logf" && break
    kill -0 "$(cat "$state/run/$key.netdelay")" 2>/dev/null || die "netdelay on $key failed: $(cat "$logf")"
    sleep 0.05
  done
  grep -q ready "$logf" || die "netdelay on $key not ready after 5 s"
  # the xtables NFQUEUE target (this kernel has no nft queue); nft where only that works
  in_host "$key" iptables -t raw -A PREROUTING -i eth0 -j NFQUEUE --queue-num 0 2>/dev/null ||
    in_host "$key" nft add table inet mdi_delay '{ chain ingress { type filter hook prerouting priority raw; iifname "eth0" queue num 0; }; }' ||
    die "cannot add the NFQUEUE rule on $key (kernel lacks xt_NFQUEUE and nft_queue)"
}

cmd_shape() {
  local rate="" delay=0
  while [ $# -gt 0 ]; do
    case $1 in
      --preset) read -r rate delay <<<"$(preset "$2")"; shift 2 ;;
      --rate) rate=$2; shift 2 ;;
      --delay) delay=$2; shift 2 ;;
      *) die "shape: unknown option $1" ;;
    esac
  done
  [ -n "$rate" ] || die "shape: give --preset P or --rate MBIT [--delay MS]"
  check_shape "$rate" "$delay"
  load_state
  clear_shape
  apply_shape "$rate" "$delay"
}

# mpirun on host h1 over the cluster's hostfile, TCP restricted to its subnet.
cmd_mpirun() {
  load_state
  [[ $here != *" "* ]] || die "the path $here has a space: Open MPI cannot use it as rsh agent"
  # shellcheck source=jobs/env.sh
  source "$here/env.sh"
  local cidr=$subnet.0/24
  MDI_CLUSTER_DIR=$state exec "$here/rsh-netns.sh" --argv h1 "${MDI_CLUSTER_MPIRUN:-mpirun}" \
    --hostfile "$state/hostfile" \
    --mca plm_rsh_agent "$here/rsh-netns.sh" --mca plm_rsh_no_tree_spawn 1 \
    --mca btl self,vader,tcp --mca btl_tcp_if_include "$cidr" --mca oob_tcp_if_include "$cidr" \
    --bind-to none "${MDI_MPIRUN_FLAGS[@]}" "$@"
}

cmd_status() {
  load_state
  local k shape="none"
  [ -f "$state/shape" ] && shape=$(cat "$state/shape")
  echo "cluster $name: $n hosts on $subnet.0/24, state $state"
  echo "shaping: $shape"
  while read -r key host addr ns pid; do
    local alive=gone
    in_netns_of "$pid" "$key" && alive="up (keeper $pid)"
    echo "  $key  $host  $addr  $alive"
  done <"$state/nodes.tsv"
  for ((k = 1; k <= n; k++)); do
    echo "  h$k eth0: $(tc -n "$name-h$k" qdisc show dev eth0 | head -1)"
  done
  if command -v ping >/dev/null && [ "$n" -ge 2 ]; then
    # -U: user-to-user time; the kernel's receive stamp predates the ingress delay
    echo "  ping h1 -> h2: $(in_host h1 ping -U -c 3 -i 0.2 -W 2 "$subnet.2" | tail -1)"
  fi
}

# Everything the cluster made, found from its state: processes in its
# namespaces (keepers, netdelay, anything left running there), the named
# namespaces (which takes the veths and the bridge with them), the state dir.
cmd_down_inner() {
  [ -d "$state" ] || return 0
  rm -f "$state/run/alive"
  local inodes=() ns pid p i key
  if [ -f "$state/run/netns.list" ]; then
    while read -r ns; do
      i=$(stat -L -c %i "/run/netns/$ns" 2>/dev/null) && inodes+=("$i")
    done <"$state/run/netns.list"
  fi
  for p in "$state"/run/*.keeper; do # a keeper whose namespace never got its name
    [ -f "$p" ] || continue
    pid=$(cat "$p")
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sleep ] || continue
    i=$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null) || continue
    [ "$i" != "$(stat -L -c %i /proc/self/ns/net)" ] && inodes+=("$i")
  done
  local self_ns
  self_ns=$(stat -L -c %i /proc/self/ns/net)
  for sig in TERM TERM TERM KILL; do
    local left=0
    for p in /proc/[0-9]*; do
      i=$(stat -L -c %i "$p/ns/net" 2>/dev/null) || continue
      [ "$i" != "$self_ns" ] || continue
      for ns in "${inodes[@]}"; do
        if [ "$i" = "$ns" ]; then kill "-$sig" "${p#/proc/}" 2>/dev/null || true; left=1; fi
      done
    done
    [ "$left" = 0 ] && break
    sleep 1
  done
  if [ -f "$state/run/netns.list" ]; then
    while read -r ns; do ip netns del "$ns" 2>/dev/null || true; done <"$state/run/netns.list"
  fi
  rm -rf "$state"
  rmdir "$root_dir" 2>/dev/null || true
}

cmd_down() {
  [ -d "$state" ] || die "no cluster '$name' ($state does not exist)"
  cmd_down_inner
  log "down: cluster $name removed"
}

sub=${1:-}
shift || true
case $sub in
  presets) presets; exit 0 ;;
  deps)
    need_root; base_deps; delay_deps
    t=$(mktemp -d); build_netdelay "$t"; rm -rf "$t"
    log "deps: ready (jobs/netdelay.c builds)"; exit 0 ;;
  up | shape | mpirun | exec | status | down) ;;
  *) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 2 ;;
esac
need_root
name=${1:?cluster name missing}
shift
check_name "$name"
case $sub in
  up) cmd_up "$@" ;;
  shape) cmd_shape "$@" ;;
  mpirun) cmd_mpirun "$@" ;;
  exec) load_state; in_host "$@" ;;
  status) cmd_status ;;
  down) cmd_down ;;
esac
