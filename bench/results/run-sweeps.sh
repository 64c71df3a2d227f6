#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# The sweeps of bench/results/README.md, in the order they were run:
# emulated 4-host cluster at 10 Gbit/s, shared memory, emulated cluster at
# 1 Gbit/s; P=4, 64K..64M elements (factor 4), 0.1/1/10% density, every
# algorithm and both baselines, results checked. Run from the repository root
# after building into $BUILD (default build); MAX=16M stops at 16M elements.
# Each writes .csv/.json/.txt/.png and a -table.md (tools/plot --table).
set -u
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD="$PWD/$BUILD" ;; esac
BENCH="$BUILD/bench/cli/sparcl-bench"
OUT=bench/results
ARGS=(-b 64K -e "${MAX:-64M}" -f 4 -d 0.001,0.01,0.1 -a all -n 10 -w 2 --median -c)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

run() {  # name, then the command that runs sparcl-bench with its arguments
  local name=$1
  shift
  echo "== $name: $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
  "$@" "${ARGS[@]}" --csv "$OUT/$name.csv" --json "$OUT/$name.json" > "$OUT/$name.txt"
  echo "== $name: exit $? at $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
  tools/plot "$OUT/$name.csv" --table --title "sparcl-bench, P=4, $name (2-core VM under load)" -o "$OUT/$name.png" \
    > "$OUT/$name-table.md"
}

for what in "${@:-cluster-10gbit-p4 shm-p4 cluster-1gbit-p4}"; do
  for name in $what; do
    case $name in
      cluster-10gbit-p4) run "$name" tools/emulate-cluster.sh -n 4 -r 10gbit -t 2400 -- "$BENCH" ;;
      cluster-1gbit-p4) run "$name" tools/emulate-cluster.sh -n 4 -r 1gbit -t 3000 -- "$BENCH" ;;
      shm-p4) run "$name" mpirun -np 4 "$BENCH" ;;
      *) echo "unknown sweep $name" >&2; exit 2 ;;
    esac
  done
done
