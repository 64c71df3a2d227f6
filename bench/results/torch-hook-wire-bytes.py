#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""Bytes that sparcl.torch.topk_hook sends per call, for each value encoding.

DDP over one Linear(1024, 1024, bias=False) layer (2^20 float32 parameters, one bucket), top-k at
1% (10,486 values per rank and call), one Communicator per encoding, algorithm allgather (each
rank's selection goes to every other rank once, so the bytes depend on the encoding alone; auto
picks by timing and so may pick differently per encoding). After WARMUP steps each rank counts
sparcl_comm_stats' bytes_sent over STEPS more calls; printed: the mean over ranks per call.
Run from a checkout after a build:

    mpirun -np 2 -x PYTHONPATH=$PWD/build/python /usr/bin/python3 bench/results/torch-hook-wire-bytes.py
"""
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

import sparcl
import sparcl.torch as st

WARMUP, STEPS = 5, 20


def main():
    torch.set_num_threads(1)
    rank, size = st.init_distributed()
    if rank == 0:
        print("# sparcl %s, %d ranks, DDP over Linear(1024, 1024, bias=False), topk_hook density 0.01, "
              "algorithm allgather, %d warm-up + %d counted steps" % (sparcl.version(), size, WARMUP, STEPS))
        print("# %-6s %10s %12s %16s" % ("values", "calls", "bytes_sent", "bytes_per_call"))
    for values in ("raw", "fp16", "bf16", "qsgd8", "qsgd4", "qsgd2"):
        torch.manual_seed(0)
        model = DDP(nn.Linear(1024, 1024, bias=False))
        comm = st.Communicator(algorithm="allgather")
        model.register_comm_hook(st.TopKState(comm, density=0.01, values=values), st.topk_hook)
        generator = torch.Generator().manual_seed(rank)
        for step in range(WARMUP + STEPS):
            if step == WARMUP:
                before = comm.stats()
            model.zero_grad()
            model(torch.randn(8, 1024, generator=generator)).square().mean().backward()
        after = comm.stats()
        calls = after["collectives"] - before["collectives"]
        sent = after["bytes_sent"] - before["bytes_sent"]
        per_call = torch.tensor([sent / calls], dtype=torch.float64)
        dist.all_reduce(per_call)
        if rank == 0:
            print("  %-6s %10d %12d %16.0f" % (values, calls, sent, per_call.item() / size))
        comm.close()
    st.finalize_distributed()


if __name__ == "__main__":
    main()
