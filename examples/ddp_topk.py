#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""DistributedDataParallel training with sparcl's top-k communication hook.

A multilayer perceptron learns Fashion-MNIST (Debian's dataset-fashion-mnist)
on several processes; each step, every rank sends only the largest 1% of its
gradient entries (with error feedback) through sparcl's sparse allreduce.

    /usr/bin/python3 examples/ddp_topk.py                  # starts 2 local processes itself
    /usr/bin/python3 examples/ddp_topk.py --compare        # DDP's default allreduce, then top-k
    mpirun -np 4 /usr/bin/python3 examples/ddp_topk.py     # processes started by mpirun
    RANK=0 WORLD_SIZE=2 MASTER_ADDR=host0 MASTER_PORT=29500 /usr/bin/python3 examples/ddp_topk.py  # per host

Run it from a checkout after a build (it finds build/python itself; elsewhere
PYTHONPATH=build/python, under mpirun "mpirun -x PYTHONPATH=$PWD/build/python"),
or with sparcl installed (cmake --install). Rank 0 prints the loss ten times
per method (--verbose: every 10 steps, --quiet: never) and one "result" line
per method: the mean training loss of the last 20% of the steps (over all
ranks) and the accuracy on the test set.
"""
import argparse
import gzip
import os
import socket
import sys
import time

import importlib.util

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP


def import_sparcl():
    """sparcl and sparcl.torch: installed, on PYTHONPATH, or from this checkout's build/python; otherwise
    exit with one line (from the first rank only) that says how to make it importable."""
    build_python = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "python"))
    spec = importlib.util.find_spec("sparcl")
    # A folder without __init__.py (a build whose Python package was not built yet) is no sparcl.
    if (spec is None or spec.origin is None) and os.path.exists(os.path.join(build_python, "sparcl", "__init__.py")):
        sys.path.insert(0, build_python)
    try:
        import sparcl
        import sparcl.torch
        return sparcl, sparcl.torch
    except ImportError as e:
        rank = next((os.environ[v] for v in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "RANK") if v in os.environ), "0")
        if rank == "0":
            print("ddp_topk.py: cannot import sparcl (%s): build it (cmake --build build --target sparcl_python) "
                  "and run with PYTHONPATH=$PWD/build/python (under mpirun: mpirun -x PYTHONPATH=$PWD/build/python "
                  "...), or install it (cmake --install build); see docs/pytorch.md" % e, file=sys.stderr, flush=True)
        else:
            time.sleep(2)  # mpirun stops every rank when the first exits: let rank 0 say why first
        sys.exit(1)


sparcl, st = import_sparcl()

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """An IDX file (gzip'd) as a uint8 tensor of its dimensions."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(dims)


def load(split, rank=0, size=1):
    """Images (normalised float32) and labels; of the training set only every size-th from rank."""
    prefix = "train" if split == "train" else "t10k"
    images = os.path.join(DATA, prefix + "-images-idx3-ubyte.gz")
    if not os.path.exists(images):
        sys.exit("%s not found: install Debian's dataset-fashion-mnist (tools/deps.sh)" % images)
    x = read_idx(images).reshape(-1, 28 * 28)[rank::size].float()
    x.sub_(0.2860 * 255).div_(0.3530 * 255)  # the training set's mean and standard deviation
    y = read_idx(os.path.join(DATA, prefix + "-labels-idx1-ubyte.gz"))[rank::size].long()
    return x, y


def make_model():
    torch.manual_seed(0)  # the same start for every method (DDP also broadcasts rank 0's)
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))


def train(method, args, data, comm):
    rank, size = dist.get_rank(), dist.get_world_size()
    x, y, test_x, test_y = data
    ddp = DDP(make_model())
    if method == "sparcl-topk":
        ddp.register_comm_hook(st.TopKState(comm, density=args.density, values=args.values), st.topk_hook)
    elif method == "sparcl-dense":
        ddp.register_comm_hook(comm, st.allreduce_hook)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=0.9)
    generator = torch.Generator().manual_seed(rank)  # each rank its own batches
    losses = []
    every = 0 if args.quiet else 10 if args.verbose else max(1, args.steps // 10)
    if rank == 0 and every:
        print("  %-12s %d steps of %d samples per rank" % (method, args.steps, args.batch), flush=True)
    start = time.perf_counter()
    for step in range(args.steps):
        batch = torch.randint(0, x.shape[0], (args.batch,), generator=generator)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(ddp(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if rank == 0 and every and ((step + 1) % every == 0 or step + 1 == args.steps):
            elapsed = time.perf_counter() - start
            print("  %-12s step %4d/%d  loss %.4f  %.1f s, about %.0f s left" %
                  (method, step + 1, args.steps, loss.item(), elapsed, elapsed / (step + 1) * (args.steps - step - 1)),
                  flush=True)
    seconds = time.perf_counter() - start
    tail = torch.tensor(losses[-max(1, args.steps // 5):]).mean()
    dist.all_reduce(tail)
    with torch.no_grad():
        accuracy = (ddp.module(test_x).argmax(1) == test_y).float().mean().item()
    if rank == 0:
        print("result method=%s ranks=%d steps=%d train_loss=%.4f test_accuracy=%.4f seconds=%.1f" %
              (method, size, args.steps, tail.item() / size, accuracy, seconds), flush=True)


def run(args):
    torch.set_num_threads(args.threads)
    rank, size = st.init_distributed()
    data = load("train", rank, size) + load("test")  # each rank its part of the training set
    comm = st.Communicator(transport=args.transport)
    if rank == 0:
        print("sparcl %s: %d ranks, %s transport, top-k density %g, %s values" %
              (sparcl.version(), size, comm.transport, args.density, args.values), flush=True)
    for method in (["default", args.method] if args.compare else [args.method]):
        train(method, args, data, comm)
    comm.close()
    st.finalize_distributed()


def spawned(local_rank, args, port):
    os.environ.update(RANK=str(local_rank), WORLD_SIZE=str(args.nprocs), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    run(args)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nprocs", type=int, default=2, help="processes to start when no launcher did")
    parser.add_argument("--method", choices=["sparcl-topk", "sparcl-dense", "default"], default="sparcl-topk",
                        help="sparcl's top-k hook, sparcl's dense hook, or DDP's own allreduce")
    parser.add_argument("--compare", action="store_true", help="train with DDP's default first, then --method")
    parser.add_argument("--density", type=float, default=0.01)
    parser.add_argument("--values", default="raw", help="raw, fp16, bf16, qsgd8, qsgd4 or qsgd2")
    parser.add_argument("--transport", choices=["ucx", "ofi"], default=None)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=32, help="per rank")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--verbose", action="store_true", help="print the loss every 10 steps (default: 10 times)")
    parser.add_argument("--quiet", action="store_true", help="print only the result lines")
    args = parser.parse_args()
    launched = any(v in os.environ for v in ("RANK", "OMPI_COMM_WORLD_RANK"))
    if launched or args.nprocs == 1:
        run(args)
    else:
        with socket.socket() as s:  # a free port for the rendezvous
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        torch.multiprocessing.spawn(spawned, args=(args, port), nprocs=args.nprocs)


if __name__ == "__main__":
    main()
