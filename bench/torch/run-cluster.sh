#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# The DDP step-time session (bench/torch/ddp_step_time.py) on the emulated cluster: P hosts
# as network namespaces with tc-shaped links (tools/emulate-cluster.sh, needs root), one rank
# per host, started by mpirun. Every method (DDP's gloo allreduce, sparcl's dense hook,
# sparcl's top-k hook) runs in the same session, one after the other.
#
#   bench/torch/run-cluster.sh                       # 4 hosts, 1 Gbit/s, 30 timed steps per method
#   bench/torch/run-cluster.sh -r 10gbit -n 4 -t 3600 -- --steps 50 --batch 8
#
# Writes bench/results/torch-ddp-<rate>-p<P>.csv (per step) and .txt (the commands, the
# measured link rate and the summary). Arguments after -- go to ddp_step_time.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

HOSTS=4
RATE=1gbit
TIMEOUT=3600
SUBNET=10.77.0
NAME=""
while (($#)); do
  case "$1" in
    -n) HOSTS=$2; shift 2 ;;
    -r) RATE=$2; shift 2 ;;
    -t) TIMEOUT=$2; shift 2 ;;
    --name) NAME=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '3,13p' "$0"; exit 0 ;;
    *) echo "run-cluster: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
NAME=${NAME:-torch-ddp-$RATE-p$HOSTS}
[[ -e build/python/sparcl/_libpath.py ]] || { echo "run-cluster: build the project first (build/python)" >&2; exit 2; }
out=bench/results/$NAME
mkdir -p bench/results

# Inside the namespaces: gloo and sparcl's transports on the shaped eth0 only (UCX over TCP:
# its shared-memory transports would bypass the links, the namespaces share one kernel), the
# gloo rendezvous at host 1 (rank 0).
env_args="-x PYTHONPATH=$PWD/build/python -x MASTER_ADDR=$SUBNET.1 -x MASTER_PORT=29500 -x GLOO_SOCKET_IFNAME=eth0"
env_args+=" -x UCX_TLS=tcp,self -x UCX_NET_DEVICES=eth0 -x FI_TCP_IFACE=eth0 -x SPARCL_OFI_PROVIDER=tcp;ofi_rxm"
command=(tools/emulate-cluster.sh -n "$HOSTS" -r "$RATE" -t "$TIMEOUT" --subnet "$SUBNET" --measure 3
  --mpirun-args "$env_args" -- /usr/bin/python3 "$PWD/bench/torch/ddp_step_time.py" --csv "$PWD/$out.csv" "$@")
{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ), sparcl $(git rev-parse --short HEAD 2>/dev/null || echo '?')," \
    "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# command: bench/torch/run-cluster.sh -n $HOSTS -r $RATE -t $TIMEOUT${*:+ -- $*}"
  echo "# runs:    ${command[*]}"
} | tee "$out.txt"
"${command[@]}" 2>&1 | tee -a "$out.txt"
echo "# done $(date -u +%Y-%m-%dT%H:%M:%SZ), load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out.txt"
