# SPDX-License-Identifier: BSD-3-Clause
"""An unmodified mpi4py program for libsparcl_pmpi.so's benchmark (bench/pmpi/run.sh): each rank
sums a float32 array with comm.Allreduce. Nothing here knows of sparcl.

    mpirun -np 4 /usr/bin/python3 allreduce_mpi4py.py [-n elements] [-d density] [-w warmup] [-r repetitions]

Each rank's array has `density` nonzeros at random positions of its own. Prints the median and mean
time of the timed calls (slowest rank of each call) and of all calls, warm-up included.
"""
import argparse
import time

import numpy as np
from mpi4py import MPI


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=16 << 20)
    parser.add_argument("-d", type=float, default=0.01)
    parser.add_argument("-w", type=int, default=25, help="untimed calls first")
    parser.add_argument("-r", type=int, default=10, help="timed calls")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    rng = np.random.default_rng(rank)
    send = np.zeros(args.n, dtype=np.float32)
    nnz = int(args.n * args.d)
    send[rng.choice(args.n, nnz, replace=False)] = rng.uniform(-1, 1, nnz).astype(np.float32)
    recv = np.empty_like(send)
    times = []
    for _ in range(args.w + args.r):
        comm.Barrier()
        start = time.perf_counter()
        comm.Allreduce(send, recv, op=MPI.SUM)
        times.append(comm.allreduce(time.perf_counter() - start, op=MPI.MAX))
    timed = np.array(times[args.w:]) * 1e3
    if rank == 0:
        print("%d ranks, %d float32 elements, %.2f%% nonzeros per rank (%d), result nonzeros %d: "
              "median %.2f ms, mean %.2f ms over %d timed calls; mean of all %d calls %.2f ms" %
              (size, args.n, 100 * args.d, nnz, np.count_nonzero(recv), np.median(timed), timed.mean(), args.r,
               len(times), 1e3 * np.mean(times)), flush=True)


if __name__ == "__main__":
    main()
