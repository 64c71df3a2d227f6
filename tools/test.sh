#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# Install dependencies, build sparcl (Release, warnings as errors) and run the
# test suite. Extra arguments are passed to ctest, e.g. `tools/test.sh -R ring`.
# Exits with ctest's status.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "==> [1/3] Checking dependencies"
# shellcheck source=tools/deps.sh
source tools/deps.sh
sparcl_install_deps

echo "==> [2/3] Building (build/, Release, SPARCL_WERROR=ON)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSPARCL_WERROR=ON
cmake --build build -j"$(nproc)"

# Machines may have only 2 cores: let Open MPI oversubscribe.
export OMPI_MCA_rmaps_base_oversubscribe=1
if ((EUID == 0)); then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

# -j1: the MPI tests already oversubscribe the cores; running them in parallel
# only makes them slow and flaky.
echo "==> [3/3] Running tests"
exec ctest --test-dir build --output-on-failure --timeout 600 -j1 "$@"
