#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# Install dependencies, build sparcl (Release, warnings as errors) and run the
# test suite, then the threaded tests under ThreadSanitizer. Extra arguments
# are passed to the first ctest, e.g. `tools/test.sh -R ring`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "==> [1/4] Checking dependencies"
# shellcheck source=tools/deps.sh
source tools/deps.sh
sparcl_install_deps

echo "==> [2/4] Building (build/, Release, SPARCL_WERROR=ON)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSPARCL_WERROR=ON
cmake --build build -j"$(nproc)"

# Machines may have only 2 cores: let Open MPI oversubscribe.
export OMPI_MCA_rmaps_base_oversubscribe=1
if ((EUID == 0)); then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

# -j1: the MPI tests already oversubscribe the cores; running them in parallel
# only makes them slow and flaky.
echo "==> [3/4] Running tests"
ctest --test-dir build --output-on-failure --timeout 600 -j1 "$@"

# The threaded tests again, under ThreadSanitizer (tests/tsan.supp lists
# what is suppressed in Open MPI, which is not instrumented), over the MPI
# transport only: with libfabric and UCX linked in, the instrumented tests
# died with SIGSEGV before any test ran (not investigated yet).
echo "==> [4/4] ThreadSanitizer build (build-tsan/) and the threaded tests"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPARCL_SANITIZE=thread \
  -DSPARCL_BUILD_BENCH=OFF -DSPARCL_TEST_DIRS=mpi -DSPARCL_WERROR=ON \
  -DSPARCL_WITH_OFI=OFF -DSPARCL_WITH_UCX=OFF
cmake --build build-tsan -j"$(nproc)" --target sparcl_mpi_tests
ctest --test-dir build-tsan --output-on-failure --timeout 600 -j1 -L tsan
