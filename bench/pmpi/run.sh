#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# libsparcl_pmpi.so under an unmodified mpi4py program: the same program with and without
# LD_PRELOAD, alternating, ROUNDS times (so that both see the same machine), on NP ranks.
#
#   bench/pmpi/run.sh [build-dir] [rounds] [program arguments...]    (from the source tree)
#
# Prints each run's line and, per round, the ratio of the medians (without / with the preload).
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
shift $(( $# >= 2 ? 2 : $# ))
np=${NP:-4}
lib=$(realpath "$build/interpose/libsparcl_pmpi.so")
program=$(dirname "$0")/allreduce_mpi4py.py
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
echo "# $(date -u +%FT%TZ) $(uname -n), $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# mpirun -np $np /usr/bin/python3 $program $*   (with and without -x LD_PRELOAD=$lib)"
ratios=()
for round in $(seq 1 "$rounds"); do
  plain=$(timeout 600 mpirun -np "$np" /usr/bin/python3 "$program" "$@")
  echo "round $round, MPI         : $plain"
  preload=$(timeout 600 mpirun -np "$np" -x LD_PRELOAD="$lib" -x SPARCL_PMPI_VERBOSE=1 \
              /usr/bin/python3 "$program" "$@" 2> >(grep "sparcl communicator" >&2))
  echo "round $round, with preload: $preload"
  a=$(sed -E 's/.*median ([0-9.]+) ms.*/\1/' <<<"$plain")
  b=$(sed -E 's/.*median ([0-9.]+) ms.*/\1/' <<<"$preload")
  ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')
  ratios+=("$ratio")
  echo "round $round: median call ${a} ms without, ${b} ms with the preload: ${ratio}x"
done
echo "ratios per round: ${ratios[*]}; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
