#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# Projection of sparcl's exact algorithms to P simulated ranks (SimGrid SMPI):
# one sparcl-bench run per (platform, P, distribution), each writing a CSV
# under OUT/raw/, then bench/sim/tables.py writes OUT/projection.md.
#
#   bench/sim/build.sh                                   # once: build-smpi/
#   bench/sim/project.sh [-o bench/results/scale] [-p "8 16 32 64"] [-d 0.001,0.01] \
#       [-n 1M] [--dist "uniform zipf"] [--platform bench/sim/reference.xml] [--iters 1]
#
# Every exact algorithm, sparcl's dense (its ring, under SMPI) and the
# baselines MPI_Allreduce and MPI_Allgatherv run on the same data in one
# run. A run that takes longer than --limit seconds (default 1200) is stopped
# (listed in OUT/skipped.txt); the densities it finished stay in its CSV.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$ROOT/bench/results/scale
RANKS="8 16 32 64"
DENSITIES=0.001,0.01
ELEMENTS=1M
DISTS="uniform zipf"
PLATFORM=$HERE/reference.xml
ITERS=1
LIMIT=1200
ALGORITHMS=recursive_doubling,split_allgather,split_dense,ring,halving_doubling,allgather,dense
BENCH=$ROOT/build-smpi/bench/cli/sparcl-bench
while (($#)); do
  case "$1" in
    -o) OUT=$2; shift 2 ;;
    -p) RANKS=$2; shift 2 ;;
    -d) DENSITIES=$2; shift 2 ;;
    -n) ELEMENTS=$2; shift 2 ;;
    -a) ALGORITHMS=$2; shift 2 ;;
    --dist) DISTS=$2; shift 2 ;;
    --platform) PLATFORM=$2; shift 2 ;;
    --iters) ITERS=$2; shift 2 ;;
    --limit) LIMIT=$2; shift 2 ;;
    --bench) BENCH=$2; shift 2 ;;
    *) echo "project.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -x $BENCH ]] || { echo "project.sh: $BENCH not built (bench/sim/build.sh)" >&2; exit 2; }
mkdir -p "$OUT/raw"
plat=$(basename "$PLATFORM" .xml)
for dist in $DISTS; do
  for p in $RANKS; do
    name=$plat-p$p-$dist-n$ELEMENTS
    cmd=("$HERE/run.sh" -np "$p" -platform "$PLATFORM" -- "$BENCH" -b "$ELEMENTS" -e "$ELEMENTS"
         -d "$DENSITIES" --dist "$dist" -a "$ALGORITHMS" -n "$ITERS" -w 1 --fixed-iters -q
         --csv "$OUT/raw/$name.csv")
    echo "${cmd[*]#"$ROOT/"}" | sed "s|$ROOT/||g" >"$OUT/raw/$name.cmd"
    start=$(date +%s)
    if timeout "$LIMIT" "${cmd[@]}" >"$OUT/raw/$name.txt" 2>"$OUT/raw/$name.err"; then
      echo "$name: $(($(date +%s) - start)) s wall" | tee -a "$OUT/raw/wall.txt"
    else
      rc=$?
      # Rows of the densities that finished are kept (the CSV is written row by row).
      echo "$name: stopped or failed (exit $rc) after $(($(date +%s) - start)) s; rows kept: $(($(wc -l <"$OUT/raw/$name.csv" 2>/dev/null || echo 1) - 1))" |
        tee -a "$OUT/skipped.txt"
    fi
  done
done
/usr/bin/python3 "$HERE/tables.py" "$OUT"
