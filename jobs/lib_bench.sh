# Sourced by the benchmark scripts after their option checks, with $here (the
# checkout) and $dir (where the model lives) set: builds mdi-llm and
# mdi-bench if missing, installs the Debian packages named in $bench_tools
# (default jq) if missing, sources env.sh, and makes the synthetic
# TinyLlama-geometry model once (4.4 GB). Sets B (the build directory) and
# model.
[ -x "$here/build/mdi-llm" ] && [ -x "$here/build/mdi-bench" ] || "$here/jobs/setup.sh" "$here/build"
for tool in ${bench_tools:-jq}; do
  command -v "$tool" >/dev/null || {
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get install -y -qq "$([ "$tool" = gnuplot ] && echo gnuplot-nox || echo "$tool")" >&2; }
done
source "$here/jobs/env.sh"
B=$here/build
model=$dir/tinyllama-1.1b.h5
mkdir -p "$dir"
[ -f "$model" ] || "$B/mdi-convert" --synthetic tinyllama-1.1b -o "$model" --quiet
