#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""DDP step time of a communication-heavy model: DDP's default (gloo) allreduce against
sparcl's hooks, dense and top-k, in one measurement session.

The model is the mini-trainer's autoencoder, 22283-1024-64-1024-22283 (45.8M float32
parameters, 183 MB of gradients per step), trained with MSE and SGD on synthetic
gene-expression-like data (a mean per gene, a low-rank signal and noise; each rank its own
samples). Every method starts from the same parameters and sees the same batches, so their
loss curves are comparable step by step.

Launch it with mpirun (bench/torch/run-cluster.sh does, on the emulated cluster) or with
RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT. Rank 0 writes one CSV row per method and step:

    method,step,timed,step_ms,loss,bytes_sent

step_ms is the slowest rank's wall time of the step (zero_grad, forward, backward with the
gradient exchange, optimizer step); loss is the mean over ranks; bytes_sent is what rank 0's
sparcl communicator sent in the step (0 for gloo). A summary follows on stdout.
"""
import argparse
import csv
import gc
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

try:
    import sparcl
except ImportError:  # from a source checkout with a build in build/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "python"))
    import sparcl
import sparcl.torch as st

GENES = 22283


def autoencoder():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(GENES, 1024), nn.ReLU(), nn.Linear(1024, 64), nn.ReLU(),
                         nn.Linear(64, 1024), nn.ReLU(), nn.Linear(1024, GENES))


class Data:
    """Gene-expression-like samples: a mean per gene (as log2 expression levels differ from gene
    to gene), a signal of 16 latent factors and noise, on a standardised scale. The same for
    every method (seeded by rank and step)."""

    def __init__(self, rank, batch):
        self.mean = torch.rand(GENES, generator=torch.Generator().manual_seed(8)) * 3 - 1.5
        self.basis = torch.randn(16, GENES, generator=torch.Generator().manual_seed(7)) / 4
        self.rank, self.batch = rank, batch

    def __call__(self, step):
        g = torch.Generator().manual_seed(1_000_003 * self.rank + step)
        z = torch.randn(self.batch, 16, generator=g)
        return self.mean + 0.5 * torch.tanh(z @ self.basis) + 0.1 * torch.randn(self.batch, GENES, generator=g)


def no_exchange_hook(_, bucket) -> torch.futures.Future[torch.Tensor]:
    """Each rank keeps its own gradient: the step without any exchange (the floor of the others)."""
    future = torch.futures.Future()
    future.set_result(bucket.buffer())
    return future


def run_method(method, args, comm, data, writer):
    rank, size = dist.get_rank(), dist.get_world_size()
    ddp = DDP(autoencoder())
    momentum = 0.9
    if method == "no-exchange":
        ddp.register_comm_hook(None, no_exchange_hook)
    elif method == "sparcl-topk":
        # DGC's momentum correction: the momentum is applied before selection, the optimizer is plain SGD.
        correction = {"momentum": momentum} if args.momentum_correction else {}
        state = st.TopKState(comm, density=args.density, values=args.values, start_iter=args.start_iter,
                             **correction)
        ddp.register_comm_hook(state, st.topk_hook)
        if args.momentum_correction:
            momentum = 0.0
    elif method == "sparcl-dense":
        ddp.register_comm_hook(comm, st.allreduce_hook)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=momentum)
    times, losses, elapsed_total = [], [], []
    for step in range(args.warmup + args.steps):
        x = data(step)
        sent_before = comm.stats()["bytes_sent"]
        dist.barrier()
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(ddp(x), x)
        loss.backward()
        optimizer.step()
        elapsed = time.perf_counter() - start
        figures = torch.tensor([elapsed, loss.item()], dtype=torch.float64)
        slowest = figures[:1].clone()
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        dist.all_reduce(figures[1:])
        sent = comm.stats()["bytes_sent"] - sent_before
        timed = step >= args.warmup
        step_ms, mean_loss = slowest.item() * 1e3, figures[1].item() / size
        if timed:
            times.append(step_ms)
        losses.append(mean_loss)
        elapsed_total.append((elapsed_total[-1] if elapsed_total else 0.0) + step_ms / 1e3)
        if rank == 0:
            writer.writerow([method, step, int(timed), "%.2f" % step_ms, "%.6f" % mean_loss, sent])
            if args.verbose:
                print("  %-13s step %3d  %9.1f ms  loss %.5f  sparcl sent %d B" %
                      (method, step, step_ms, mean_loss, sent), flush=True)
    del ddp, optimizer
    gc.collect()
    tail = max(1, len(losses) // 5)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "final_loss": statistics.mean(losses[-tail:]), "losses": losses, "seconds": elapsed_total}


def reached(result, target, window=5):
    """First step (and the seconds of training until then) where the running mean of `window`
    losses is at most `target`; None if never."""
    losses = result["losses"]
    for end in range(window, len(losses) + 1):
        if statistics.mean(losses[end - window:end]) <= target:
            return end - 1, result["seconds"][end - 1]
    return None


def summary(results):
    """Markdown table: step times against default DDP and the no-exchange floor, and the
    loss curves against default DDP's."""
    base, floor = results.get("default"), results.get("no-exchange")
    target = None
    if base:
        target = statistics.mean(base["losses"][-5:])  # its final loss, over the window of reached()
    lines = ["| method | median step (ms) | min-max (ms) | speedup vs default | exchange time per step (ms) "
             "| loss, last 20%% of steps | vs default | reaches default's final loss (%s) at step (s of training) |"
             % ("%.4f" % target if target else "-"),
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for method, r in results.items():
        speedup = "%.2fx" % (base["median_ms"] / r["median_ms"]) if base else "-"
        exchange = "%.0f" % (r["median_ms"] - floor["median_ms"]) if floor and method != "no-exchange" else "-"
        comparable = base and method != "no-exchange"  # without an exchange the ranks train apart
        ratio = "%.3f" % (r["final_loss"] / base["final_loss"]) if comparable else "-"
        hit = reached(r, target) if comparable else None
        when = "%d (%.0f s)" % hit if hit else ("not within the run" if comparable else "-")
        lines.append("| %s | %.1f | %.1f-%.1f | %s | %s | %.5f | %s | %s |" % (
            method, r["median_ms"], r["min_ms"], r["max_ms"], speedup, exchange, r["final_loss"], ratio, when))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="default,sparcl-dense,sparcl-topk,no-exchange",
                        help="comma-separated: default (DDP's gloo allreduce), sparcl-dense, sparcl-topk, "
                             "no-exchange (no gradient exchange at all: the floor of the step time)")
    parser.add_argument("--steps", type=int, default=80, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (DDP rebuilds its buckets)")
    parser.add_argument("--batch", type=int, default=4, help="samples per rank and step")
    parser.add_argument("--density", type=float, default=0.01)
    parser.add_argument("--values", default="raw")
    parser.add_argument("--start-iter", type=int, default=0, help="top-k: dense steps first (TopKState.start_iter)")
    parser.add_argument("--momentum-correction", action="store_true",
                        help="top-k: momentum 0.9 in the compressor (DGC), plain SGD in the optimizer")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--transport", choices=["ucx", "ofi"], default=None)
    parser.add_argument("--poll-interval", type=float, default=None,
                        help="Communicator poll_interval in seconds (0: spin); default: the Communicator's")
    parser.add_argument("--progress-thread", action="store_true", help="sparcl's own progress thread")
    parser.add_argument("--csv", required=True, help="per-step rows (written by rank 0)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    methods = args.methods.split(",")
    for m in methods:
        if m not in ("default", "sparcl-dense", "sparcl-topk", "no-exchange"):
            parser.error("unknown method %r" % m)

    torch.set_num_threads(args.threads)
    rank, size = st.init_distributed()
    options = {} if args.poll_interval is None else {"poll_interval": args.poll_interval}
    comm = st.Communicator(transport=args.transport, progress_thread=args.progress_thread, **options)
    data = Data(rank, args.batch)
    params = sum(p.numel() for p in autoencoder().parameters())
    if rank == 0:
        print("sparcl %s (%s), torch %s: %d ranks, autoencoder %d-1024-64-1024-%d (%d parameters, %.0f MB), "
              "batch %d per rank, %d+%d steps per method, top-k density %g (%s values, start_iter %d%s), SGD lr %g "
              "momentum 0.9, %d torch thread(s) per rank" %
              (sparcl.version(), sparcl.library_path(), torch.__version__, size, GENES, GENES, params,
               params * 4 / 1e6, args.batch, args.warmup, args.steps, args.density, args.values, args.start_iter,
               ", momentum correction" if args.momentum_correction else "", args.lr, args.threads),
              flush=True)
    out = open(args.csv, "w", newline="") if rank == 0 else open(os.devnull, "w")
    with out:
        writer = csv.writer(out)
        writer.writerow(["method", "step", "timed", "step_ms", "loss", "bytes_sent"])
        results = {}
        for method in methods:
            results[method] = run_method(method, args, comm, data, writer)
            out.flush()
    comm.close()
    if rank == 0:
        print("\n" + summary(results), flush=True)
    st.finalize_distributed()


if __name__ == "__main__":
    main()
