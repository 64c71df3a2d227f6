#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# What CI runs: install dependencies, build, and test sparcl in seven stages,
# each timed (a summary is printed at the end):
#
#   1  dependencies               tools/deps.sh
#   2  Release build              build/, warnings as errors
#   3  Release tests              the whole suite (ctest)
#   4  ASan + UBSan + LSan        build-asan/: every test program and transport
#                                 at reduced rank counts (see docs/reliability.md)
#   5  ThreadSanitizer            build-tsan/: the tests that run the progress
#                                 thread, over MPI, libfabric and UCX
#   6  fuzzing                    build-fuzz/ (clang, libFuzzer): each harness for
#                                 SPARCL_FUZZ_SECONDS (default 5) on its seeds
#   7  SimGrid SMPI               build-smpi/ (bench/sim/build.sh): every algorithm
#                                 on 8 simulated ranks, results checked (seconds)
#
# Usage: tools/test.sh [ctest arguments for stage 3, e.g. -R ring]
#   SPARCL_STAGES="2 3"     runs only the stages listed (default: all)
#   SPARCL_FUZZ_SECONDS=60  runs each fuzz harness longer
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

stages=${SPARCL_STAGES:-1 2 3 4 5 6 7}
jobs=$(nproc)
declare -a summary=()
stage_start=0
current=""

begin_stage() {  # begin_stage <number> <title>
  current="[$1/7] $2"
  stage_start=$SECONDS
  echo "==> $current"
}
end_stage() {
  local took=$((SECONDS - stage_start))
  summary+=("$(printf '%-44s %4d min %02d s' "$current" $((took / 60)) $((took % 60)))")
  echo "==> $current: done in $((took / 60)) min $((took % 60)) s"
}
wanted() { [[ " $stages " == *" $1 "* ]]; }

# Machines may have only 2 cores: let Open MPI oversubscribe.
export OMPI_MCA_rmaps_base_oversubscribe=1
if ((EUID == 0)); then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

if wanted 1; then
  begin_stage 1 "Dependencies"
  if wanted 7; then SPARCL_WITH_SIMGRID=1; fi  # stage 7 needs SimGrid's SMPI
  # shellcheck source=tools/deps.sh
  source tools/deps.sh
  sparcl_install_deps
  end_stage
fi

if wanted 2; then
  begin_stage 2 "Release build (build/)"
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSPARCL_WERROR=ON
  cmake --build build -j"$jobs"
  end_stage
fi

# Single-process GoogleTest cases (named Suite.Case, see sparcl_add_gtest in
# tests/CMakeLists.txt) two at a time; the others with -j1: the multi-process
# tests already oversubscribe the cores, and running them in parallel only
# makes them slow and flaky.
run_tests() {  # run_tests <build folder> [ctest arguments]
  local dir=$1
  shift
  if (($#)); then  # the caller's selection, as it is
    ctest --test-dir "$dir" --output-on-failure --timeout 600 -j1 "$@"
    return
  fi
  ctest --test-dir "$dir" --output-on-failure --timeout 600 -R '\.' -j2
  ctest --test-dir "$dir" --output-on-failure --timeout 600 -E '\.' -j1
}

if wanted 3; then
  begin_stage 3 "Release tests"
  run_tests build "$@"
  end_stage
fi

# The sanitizer options (halt on the first UBSan report, LeakSanitizer on,
# suppressions for the uninstrumented MPI, libfabric and UCX) come with each
# test from tests/CMakeLists.txt, so that ctest in build-asan/ alone does the same.
if wanted 4; then
  begin_stage 4 "ASan + UBSan + LSan build and tests (build-asan/)"
  # -O1 -g1: an instrumented file compiles in 40-50% of the time of -O2 -g
  # (collectives/ring.cpp 11.5 s against 29.7 s), and stack traces keep
  # their line numbers.
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPARCL_SANITIZE=address,undefined \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DSPARCL_WERROR=ON
  cmake --build build-asan -j"$jobs"
  run_tests build-asan
  end_stage
fi

if wanted 5; then
  begin_stage 5 "ThreadSanitizer build and threaded tests (build-tsan/)"
  cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPARCL_SANITIZE=thread \
    -DSPARCL_BUILD_BENCH=OFF -DSPARCL_TEST_DIRS="mpi;soak" -DSPARCL_WERROR=ON
  cmake --build build-tsan -j"$jobs" --target sparcl_mpi_tests sparcl_persistent_tests sparcl-soak
  ctest --test-dir build-tsan --output-on-failure --timeout 600 -j1 -L tsan
  end_stage
fi

if wanted 6; then
  begin_stage 6 "Fuzzing (build-fuzz/, ${SPARCL_FUZZ_SECONDS:-5} s per harness)"
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPARCL_FUZZ=ON \
    -DSPARCL_FUZZ_SECONDS="${SPARCL_FUZZ_SECONDS:-5}" -DSPARCL_BUILD_TESTS=OFF -DSPARCL_BUILD_BENCH=OFF \
    -DSPARCL_BUILD_TRAINER=OFF -DSPARCL_BUILD_PYTHON=OFF -DSPARCL_WITH_OFI=OFF -DSPARCL_WITH_UCX=OFF -DSPARCL_WERROR=ON
  cmake --build build-fuzz -j"$jobs"
  ctest --test-dir build-fuzz --output-on-failure -j1 -L fuzz
  end_stage
fi

if wanted 7; then
  begin_stage 7 "SimGrid SMPI build and smoke run (build-smpi/)"
  bench/sim/build.sh
  ctest --test-dir build-smpi --output-on-failure --timeout 300 -L smpi
  end_stage
fi

echo "==> Summary (wall time per stage)"
for line in "${summary[@]}"; do echo "    $line"; done
total=$SECONDS
echo "    $(printf '%-44s %4d min %02d s' "total" $((total / 60)) $((total % 60)))"
