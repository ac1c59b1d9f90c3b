#!/usr/bin/env bash
# Launch mdi-llm with the Open MPI options that matter.
#   jobs/run.sh -n N [--hostfile FILE] [--bind none|core] [--build DIR] -- MDI_LLM_ARGS...
# One host:     jobs/run.sh -n 3 -- --model shards/ --prompt "Once upon a time"
# Edge hosts:   jobs/run.sh -n 3 --hostfile hosts.txt -- --model /data/shards --prompt "..."
#               (hosts.txt: one line per host, "hostA slots=1"; every host needs the
#               mdi-llm binary and its own shard file at the same paths)
# Options passed to mpirun and why:
#   --map-by ppr:1:node or by slot     rank k runs on the k-th slot of the hostfile:
#                                      shard k must be on that host
#   --bind-to none (default) / core    none lets ranks and their threads use any core
#                                      (needed for more ranks than cores and for
#                                      --threads > 1); core pins one rank per core
#   --oversubscribe                    allowed when there are more ranks than cores
#   --mca mpi_yield_when_idle 1        waiting ranks yield the CPU (vital when ranks
#                                      share cores)
#   --allow-run-as-root                added automatically when run as root
#   -x OMP_NUM_THREADS [-x BLIS_ARCH_TYPE]  the same math kernels on every host
#                                      (BLIS_ARCH_TYPE when set: jobs/env.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/jobs/env.sh"
n=1 hostfile="" bind=none build="$here/build"
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n=$2; shift 2 ;;
    --hostfile) hostfile=$2; shift 2 ;;
    --bind) bind=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$build/mdi-llm" ] || { echo "run.sh: $build/mdi-llm not built: run jobs/setup.sh" >&2; exit 1; }
args=(-np "$n" "${MDI_MPIRUN_FLAGS[@]}" --bind-to "$bind")
[ -n "$hostfile" ] && args+=(--hostfile "$hostfile" --map-by slot)
exec mpirun "${args[@]}" "$build/mdi-llm" "$@"
