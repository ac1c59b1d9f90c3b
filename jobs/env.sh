# Sourced by the job scripts: the environment mdi-llm runs best in.
# BLIS 0.9 does not recognise AMD Zen 4/5 and silently falls back to slow
# generic kernels; mdi-llm picks zen3 itself on such CPUs, and this makes the
# choice explicit for every rank mpirun starts. Override by exporting it first.
# The callers run under `set -e`: every test here is an `if`, so that a false
# one cannot become this file's status and stop them.
if [ -z "${BLIS_ARCH_TYPE:-}" ] && grep -q AuthenticAMD /proc/cpuinfo 2>/dev/null &&
  grep -qw avx2 /proc/cpuinfo; then
  export BLIS_ARCH_TYPE=6 # zen3
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# mpirun flags: root needs --allow-run-as-root; more ranks than cores need
# --oversubscribe; waiting ranks must yield the core on a small machine;
# BLIS_ARCH_TYPE goes to every rank when it is set (mpirun warns about an
# unset one, on every run).
MDI_MPIRUN_FLAGS=(--mca mpi_yield_when_idle 1 --oversubscribe -x OMP_NUM_THREADS)
if [ -n "${BLIS_ARCH_TYPE:-}" ]; then
  MDI_MPIRUN_FLAGS+=(-x BLIS_ARCH_TYPE)
fi
if [ "$(id -u)" -eq 0 ]; then
  MDI_MPIRUN_FLAGS+=(--allow-run-as-root)
fi
