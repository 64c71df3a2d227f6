# SPDX-License-Identifier: BSD-3-Clause
"""One rank of the multi-process tests (test_ddp.py starts 2 or 4 of them).

    ddp_worker.py --transports ucx,ofi --scenarios sums,identical,dense,errors

The rank and the rendezvous come from the launcher's environment (RANK/...
or mpirun's OMPI_COMM_WORLD_*), through sparcl.torch.init_distributed. Every
check raises on failure, so the process exits non-zero; rank 0 prints one
"PASS <scenario> <transport> ..." line per scenario.
"""
import argparse
import datetime
import sys
import warnings

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

import sparcl
import sparcl.torch as st


def report(rank, line):
    if rank == 0:
        print("PASS " + line, flush=True)


def gather_all(tensor):
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor)
    return parts


# --- exact sums through the Communicator --------------------------------------------------------


def rank_vector(r, n, seed):
    """Rank r's vector: distinct integer magnitudes (no ties), random signs."""
    g = torch.Generator().manual_seed(seed * 1000 + r)
    magnitudes = torch.randperm(n, generator=g).float() + 1.0
    signs = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
    return magnitudes * signs


def scenario_sums(comm, transport):
    """Dense and compressed allreduce against sums computed locally from every rank's data:
    integer values, so the results must be exact."""
    rank, size = comm.rank, comm.size
    for n in (1, 1000, 70001):
        k = max(1, n // 50)
        mine = rank_vector(rank, n, seed=n)
        everyone = [rank_vector(r, n, seed=n) for r in range(size)]

        dense = mine.clone()
        got = comm.allreduce(dense).wait()
        assert got is dense
        assert torch.equal(dense, torch.stack(everyone).sum(0)), "dense sum, n=%d" % n

        compressor = st.Compressor(n, k=k)
        expected = torch.zeros(n)
        for v in everyone:
            top = v.abs().topk(k).indices
            expected[top] += v[top]
        out = mine.clone()
        comm.allreduce_compressed(compressor, out).wait()
        assert torch.equal(out, expected), "top-%d sum, n=%d" % (k, n)
        # Error feedback: what was not sent stays, exactly, in the residual.
        residual = compressor.residual()
        kept = mine.clone()
        kept[mine.abs().topk(k).indices] = 0
        assert torch.equal(residual, kept), "residual, n=%d" % n

        # Mean: the same division on every rank gives bitwise equal results.
        out = mine.clone() / 3
        comm.allreduce(out, average=True).wait()
        assert all(torch.equal(out, o) for o in gather_all(out)), "mean differs across ranks"
    # A compressor used again on the same memory starts its persistent plan; other memory gets
    # a new plan. Without error feedback each step's sum is the top-k of each rank's vector.
    n, k = 3000, 60
    compressor = st.Compressor(n, k=k, error_feedback=False)
    buffer = torch.empty(n)
    for seed in (500, 501, 502, None):
        target = buffer if seed is not None else torch.empty(n)
        seed = seed if seed is not None else 503
        target.copy_(rank_vector(rank, n, seed=seed))
        expected = torch.zeros(n)
        for v in (rank_vector(r, n, seed=seed) for r in range(size)):
            top = v.abs().topk(k).indices
            expected[top] += v[top]
        comm.allreduce_compressed(compressor, target).wait()
        assert torch.equal(target, expected), "persistent top-%d sum, seed %d" % (k, seed)
    # Several collectives in flight at once, completed in order.
    tensors = [rank_vector(rank, 5000, seed=i) for i in range(6)]
    futures = [comm.allreduce(t) for t in tensors]
    torch.futures.wait_all(futures)
    for i, t in enumerate(tensors):
        assert torch.equal(t, torch.stack([rank_vector(r, 5000, seed=i) for r in range(size)]).sum(0))
    report(rank, "sums %s %d ranks" % (transport, size))


# --- DDP ----------------------------------------------------------------------------------------


class Net(nn.Module):
    """Layers of different sizes (buckets of different sizes) and one float64 parameter."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                                  nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
        self.scale = nn.Parameter(torch.ones(1, dtype=torch.float64))

    def forward(self, x):
        return self.body(x) * self.scale.float()


def make_ddp(hook=None, state=None):
    torch.manual_seed(1234)
    model = Net()
    # Small buckets: DDP starts with one bucket per dtype and, after the first iteration, rebuilds
    # them by these caps (the first one, 1 MB by default, is torch's documented tuning knob): then
    # several buckets of different sizes, some below min_compress_numel.
    dist._DEFAULT_FIRST_BUCKET_BYTES = 16 * 1024
    ddp = DDP(model, bucket_cap_mb=0.05)
    if hook is not None:
        ddp.register_comm_hook(state, hook)
    return ddp, torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)


def train(ddp, optimizer, steps):
    rank = dist.get_rank()
    for step in range(steps):
        g = torch.Generator().manual_seed(step * 100 + rank)  # every rank its own data
        x = torch.randn(16, 32, generator=g)
        y = torch.randint(0, 10, (16,), generator=g)
        optimizer.zero_grad()
        nn.functional.cross_entropy(ddp(x), y).backward()
        optimizer.step()


def flat_parameters(ddp):
    return torch.cat([p.detach().double().reshape(-1) for p in ddp.parameters()])


def scenario_identical(comm, transport):
    """Top-k DDP keeps the parameters bitwise identical on every rank, with several settings."""
    settings = [
        dict(density=0.01),
        dict(k=7, values="qsgd4", start_iter=2),
        dict(density=0.05, method="approx_topk", error_feedback=False, min_compress_numel=1),
        dict(density=0.02, selection="global", threshold_reuse=4),
    ]
    for options in settings:
        state = st.TopKState(comm, **options)
        ddp, optimizer = make_ddp(st.topk_hook, state)
        before = flat_parameters(ddp)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train(ddp, optimizer, steps=8)
        after = flat_parameters(ddp)
        assert not torch.equal(before, after), "training changed nothing"
        for other in gather_all(after):
            assert torch.equal(after, other), "parameters differ across ranks with %s" % options
        # The float64 parameter (1 entry) is compressed only with min_compress_numel 1; then it
        # goes dense with one warning.
        float64 = [w for w in caught if "float64" in str(w.message)]
        expected = 1 if options.get("min_compress_numel") == 1 else 0
        assert len(float64) == expected, "expected %d float64 warnings, got %d" % (expected, len(float64))
        assert state.iter == 8
        residuals = [state.residual(p) for p in ddp.parameters()]
        if options.get("error_feedback", True):
            assert any(r is not None and r.abs().sum() > 0 for r in residuals), "residuals are all zero"
        else:
            assert all(r is None for r in residuals)
    report(comm.rank, "identical %s %d ranks" % (transport, comm.size))


def scenario_dense(comm, transport):
    """With density 1.0 the top-k hook (and sparcl's dense hook) train like DDP's default allreduce."""
    reference, optimizer = make_ddp()
    train(reference, optimizer, steps=5)
    expected = flat_parameters(reference)
    for name, hook, state in [("topk density 1.0", st.topk_hook, st.TopKState(comm, density=1.0)),
                              ("allreduce_hook", st.allreduce_hook, comm)]:
        ddp, optimizer = make_ddp(hook, state)
        train(ddp, optimizer, steps=5)
        got = flat_parameters(ddp)
        # Sums in another order than gloo's: equal up to float32 rounding.
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6), \
            "%s: max difference %g from DDP's default" % (name, (got - expected).abs().max())
        for other in gather_all(got):
            assert torch.equal(got, other), "%s: parameters differ across ranks" % name
    report(comm.rank, "dense %s %d ranks" % (transport, comm.size))


def scenario_errors(comm, transport):
    """A collective that fails fails on every rank, as an exception from its future, and the
    communicator stays usable; a failing DDP hook surfaces in backward()."""
    rank = comm.rank
    bad = torch.ones(100 + (rank == 1))  # rank 1 disagrees on the dimension
    try:
        comm.allreduce(bad).wait()
    except sparcl.SparclError as e:
        message = str(e)
        assert e.status_name == "SPARCL_ERR_MISMATCH" and "dim 10" in message and "101" in message, \
            "%s: %s" % (e.status_name, message)
    else:
        raise AssertionError("a dimension mismatch did not fail")
    good = torch.ones(10)
    comm.allreduce(good).wait()
    assert torch.equal(good, torch.full((10,), float(comm.size)))

    for wrong, error in [(torch.ones(3, dtype=torch.int32), TypeError), (torch.ones(4, 4).t(), ValueError)]:
        try:
            comm.allreduce(wrong)
        except error:
            pass
        else:
            raise AssertionError("allreduce accepted %s" % wrong)
    report(rank, "errors %s %d ranks" % (transport, comm.size))


SCENARIOS = {"sums": scenario_sums, "identical": scenario_identical, "dense": scenario_dense,
             "errors": scenario_errors}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--transports", default="ucx")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rank, size = st.init_distributed(timeout=datetime.timedelta(seconds=120))
    if rank == 0:
        print("sparcl %s from %s, torch %s, %d ranks" % (sparcl.version(), sparcl.library_path(),
                                                          torch.__version__, size), flush=True)
    for transport in args.transports.split(","):
        with st.Communicator(transport=transport, timeout_ms=60000) as comm:
            for name in args.scenarios.split(","):
                SCENARIOS[name](comm, transport)
    st.finalize_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
