# SPDX-License-Identifier: BSD-3-Clause
"""One rank of test_checkpoint.py: training resumed from checkpoints equals uninterrupted training.

    checkpoint_worker.py --transport ucx

- DDP with topk_hook (5%, error feedback) and SGD with momentum: 8 steps uninterrupted against
  4 steps, a checkpoint (model, optimizer, TopKState.state_dict()), a new model, DDP, optimizer
  and TopKState loaded from it, and 4 more steps; the same through pickle.dumps/loads of the
  TopKState; parameters bitwise equal. Resuming without the residuals must differ (so the
  residuals really are in the checkpoint).
- DistributedOptimizer with top-k: the same with its state_dict().
- allreduce_hook with None as its state (the default communicator) equals DDP's default hook.
- Communicator.transport names the transport in use.
Rank 0 prints "PASS ..." lines.
"""
import argparse
import copy
import datetime
import os
import pickle

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

import sparcl
import sparcl.torch as st

STEPS, SPLIT = 8, 4


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 1))


def batch(rank, step):
    g = torch.Generator().manual_seed(100 * step + rank)
    return torch.randn(16, 32, generator=g), torch.randn(16, 1, generator=g)


def steps(model, optimizer, rank, first, last):
    for step in range(first, last):
        x, y = batch(rank, step)
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


def equal(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def ddp_topk(comm, model):
    ddp = DDP(model)
    state = st.TopKState(comm, density=0.05, model=ddp)
    ddp.register_comm_hook(state, st.topk_hook)
    return ddp, state


def check_topk_hook(comm, rank):
    ref = make_model()
    ddp, _ = ddp_topk(comm, ref)
    steps(ddp, torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9), rank, 0, STEPS)

    first = make_model()
    ddp, state = ddp_topk(comm, first)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    steps(ddp, opt, rank, 0, SPLIT)
    checkpoint = {"model": copy.deepcopy(first.state_dict()), "optimizer": copy.deepcopy(opt.state_dict()),
                  "topk": state.state_dict()}
    blob = pickle.dumps(state)
    assert checkpoint["topk"]["residuals"], "no residuals in the checkpoint"
    assert any(r.abs().sum() > 0 for r in checkpoint["topk"]["residuals"].values())

    def resume(load_state):
        model = make_model()
        model.load_state_dict(checkpoint["model"])
        ddp = DDP(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
        opt.load_state_dict(checkpoint["optimizer"])
        state = load_state(ddp)
        ddp.register_comm_hook(state, st.topk_hook)
        steps(ddp, opt, rank, SPLIT, STEPS)
        return model

    def from_state_dict(ddp):
        state = st.TopKState(comm, density=0.05, model=ddp)
        state.load_state_dict(checkpoint["topk"])
        return state

    def from_pickle(ddp):
        state = pickle.loads(blob)
        assert state.comm is None and state.iter == SPLIT
        state.comm, state.model = comm, ddp
        return state

    def without_residuals(ddp):
        state = st.TopKState(comm, density=0.05, model=ddp)
        state.iter = SPLIT
        return state

    assert equal(ref, resume(from_state_dict)), "topk_hook: resumed from state_dict differs"
    assert equal(ref, resume(from_pickle)), "topk_hook: resumed from a pickle differs"
    assert not equal(ref, resume(without_residuals)), "topk_hook: residuals made no difference"


def check_optimizer(comm, rank):
    def wrap(model):
        return st.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), model,
                                       comm=comm, compression="topk", density=0.05, min_compress_numel=1000)
    ref = make_model()
    opt = wrap(ref)
    steps(ref, opt, rank, 0, STEPS)
    opt.remove_hooks()

    first = make_model()
    opt = wrap(first)
    steps(first, opt, rank, 0, SPLIT)
    checkpoint = copy.deepcopy({"model": first.state_dict(), "optimizer": opt.state_dict()})
    opt.remove_hooks()
    assert checkpoint["optimizer"]["sparcl"]["residuals"], "no residuals in the optimizer's state_dict"

    def resume(with_residuals):
        model = make_model()
        model.load_state_dict(checkpoint["model"])
        opt = wrap(model)
        saved = dict(checkpoint["optimizer"])
        if not with_residuals:
            saved.pop("sparcl")
        opt.load_state_dict(saved)
        steps(model, opt, rank, SPLIT, STEPS)
        opt.remove_hooks()
        return model

    assert equal(ref, resume(True)), "DistributedOptimizer: resumed from state_dict differs"
    assert not equal(ref, resume(False)), "DistributedOptimizer: residuals made no difference"


def check_default_hook(rank, size):
    ref = make_model()
    ddp = DDP(ref)
    steps(ddp, torch.optim.SGD(ddp.parameters(), lr=0.05), rank, 0, 3)
    model = make_model()
    ddp = DDP(model)
    ddp.register_comm_hook(None, st.allreduce_hook)
    steps(ddp, torch.optim.SGD(ddp.parameters(), lr=0.05), rank, 0, 3)
    if size == 2:  # one addition per sum, halving exact
        assert equal(ref, model), "allreduce_hook(None): differs from DDP's default"
    else:
        assert all(torch.allclose(p, q, rtol=1e-5, atol=1e-6) for p, q in zip(ref.parameters(), model.parameters()))
    expected = os.environ.get("SPARCL_TRANSPORT") or ("ucx" if "ucx" in sparcl._lib.built_transports() else "ofi")
    assert st.default_communicator().transport == expected, st.default_communicator().transport


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", default="ucx")
    args = parser.parse_args()
    rank, size = st.init_distributed(timeout=datetime.timedelta(seconds=120))
    # On more than 2 ranks the rounding of a sum depends on the order of its additions, which
    # with auto depends on what the communicator did before, and with ring and the like on the
    # element's position (DDP's first bucket layout, which a resumed run starts with again, orders
    # the parameters differently from the rebuilt one). allgather adds in rank order everywhere.
    with st.Communicator(transport=args.transport, algorithm="allgather", timeout_ms=60000) as comm:
        assert comm.transport == (os.environ.get("SPARCL_TRANSPORT") or args.transport), comm.transport
        assert comm.transport in repr(comm)
        check_topk_hook(comm, rank)
        if rank == 0:
            print("PASS topk_hook resume %s %d ranks" % (args.transport, size), flush=True)
        check_optimizer(comm, rank)
        if rank == 0:
            print("PASS optimizer resume %s %d ranks" % (args.transport, size), flush=True)
    check_default_hook(rank, size)
    if rank == 0:
        print("PASS allreduce_hook None %d ranks" % size, flush=True)
    st.finalize_distributed()


if __name__ == "__main__":
    main()
