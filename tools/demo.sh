#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# Install dependencies, build sparcl (Release) and run the demo on 4 MPI ranks.
# Extra arguments are passed to the demo binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "==> [1/3] Checking dependencies"
# shellcheck source=tools/deps.sh
source tools/deps.sh
sparcl_install_deps

echo "==> [2/3] Building (build/, Release)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"

# Machines may have only 2 cores: let Open MPI oversubscribe.
export OMPI_MCA_rmaps_base_oversubscribe=1
if ((EUID == 0)); then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

echo "==> [3/3] Running demo: mpirun -np 4 build/bench/sparcl-demo $*"
mpirun -np 4 build/bench/sparcl-demo "$@"
