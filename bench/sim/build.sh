#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# Builds libsparcl (static, MPI transport only) and sparcl-bench with
# SimGrid's smpicc/smpicxx into build-smpi/ (or $1), for bench/sim/run.sh.
# Needs libsimgrid-dev (apt-get install libsimgrid-dev, or
# SPARCL_WITH_SIMGRID=1 bash tools/deps.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:-$ROOT/build-smpi}
command -v smpicxx >/dev/null || { echo "build.sh: smpicxx not found: apt-get install libsimgrid-dev" >&2; exit 2; }
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
generator=()
if command -v ninja >/dev/null && [[ ! -f $BUILD/Makefile ]]; then generator=(-G Ninja); fi
cmake -S "$ROOT" -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DSPARCL_SMPI=ON "${launcher[@]}"
cmake --build "$BUILD" --target sparcl-bench -j "$(nproc)"
