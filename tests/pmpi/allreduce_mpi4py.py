# SPDX-License-Identifier: BSD-3-Clause
"""An ordinary mpi4py program (no sparcl import) for the preload's test: run_check.py runs it with
and without LD_PRELOAD=libsparcl_pmpi.so and compares what rank 0 writes to OUT_FILE.

    mpirun -np P /usr/bin/python3 allreduce_mpi4py.py OUT_FILE

Each rank checks its sums against its own computation from every rank's (seeded) data.
Record format as allreduce_check.c: name (32 bytes), exact, element size, count, data.
"""
import struct
import sys

import numpy as np
from mpi4py import MPI

N = 1 << 17  # above the threshold the tests set (SPARCL_PMPI_MIN_COUNT=65536)


def data(case, rank, dtype, density, integers=False, n=N):
    rng = np.random.default_rng(1000 * case + rank)
    mask = rng.random(n) < density
    values = rng.integers(-8, 9, n).astype(dtype) if integers else rng.uniform(-1, 1, n).astype(dtype)
    return np.where(mask, values, 0).astype(dtype)


def main():
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    out = open(sys.argv[1], "wb") if rank == 0 else None
    failures = []

    def record(name, exact, array):
        if out:
            out.write(name.encode().ljust(32, b"\0")[:32])
            out.write(struct.pack("<iii", int(exact), array.itemsize, array.size))
            out.write(array.tobytes())

    def check(name, got, case, dtype, density, integers=False, n=N, exact=False):
        parts = [data(case, r, dtype, density, integers, n).astype(np.float64) for r in range(size)]
        want = np.sum(parts, axis=0)
        tol = 0 if integers else (1e-5 if dtype == np.float32 else 1e-12) * np.sum(np.abs(parts), axis=0)
        if not np.all(np.abs(got.astype(np.float64) - want) <= tol):
            failures.append(name)
        record(name, exact or integers, got)

    # Through sparcl with the preload: 4 blocking calls, 1 non-blocking.
    send = data(1, rank, np.float32, 0.01)
    recv = np.empty_like(send)
    comm.Allreduce(send, recv, op=MPI.SUM)
    check("float32 sparse", recv, 1, np.float32, 0.01)

    send = data(2, rank, np.float64, 0.01)
    recv = np.empty_like(send)
    comm.Allreduce(send, recv, op=MPI.SUM)
    check("float64 sparse", recv, 2, np.float64, 0.01)

    buf = data(3, rank, np.float32, 1.0, integers=True)
    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    check("float32 dense in place", buf, 3, np.float32, 1.0, integers=True)

    dup = comm.Dup()
    send = data(4, rank, np.float32, 0.05)
    recv = np.empty_like(send)
    dup.Allreduce(send, recv, op=MPI.SUM)
    check("float32 on a duplicate", recv, 4, np.float32, 0.05)
    send = data(5, rank, np.float32, 0.01)
    request = dup.Iallreduce(send, recv, op=MPI.SUM)
    request.Wait()
    check("float32 non-blocking", recv, 5, np.float32, 0.01)
    dup.Free()

    # Passed to MPI: exact in both runs.
    send = data(6, rank, np.float32, 0.01)
    recv = np.empty_like(send)
    comm.Allreduce(send, recv, op=MPI.MAX)
    want = np.max([data(6, r, np.float32, 0.01) for r in range(size)], axis=0)
    if not np.array_equal(recv, want):
        failures.append("float32 max")
    record("float32 max", True, recv)

    send = data(7, rank, np.float32, 0.5, n=1000)
    recv = np.empty_like(send)
    comm.Allreduce(send, recv, op=MPI.SUM)
    check("below threshold", recv, 7, np.float32, 0.5, n=1000, exact=True)

    send = data(8, rank, np.int32, 0.01, integers=True)
    recv = np.empty_like(send)
    comm.Allreduce(send, recv, op=MPI.SUM)
    want = np.sum([data(8, r, np.int32, 0.01, integers=True) for r in range(size)], axis=0)
    if not np.array_equal(recv, want):
        failures.append("int32 sum")
    record("int sum", True, recv)

    if out:
        out.close()
    total = comm.allreduce(len(failures))
    if failures:
        print("rank %d: FAILED: %s" % (rank, ", ".join(failures)), flush=True)
    if rank == 0:
        print("%s: %d ranks" % ("FAILED" if total else "passed", size), flush=True)
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()
