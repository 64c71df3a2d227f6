#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Validation of a calibrated platform: the same sparcl-bench sweep measured
# on the emulated cluster (tools/emulate-cluster.sh, one rank per host) and
# simulated on the platform calibrated to it (bench/sim/emulated-*.xml), then
# one table per point (bench/sim/validate.py). Run from the repository root
# after building build/ and build-smpi/ (bench/sim/build.sh).
#
#   bench/sim/validate.sh [-r 1gbit|10gbit] [-p "2 4"] [-o DIR] [--only measured|simulated] [-- SPARCL-BENCH ARGS]
set -euo pipefail
RATE=1gbit
PS="2 4"
OUT=bench/results/scale/validation
ONLY=
ARGS=(-b 1M -e 16M -f 16 -d 0.001,0.01,0.1 -a all -n 5 -w 2 --median -c -q)
while (($#)); do
  case "$1" in
    -r) RATE=$2; shift 2 ;;
    -p) PS=$2; shift 2 ;;
    -o) OUT=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --) shift; ARGS=("$@"); break ;;
    *) echo "validate.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
case $RATE in
  1gbit) PLATFORM=bench/sim/emulated-1g.xml ;;
  10gbit) PLATFORM=bench/sim/emulated-10g.xml ;;
  *) echo "validate.sh: no platform calibrated for $RATE" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for p in $PS; do
  if [[ $ONLY != simulated ]]; then
    echo "== P=$p measured, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
    tools/emulate-cluster.sh -n "$p" -r "$RATE" -t 3000 -- "$PWD/build/bench/cli/sparcl-bench" "${ARGS[@]}" \
      --csv "$OUT/measured-$RATE-p$p.csv"
  fi
  [[ $ONLY == measured ]] && continue
  echo "== P=$p simulated, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
  bench/sim/run.sh -np "$p" -ppn 1 -platform "$PLATFORM" -- build-smpi/bench/cli/sparcl-bench "${ARGS[@]}" \
    --csv "$OUT/simulated-$RATE-p$p.csv"
done
echo "== done $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
