#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# Runs the MPI case of peer_failure_test under `mpirun --enable-recovery`,
# with Open MPI's shared-memory files in a directory of its own that is
# removed afterwards: the killed rank (and the survivors, which leave without
# MPI_Finalize) cannot remove theirs.
# Usage: run_mpi.sh <mpiexec> <ranks> <peer_failure_test>
set -u
dir=$(mktemp -d /dev/shm/sparcl-failure-mpi.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$dir"' EXIT INT TERM
OMPI_MCA_btl_vader_backing_directory=$dir "$1" --enable-recovery -np "$2" "$3" mpi
