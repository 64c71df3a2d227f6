#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# The recommendation-model session (bench/torch/recsys_step_time.py) on the emulated cluster
# (4 hosts as network namespaces with tc-shaped links, tools/emulate-cluster.sh, needs root) or,
# with --shm, as 4 local ranks over shared memory and loopback.
#
#   bench/torch/run-recsys.sh [-r 1gbit] [--shm] [-- recsys_step_time.py arguments]
#
# Writes bench/results/torch-recsys-<rate or shm>-p4.txt (the commands, the link rate, the summary).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
RATE=1gbit
SHM=0
SUBNET=10.79.0
while (($#)); do
  case "$1" in
    -r) RATE=$2; shift 2 ;;
    --shm) SHM=1; shift ;;
    --subnet) SUBNET=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "run-recsys: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[[ -e build/python/sparcl/_libpath.py ]] || { echo "run-recsys: build the project first (build/python)" >&2; exit 2; }
if ((SHM)); then
  out=bench/results/torch-recsys-shm-p4.txt
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
  command=(timeout 1200 mpirun -np 4 -x PYTHONPATH="$PWD/build/python" -x UCX_NET_DEVICES=lo
    /usr/bin/python3 "$PWD/bench/torch/recsys_step_time.py" "$@")
else
  out=bench/results/torch-recsys-$RATE-p4.txt
  # gloo and sparcl (UCX over TCP) on the shaped eth0 only, as bench/torch/run-cluster.sh.
  env_args="-x PYTHONPATH=$PWD/build/python -x MASTER_ADDR=$SUBNET.1 -x MASTER_PORT=29500 -x GLOO_SOCKET_IFNAME=eth0"
  env_args+=" -x UCX_TLS=tcp,self -x UCX_NET_DEVICES=eth0"
  command=(tools/emulate-cluster.sh -n 4 -r "$RATE" -t 1200 --subnet "$SUBNET" --measure 3
    --mpirun-args "$env_args" -- /usr/bin/python3 "$PWD/bench/torch/recsys_step_time.py" "$@")
fi
{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ), sparcl $(git rev-parse --short HEAD 2>/dev/null || echo '?')," \
    "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# command: bench/torch/run-recsys.sh ${SHM:+$( ((SHM)) && echo --shm || echo -r "$RATE")}${*:+ -- $*}"
  echo "# runs:    ${command[*]}"
} | tee "$out"
"${command[@]}" 2>&1 | grep -v "^\[" | tee -a "$out"
echo "# done $(date -u +%Y-%m-%dT%H:%M:%SZ), load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
