#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# Runs a program built by bench/sim/build.sh on P simulated ranks of a
# SimGrid platform, with the settings that sparcl's simulations use
# (docs/simulation.md explains each one).
#
#   bench/sim/run.sh -np 64 [-platform bench/sim/reference.xml] [-ppn 8] -- \
#       build-smpi/bench/cli/sparcl-bench -b 1M -e 1M -d 0.01 -a all
#
# -ppn: ranks per host (consecutive ranks share a host and its NIC); the
# platform's hosts are named node-0, node-1, ...
set -euo pipefail

NP=8
PPN=8
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PLATFORM=$HERE/reference.xml
EXTRA=()
while (($#)); do
  case "$1" in
    -np) NP=$2; shift 2 ;;
    -ppn) PPN=$2; shift 2 ;;
    -platform) PLATFORM=$2; shift 2 ;;
    --cfg=*) EXTRA+=("$1"); shift ;;
    --) shift; break ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
(($#)) || { echo "usage: bench/sim/run.sh -np P [-ppn R] [-platform XML] [--cfg=...] -- PROGRAM [ARGS]" >&2; exit 2; }
command -v smpirun >/dev/null || { echo "run.sh: smpirun not found: apt-get install libsimgrid-dev" >&2; exit 2; }

hosts=$(mktemp /tmp/sparcl-sim-hosts.XXXXXX)
trap 'rm -f "$hosts"' EXIT
for ((h = 0; h * PPN < NP; ++h)); do echo "node-$h:$PPN"; done >"$hosts"

# Real-time deadlines mean nothing in a simulation that may run for minutes:
# a missing rank shows as a deadlock, which SimGrid reports.
export SPARCL_TIMEOUT_MS=${SPARCL_TIMEOUT_MS:-0}
# Every simulated rank sees this machine's host name: tell sparcl the
# simulated placement (consecutive ranks, PPN per host) instead.
export SPARCL_RANKS_PER_HOST=${SPARCL_RANKS_PER_HOST:-$PPN}
# host-speed: the platforms' hosts run at 1 Gflop/s, so each burst of
#   computation between two MPI calls is charged the thread CPU time it
#   took here.
# cpu-threshold 0: every burst is charged, also the short ones (SMPI's
#   default drops bursts under 1 us, and with them the small merges and
#   the cost of sparcl's polling loop).
# test/iprobe 0: an MPI_Test or MPI_Iprobe that finds nothing adds no
#   simulated time of its own; time goes on by the CPU time of the polling
#   loop, as on a real machine. (SMPI's default, 100 us growing with every
#   poll, adds milliseconds to a polling program.)
# coll-selector ompi: MPI_Allreduce and the other blocking collectives
#   choose their algorithms as Open MPI does.
exec smpirun -np "$NP" -platform "$PLATFORM" -hostfile "$hosts" \
  --cfg=smpi/host-speed:1Gf --cfg=smpi/cpu-threshold:0 --cfg=smpi/test:0 --cfg=smpi/iprobe:0 \
  --cfg=smpi/coll-selector:ompi \
  --log=xbt_cfg.thres:warning --log=smpi_config.thres:warning --log=smpi_coll.thres:warning --log=smpi_colls.thres:warning \
  "${EXTRA[@]}" "$@"
