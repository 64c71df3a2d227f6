# SPDX-License-Identifier: BSD-3-Clause
"""One rank of test_sparse.py: sparcl.torch.all_reduce on sparse COO (and dense) tensors.

    sparse_worker.py --transports ucx,ofi

Every rank builds every rank's tensor from seeds and checks the sum against the sum of their
dense forms; every check raises on failure. Rank 0 prints "PASS <transport> <n> ranks" at the end.
"""
import argparse
import datetime

import torch
import torch.nn as nn

import sparcl
import sparcl.torch as st


def random_coo(rank, seed, shape, nnz, dtype, sparse_dim=None, coalesce=True, integers=False):
    g = torch.Generator().manual_seed(seed * 100 + rank)
    sparse_dim = len(shape) if sparse_dim is None else sparse_dim
    indices = torch.stack([torch.randint(0, shape[d], (nnz,), generator=g) for d in range(sparse_dim)]) \
        if sparse_dim else torch.zeros(0, nnz, dtype=torch.int64)
    value_shape = (nnz,) + tuple(shape[sparse_dim:])
    if integers:
        values = torch.randint(-8, 9, value_shape, generator=g).to(dtype)
    else:
        values = (torch.rand(value_shape, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)
    t = torch.sparse_coo_tensor(indices, values, shape)  # duplicates possible: uncoalesced
    return t.coalesce() if coalesce else t


def check_sum(got, parts, exact, what):
    want = torch.stack([p.to_dense().to(torch.float64) for p in parts]).sum(0)
    assert got.layout == torch.sparse_coo, "%s: result layout %s" % (what, got.layout)
    assert got.is_coalesced(), "%s: result is not coalesced" % what
    assert got.shape == parts[0].shape and got.dtype == parts[0].dtype, "%s: shape or dtype" % what
    # torch's own view of the indices: coalesce() of the result changes nothing.
    again = got.coalesce()
    assert torch.equal(again._indices(), got._indices()), "%s: indices not in coalesced order" % what
    dense = got.to_dense().to(torch.float64)
    if exact:
        assert torch.equal(dense, want), "%s: wrong sum" % what
    else:
        tol = 1e-5 if parts[0].dtype == torch.float32 else 1e-12
        scale = torch.stack([p.to_dense().abs().to(torch.float64) for p in parts]).sum(0)
        assert torch.all((dense - want).abs() <= tol * scale + 1e-30), "%s: wrong sum" % what


def expect_failure(fn, own_error, bad_here, what):
    """fn() must raise: own_error on a rank with bad input, a SparclError (or ValueError) elsewhere."""
    try:
        fn()
    except own_error if bad_here else (sparcl.SparclError, ValueError) as e:
        return str(e)
    except Exception as e:  # noqa: B902
        raise AssertionError("%s: unexpected %s: %s" % (what, type(e).__name__, e))
    raise AssertionError("%s: no error" % what)


def scenario(comm, rank, size):
    def everyone(*args, **kwargs):
        return [random_coo(r, *args, **kwargs) for r in range(size)]

    # Coalesced 2-D, float32 and float64; integer values sum exactly.
    for dtype in (torch.float32, torch.float64):
        parts = everyone(1, (300, 70), 400, dtype)
        check_sum(st.all_reduce(parts[rank].clone(), comm=comm), parts, False, "2-D %s" % dtype)
    parts = everyone(2, (300, 70), 400, torch.float32, integers=True)
    check_sum(st.all_reduce(parts[rank], comm=comm), parts, True, "2-D integers")

    # Uncoalesced, with repeated indices (summed by sparcl).
    parts = everyone(3, (5000,), 3000, torch.float64, coalesce=False)
    assert not parts[rank].is_coalesced()
    check_sum(st.all_reduce(parts[rank], comm=comm), parts, False, "uncoalesced 1-D")

    # Hybrid: sparse rows of a dense dimension (an embedding gradient's layout).
    parts = everyone(4, (1000, 16), 50, torch.float32, sparse_dim=1, coalesce=False, integers=True)
    check_sum(st.all_reduce(parts[rank], comm=comm), parts, True, "hybrid rows")

    # A rank with nothing to add, and a sum so dense that sparcl returns it dense.
    parts = [random_coo(r, 5, (64, 8), 0 if r == 0 else 400, torch.float32, integers=True) for r in range(size)]
    check_sum(st.all_reduce(parts[rank], comm=comm), parts, True, "empty on rank 0, dense sum")

    # The gradient of nn.Embedding(sparse=True).
    torch.manual_seed(7)
    emb = nn.Embedding(2000, 12, sparse=True)
    g = torch.Generator().manual_seed(rank)
    emb(torch.randint(0, 2000, (64,), generator=g)).sum().backward()
    grads = []
    for r in range(size):
        e = nn.Embedding(2000, 12, sparse=True)
        e.weight.data.copy_(emb.weight.data)
        e(torch.randint(0, 2000, (64,), generator=torch.Generator().manual_seed(r))).sum().backward()
        grads.append(e.weight.grad)
    check_sum(st.all_reduce(emb.weight.grad, comm=comm), grads, True, "embedding gradient")

    # Non-blocking: two in flight, waited for in reverse order.
    a = everyone(6, (700,), 30, torch.float32)
    b = everyone(7, (40, 40), 90, torch.float64)
    work_a = st.all_reduce(a[rank], comm=comm, async_op=True)
    work_b = st.all_reduce(b[rank], comm=comm, async_op=True)
    check_sum(work_b.wait(), b, False, "async b")
    check_sum(work_a.wait(), a, False, "async a")

    # Dense tensors: summed in place.
    dense = torch.full((1000,), float(rank + 1))
    assert st.all_reduce(dense, comm=comm) is dense
    assert torch.equal(dense, torch.full((1000,), float(size * (size + 1) // 2))), "dense sum"

    # --- bad input: every rank raises, nobody hangs, the communicator stays usable ---
    # Indices beyond the size on the last rank only.
    t = random_coo(rank, 8, (100, 10), 20, torch.float32)
    if rank == size - 1:
        idx = t._indices().clone()
        idx[0, 0] = 100
        t = torch._sparse_coo_tensor_unsafe(idx, t._values(), (100, 10))  # torch's constructor would refuse
    message = expect_failure(lambda: st.all_reduce(t, comm=comm), ValueError, rank == size - 1, "index beyond size")
    assert "outside" in message or "rank %d" % (size - 1) in message, message

    # Shapes that differ between ranks (the same number of elements).
    shape = (20, 10) if rank % 2 == 0 else (10, 20)
    t = random_coo(rank, 9, shape, 10, torch.float32)
    message = expect_failure(lambda: st.all_reduce(t, comm=comm), ValueError, True, "shapes differ")
    assert "shape" in message, message

    # Shapes whose sizes differ.
    t = random_coo(rank, 10, (50 + rank, 3), 10, torch.float32)
    expect_failure(lambda: st.all_reduce(t, comm=comm), ValueError, True, "sizes differ")

    # Integer values on rank 0 only; then on every rank.
    t = random_coo(rank, 11, (30, 30), 10, torch.float32)
    if rank == 0:
        t = t.to(torch.int64)
    expect_failure(lambda: st.all_reduce(t, comm=comm), TypeError, rank == 0, "int values on rank 0")
    t = random_coo(rank, 12, (30, 30), 10, torch.float32).to(torch.int32)
    expect_failure(lambda: st.all_reduce(t, comm=comm), TypeError, True, "int values everywhere")

    # A dense tensor of the wrong dtype on rank 0 only.
    d = torch.ones(100, dtype=torch.int32 if rank == 0 else torch.float32)
    expect_failure(lambda: st.all_reduce(d, comm=comm), TypeError, rank == 0, "int dense on rank 0")

    # Still usable.
    parts = everyone(13, (300, 7), 40, torch.float32, integers=True)
    check_sum(st.all_reduce(parts[rank], comm=comm), parts, True, "after the errors")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--transports", default="ucx")
    args = parser.parse_args()
    rank, size = st.init_distributed(timeout=datetime.timedelta(seconds=120))
    for transport in args.transports.split(","):
        # A short timeout: a hang would fail the test instead of stalling it.
        with st.Communicator(transport=transport, timeout_ms=30000) as comm:
            scenario(comm, rank, size)
        if rank == 0:
            print("PASS %s %d ranks" % (transport, size), flush=True)
    # The default communicator of all_reduce (created on first use, closed by finalize).
    t = torch.sparse_coo_tensor([[rank]], [1.0], (size,))
    total = st.all_reduce(t)
    assert torch.equal(total.to_dense(), torch.ones(size)), "default communicator"
    st.finalize_distributed()
    if rank == 0:
        print("PASS default communicator %d ranks" % size, flush=True)


if __name__ == "__main__":
    main()
