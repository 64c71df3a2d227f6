#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""Step time of a recommendation-style model: sparcl.torch.DistributedOptimizer against
torch.distributed.all_reduce (gloo) of every gradient, the embedding's sparse gradient included,
interleaved in one session.

The model: nn.Embedding(rows, dim, sparse=True) (the large table) feeding an MLP
(dim-256-64-1), trained with MSE and plain SGD on synthetic click data (each rank its own
batches of `batch` row ids). Both methods start from the same parameters and see the same
batches. Rounds alternate the methods (`steps` steps each), so both see the same machine.

    mpirun -np 4 /usr/bin/python3 bench/torch/recsys_step_time.py [--rows 1000000 --dim 64 ...]

Prints, per method, the median step time (slowest rank's wall time of zero_grad, forward,
backward, gradient exchange and step) over all timed steps, and the ratio.
"""
import argparse
import copy
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn

try:
    import sparcl
except ImportError:  # from a source checkout with a build in build/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "python"))
    import sparcl
import sparcl.torch as st


class Recommender(nn.Module):
    def __init__(self, rows, dim):
        super().__init__()
        self.embedding = nn.Embedding(rows, dim, sparse=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, ids):
        return self.mlp(self.embedding(ids)).squeeze(1)


class GlooAllreduce:
    """The baseline: after backward, dist.all_reduce of every gradient (gloo sums sparse COO
    tensors by gathering every rank's indices and values), divided by the world size."""

    def __init__(self, optimizer, model):
        self.optimizer, self.params = optimizer, [p for p in model.parameters() if p.requires_grad]

    def zero_grad(self):
        self.optimizer.zero_grad()

    def step(self):
        size = dist.get_world_size()
        for p in self.params:
            dist.all_reduce(p.grad)
            p.grad = p.grad / size if p.grad.is_sparse else p.grad.div_(size)
        self.optimizer.step()


def batch(args, rank, step):
    g = torch.Generator().manual_seed(100000 * rank + step)
    ids = torch.randint(0, args.rows, (args.batch,), generator=g)
    return ids, (torch.rand(args.batch, generator=g) < 0.1).float()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per method and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rank, size = st.init_distributed()
    comm = st.Communicator()
    torch.manual_seed(0)
    initial = Recommender(args.rows, args.dim)
    methods = {}
    for name in ("gloo all_reduce", "sparcl DistributedOptimizer"):
        model = copy.deepcopy(initial)
        sgd = torch.optim.SGD(model.parameters(), lr=0.05)
        opt = GlooAllreduce(sgd, model) if name.startswith("gloo") else \
            st.DistributedOptimizer(sgd, model, comm=comm, compression="none")
        methods[name] = (model, opt, [], [0])

    def run_steps(name, count, timed):
        model, opt, times, step = methods[name]
        for _ in range(count):
            ids, y = batch(args, rank, step[0])
            step[0] += 1
            dist.barrier()
            start = time.perf_counter()
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(ids), y)
            loss.backward()
            opt.step()
            elapsed = torch.tensor([time.perf_counter() - start])
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
            if timed:
                times.append(elapsed.item() * 1e3)

    for name in methods:
        run_steps(name, args.warmup, False)
    for _ in range(args.rounds):
        for name in methods:
            run_steps(name, args.steps, True)
    # Same data, same start: the parameters must agree (within float32 rounding of the sums).
    (a, _, _, _), (b, _, _, _) = methods.values()
    agree = all(torch.allclose(p, q, rtol=1e-4, atol=1e-6) for p, q in zip(a.parameters(), b.parameters()))
    if rank == 0:
        medians = {name: statistics.median(m[2]) for name, m in methods.items()}
        print("%d ranks, embedding %d x %d (sparse gradient of <= %d rows per rank), MLP %d-256-64-1, "
              "batch %d, %d timed steps per method in %d interleaved rounds" %
              (size, args.rows, args.dim, args.batch, args.dim, args.batch, args.steps * args.rounds, args.rounds))
        for name, median in medians.items():
            print("  %-28s median step %8.2f ms" % (name, median))
        g, s = medians["gloo all_reduce"], medians["sparcl DistributedOptimizer"]
        print("  ratio: %.2fx (gloo / sparcl); parameters of the two agree: %s" % (g / s, agree), flush=True)
    comm.close()
    st.finalize_distributed()


if __name__ == "__main__":
    main()
