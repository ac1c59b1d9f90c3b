#!/usr/bin/env bash
# The whole test suite, from a fresh machine: install, build with -Werror,
# run every ctest test; then the same suite built with AddressSanitizer and
# UndefinedBehaviorSanitizer. Used by .ci/run.
#   jobs/test.sh            both builds
#   MDI_SKIP_SANITIZE=1 jobs/test.sh   only the -Werror build
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
jobs/setup.sh "$here/build-test" -DMDI_WERROR=ON
(cd build-test && ctest --output-on-failure -j 2)
if [ "${MDI_SKIP_SANITIZE:-0}" != 1 ]; then
  jobs/setup.sh "$here/build-asan" -DMDI_WERROR=ON -DMDI_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
  # full stacks on malloc so leaks inside the MPI runtime match test/lsan.supp
  # intercept_tls_get_addr=0: LSan otherwise crashes on a bogus dynamic-TLS range
  # of a dlopen'ed MPI component (a sanitizer-runtime issue, not a leak)
  export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:fast_unwind_on_malloc=0:intercept_tls_get_addr=0
  export LSAN_OPTIONS=suppressions=$here/test/lsan.supp:print_suppressions=0
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  (cd build-asan && ctest --output-on-failure -j 2)
fi
