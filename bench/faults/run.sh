#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# The long fault-injection run behind bench/results/faults.txt: fault_test
# (tests/faults) on every transport at 3 ranks, FAULTS faults per
# (algorithm, checksum) block, the fault kinds in turn (so FAULTS/4 of each),
# every fault followed by 10 collectives that must be exact; then the storm
# (a rank stopped and resumed) on MPI and UCX tcp. Vectors up to 5000
# elements: on a loaded 2-core machine larger calls outlast the 250 ms timeout
# without any fault.
# Usage: bench/faults/run.sh [build dir] [FAULTS]   (from the repository root)
set -u
build=${1:-build}
faults=${2:-400}
prog=$build/tests/faults/sparcl_fault_test
np=${NP:-3}
skip=${SKIP:-none}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
run() {
  label=$1
  shift
  echo "== $label: $* mpirun -np $np $prog --faults $faults --timeout-ms 250 --max-dim 5000 --skip $skip"
  start=$(date +%s)
  env "$@" mpirun -np "$np" "$prog" --faults "$faults" --timeout-ms 250 --max-dim 5000 --skip "$skip" 2>&1 |
    grep -E '^(transport=|RECOVERY|HANG|fault .*SILENT)'
  echo "   wall $(( $(date +%s) - start )) s"
}
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
run mpi SPARCL_TRANSPORT=mpi
run ofi-tcp SPARCL_TRANSPORT=ofi "SPARCL_OFI_PROVIDER=tcp;ofi_rxm" FI_TCP_IFACE=lo
run ofi-shm SPARCL_TRANSPORT=ofi SPARCL_OFI_PROVIDER=shm
run ucx-tcp SPARCL_TRANSPORT=ucx UCX_TLS=tcp,self UCX_NET_DEVICES=lo
run ucx-sm SPARCL_TRANSPORT=ucx UCX_TLS=sm,self
for t in mpi ucx; do
  echo "== storm $t: STORM_OPS=300 tests/faults/storm.sh mpirun $np $prog"
  env SPARCL_TRANSPORT=$t UCX_TLS=tcp,self UCX_NET_DEVICES=lo STORM_OPS=300 \
    tests/faults/storm.sh mpirun "$np" "$prog" --algos split_allgather --skip "$skip" 2>&1 | grep -E '^(storm|HANG)'
done
