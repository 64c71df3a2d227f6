# SPDX-License-Identifier: BSD-3-Clause
"""One rank of test_optimizer.py: sparcl.torch.DistributedOptimizer against DDP's default allreduce.

    optimizer_worker.py --transport ucx

A small recommendation-style model (nn.Embedding(sparse=True) feeding an MLP) trains 6 steps of
SGD three ways from the same initial parameters: DDP with its default (gloo) allreduce, and
DistributedOptimizer with top-k at density 1.0 and with dense exchange. Each rank's batch holds
distinct embedding rows, so on 2 ranks every summed entry is one addition of two values and
halving is exact: the parameters must then be bitwise identical to DDP's; on more ranks the order
of additions differs, so within float32 rounding. Rank 0 prints "PASS ..." lines.
"""
import argparse
import copy
import datetime

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

import sparcl.torch as st

ROWS, DIM, BATCH, STEPS = 3000, 16, 48, 6


class Recommender(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(ROWS, DIM, sparse=True)
        self.mlp = nn.Sequential(nn.Linear(DIM, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, ids):
        return self.mlp(self.embedding(ids)).squeeze(1)


def batch(rank, step):
    g = torch.Generator().manual_seed(1000 * step + rank)
    ids = torch.randperm(ROWS, generator=g)[:BATCH]  # distinct rows within a rank's batch
    return ids, torch.randn(BATCH, generator=g)


def train(model, optimizer, rank):
    for step in range(STEPS):
        ids, y = batch(rank, step)
        optimizer.zero_grad()
        nn.functional.mse_loss(model(ids), y).backward()
        optimizer.step()


def compare(reference, model, exact, what):
    for (name, a), (_, b) in zip(reference.named_parameters(), model.named_parameters()):
        if exact:
            assert torch.equal(a, b), "%s: %s differs from DDP's (max %g)" % (what, name, (a - b).abs().max())
        else:
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), "%s: %s differs from DDP's" % (what, name)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", default="ucx")
    args = parser.parse_args()
    rank, size = st.init_distributed(timeout=datetime.timedelta(seconds=120))
    torch.manual_seed(0)
    initial = Recommender()
    exact = size == 2

    ddp_model = copy.deepcopy(initial)
    ddp = DDP(ddp_model)
    train(ddp, torch.optim.SGD(ddp.parameters(), lr=0.05), rank)

    with st.Communicator(transport=args.transport, timeout_ms=60000) as comm:
        for compression in ("topk", "none"):
            model = copy.deepcopy(initial)
            opt = st.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=0.05), model, comm=comm,
                                          compression=compression, density=1.0, min_compress_numel=1)
            assert isinstance(opt, torch.optim.SGD)
            train(model, opt, rank)
            compare(ddp_model, model, exact, compression)
            assert model.embedding.weight.grad.layout == torch.sparse_coo
            if rank == 0:
                print("PASS %s %s %d ranks (%s)" % (compression, args.transport, size,
                                                     "bitwise" if exact else "rtol 1e-5"), flush=True)
            opt.remove_hooks()
    st.finalize_distributed()


if __name__ == "__main__":
    main()
