#!/usr/bin/env bash
# Open MPI's "remote shell" for an emulated cluster made by jobs/cluster.sh:
# instead of ssh, enter the emulated host's namespaces (network, hostname,
# mounts) on this machine and run the command there.
#   rsh-netns.sh HOST COMMAND...          rsh semantics: COMMAND's words are
#                                         joined and run by /bin/sh, as ssh does
#   rsh-netns.sh --argv HOST PROGRAM ARGS...   run PROGRAM with ARGS as given
# HOST is a host's key (h1), hostname (NAME-h1) or address. The cluster is the
# one in $MDI_CLUSTER_DIR (jobs/cluster.sh mpirun sets it for mpirun, which
# passes it on to this agent: --mca plm_rsh_agent /path/to/rsh-netns.sh).
set -euo pipefail
dir=${MDI_CLUSTER_DIR:?rsh-netns.sh: MDI_CLUSTER_DIR is not set (use jobs/cluster.sh mpirun)}
argv=0
if [ "${1:-}" = --argv ]; then argv=1; shift; fi
while [ "${1:-}" != "${1#-}" ]; do shift; done # options an ssh would take (-x, -n ...)
host=${1:?usage: rsh-netns.sh [--argv] HOST COMMAND...}
shift
[ $# -gt 0 ] || { echo "rsh-netns.sh: no command for $host" >&2; exit 2; }

# nodes.tsv: key hostname address netns keeper-pid
found=""
while read -r key name addr ns pid; do
  if [ "$host" = "$key" ] || [ "$host" = "$name" ] || [ "$host" = "$addr" ]; then
    found=1
    break
  fi
done <"$dir/nodes.tsv"
[ -n "$found" ] || { echo "rsh-netns.sh: $host is not a host of the cluster in $dir" >&2; exit 1; }

# The keeper process holds the host's namespaces; make sure the pid is still it
# (same network namespace as the named one) before entering through it.
want=$(stat -L -c %i "/run/netns/$ns" 2>/dev/null || true)
have=$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null || true)
if [ -z "$want" ] || [ "$want" != "$have" ]; then
  echo "rsh-netns.sh: host $name is gone (cluster taken down, or its --ttl expired)" >&2
  exit 1
fi

# Start in the caller's directory when the host can see it, else in /.
cd_then='cd "$0" 2>/dev/null || cd /;'
if [ "$argv" = 1 ]; then
  exec nsenter -t "$pid" --net --uts --mount -- /bin/sh -c "$cd_then"' exec "$@"' "$PWD" "$@"
fi
exec nsenter -t "$pid" --net --uts --mount -- /bin/sh -c "$cd_then"' exec /bin/sh -c "$1"' "$PWD" "$*"
