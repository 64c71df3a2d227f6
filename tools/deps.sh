#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# The one place that lists the Debian/Ubuntu packages sparcl needs.
#
#   bash tools/deps.sh          # install whatever is missing
#   SPARCL_WITH_SIMGRID=1 bash tools/deps.sh   # and SimGrid (bench/sim, optional)
#   source tools/deps.sh        # defines SPARCL_DEPS and sparcl_install_deps
#
# Idempotent: does nothing (no apt-get update) when everything is installed.
# Never reads stdin, so it is safe in CI.

SPARCL_DEPS=(
  # Toolchain and build system
  build-essential cmake pkg-config
  # MPI (headers/library and mpirun)
  libopenmpi-dev openmpi-bin
  # Test framework (GoogleTest sources and prebuilt libraries)
  googletest libgtest-dev
  # Benchmarks (Google Benchmark) and their plots (tools/plot)
  libbenchmark-dev python3-matplotlib
  # Native transports: libfabric and UCX (with their own benchmark tools)
  libfabric-dev libfabric-bin libucx-dev ucx-utils
  # The emulated cluster (ip netns, tc)
  iproute2
  # Mini-trainer: GEMM, gzip'd IDX files, and its two data sets
  libopenblas-dev zlib1g-dev dataset-fashion-mnist r-bioc-bladderbatch
  # PyTorch plugin and its tests (Debian's torch runs under /usr/bin/python3)
  python3-torch python3-pytest
  # The MPI_Allreduce preload's tests and benchmark (unmodified mpi4py programs on numpy arrays)
  python3-mpi4py python3-numpy
  # Fuzzing (libFuzzer) and LeakSanitizer runtimes
  clang libclang-rt-14-dev
)
# Optional: SimGrid's SMPI for the simulated runs of bench/sim (docs/simulation.md).
if [[ ${SPARCL_WITH_SIMGRID:-0} == 1 ]]; then
  SPARCL_DEPS+=(libsimgrid-dev)
fi

sparcl_install_deps() {
  local pkg status
  local -a missing=()
  for pkg in "${SPARCL_DEPS[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
      missing+=("$pkg")
    fi
  done

  if ((${#missing[@]} == 0)); then
    echo "deps: all ${#SPARCL_DEPS[@]} packages already installed"
    return 0
  fi

  local -a sudo=()
  if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo -n)
    else
      echo "deps: missing packages: ${missing[*]}" >&2
      echo "deps: not root and sudo is not available; install them with:" >&2
      echo "  apt-get install ${missing[*]}" >&2
      return 1
    fi
  fi

  echo "deps: installing ${missing[*]}"
  "${sudo[@]}" apt-get update -qq </dev/null || return 1
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null || return 1
  echo "deps: done"
}

# Run directly (not sourced): install and exit with its status.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  sparcl_install_deps
fi
