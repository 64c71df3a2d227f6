# SPDX-License-Identifier: BSD-3-Clause
"""The package in one process: loading the library, argument checks, the communicator of one
rank, compressors, the launch environment, and the top-k state across DDP's bucket rebuild."""
import os
import subprocess

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

import sparcl
import sparcl.torch as st
from conftest import PYTHON, transports


def test_library_found_in_build_tree():
    assert sparcl.version().count(".") == 2
    build = os.environ.get("SPARCL_TEST_BUILD_DIR")
    if build:
        assert os.path.realpath(sparcl.library_path()).startswith(os.path.realpath(build))


def test_missing_library_is_a_clear_import_error():
    env = dict(os.environ, SPARCL_LIBRARY="/nonexistent/libsparcl.so")
    run = subprocess.run([PYTHON, "-c", "import sparcl"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "cannot load libsparcl" in run.stderr and "/nonexistent/libsparcl.so (from $SPARCL_LIBRARY)" in run.stderr
    assert "_libpath" not in run.stderr  # what the user asked for, or nothing


def test_communicator_needs_torch_distributed():
    if dist.is_initialized():
        pytest.skip("torch.distributed was initialised by an earlier test")
    with pytest.raises(RuntimeError, match="init_process_group"):
        st.Communicator()


@pytest.fixture(scope="module")
def comm():
    st.init_distributed()
    with st.Communicator(timeout_ms=60000) as c:
        yield c
    st.finalize_distributed()


def test_single_rank_allreduce(comm):
    assert (comm.rank, comm.size) == (0, 1)
    for dtype in (torch.float32, torch.float64):
        t = torch.arange(-5, 5, dtype=dtype)
        assert torch.equal(comm.allreduce(t.clone()).wait(), t)
        assert torch.equal(comm.allreduce(t.clone(), average=True).wait(), t)
    empty = torch.zeros(0)
    assert comm.allreduce(empty).wait() is empty
    assert comm.stats()["collectives"] >= 4


def test_bad_tensors_are_rejected(comm):
    with pytest.raises(TypeError, match="dtype torch.int64"):
        comm.allreduce(torch.ones(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="contiguous"):
        comm.allreduce(torch.ones(4, 4).t())
    with pytest.raises(ValueError, match="requires grad"):
        comm.allreduce(torch.ones(3, requires_grad=True))
    with pytest.raises(TypeError, match="torch.Tensor"):
        comm.allreduce([1.0, 2.0])
    compressor = st.Compressor(10)
    with pytest.raises(ValueError, match="10"):
        comm.allreduce_compressed(compressor, torch.ones(11))
    with pytest.raises(TypeError, match="float32"):
        comm.allreduce_compressed(compressor, torch.ones(10, dtype=torch.float64))
    with pytest.raises(TypeError, match="Compressor"):
        comm.allreduce_compressed(None, torch.ones(10))


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="method must be one of .*topk"):
        st.Compressor(10, method="top-k")
    with pytest.raises(ValueError, match="values must be one of .*qsgd4"):
        st.Compressor(10, values="int4")
    with pytest.raises(sparcl.SparclError, match="density") as info:
        st.Compressor(10, density=2.0)
    assert info.value.status_name == "SPARCL_ERR_INVALID_ARG"
    with pytest.raises(sparcl.SparclError, match="momentum"):
        st.Compressor(10, momentum=1.5)
    with pytest.raises(ValueError, match="numel"):
        st.Compressor(0)
    with pytest.raises(ValueError, match="selection must be one of .*global"):
        st.Compressor(10, selection="everywhere")
    with pytest.raises(ValueError, match="threshold_reuse"):
        st.Compressor(10, selection="global", threshold_reuse=0)
    with pytest.raises(sparcl.SparclError, match="global selection") as info:
        st.Compressor(10, method="threshold", selection="global")
    assert info.value.status_name == "SPARCL_ERR_UNSUPPORTED"
    st.Compressor(10, selection="global", global_threshold="exact").close()


def test_communicator_options(comm):
    with pytest.raises(ValueError, match="transport must be one of"):
        st.Communicator(transport="tcp")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        st.Communicator(algorithm="fastest")
    with pytest.raises(ValueError, match="timeout_ms"):
        st.Communicator(timeout_ms=-1)
    for transport, algorithm in zip(transports() * 2, ("ring", "split_allgather")):
        with st.Communicator(transport=transport, algorithm=algorithm, ofi_provider="tcp;ofi_rxm") as other:
            t = torch.arange(8.0)
            assert torch.equal(other.allreduce(t.clone()).wait(), t)
    closed = st.Communicator()
    closed.close()
    closed.close()  # again: nothing
    with pytest.raises(RuntimeError, match="closed"):
        closed.allreduce(torch.ones(2))


def test_compressor_keeps_what_it_does_not_send(comm):
    g = torch.tensor([0.5, -4.0, 1.0, 3.0, -0.25, 2.0])
    compressor = st.Compressor(6, k=2)
    out = g.clone()
    comm.allreduce_compressed(compressor, out).wait()
    assert torch.equal(out, torch.tensor([0.0, -4.0, 0.0, 3.0, 0.0, 0.0]))
    assert torch.equal(compressor.residual(), torch.tensor([0.5, 0.0, 1.0, 0.0, -0.25, 2.0]))
    # Next step: residual + gradient is what gets ranked.
    out = torch.zeros(6)
    comm.allreduce_compressed(compressor, out).wait()
    assert torch.equal(out, torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 2.0]))
    compressor.set_residual(torch.arange(6.0))
    assert torch.equal(compressor.residual(), torch.arange(6.0))
    compressor.reset()
    assert torch.equal(compressor.residual(), torch.zeros(6))
    assert st.Compressor(6, error_feedback=False).residual() is None
    compressor.close()
    with pytest.raises(ValueError, match="closed"):
        compressor.residual()


def test_launch_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "OMPI_COMM_WORLD_RANK",
                 "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMIX_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ValueError, match="only one"):
        st.launch_environment()
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        st.launch_environment()
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    assert st.launch_environment() == (1, 2, "env://")
    assert os.environ["MASTER_PORT"] == "29500"
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(ValueError, match=r"not in \[0, 1\)"):
        st.launch_environment()
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "4")
    monkeypatch.setenv("PMIX_NAMESPACE", "1234")
    rank, size, method = st.launch_environment()
    assert (rank, size) == (3, 4) and method.startswith("file://") and method.endswith("sparcl-torch-1234")
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "1")  # across hosts
    with pytest.raises(ValueError, match="mpirun -x MASTER_ADDR"):
        st.launch_environment()
    monkeypatch.setenv("MASTER_ADDR", "node1")
    assert st.launch_environment() == (3, 4, "env://")


def test_topk_state_checks(comm):
    with pytest.raises(ValueError, match="density"):
        st.TopKState(comm, density=0.0)
    with pytest.raises(ValueError, match="values must be one of"):
        st.TopKState(comm, values="int3")
    with pytest.raises(ValueError, match="start_iter"):
        st.TopKState(comm, start_iter=-1)
    with pytest.raises(ValueError, match="selection must be one of"):
        st.TopKState(comm, selection="both")
    with pytest.raises(TypeError, match="Communicator"):
        st.TopKState(None)


class Branches(nn.Module):
    """Backward reaches c before a and b: DDP's rebuilt buckets order the parameters differently
    from the first iteration's single bucket."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(20, 300), nn.Linear(300, 40), nn.Linear(20, 40)

    def forward(self, x):
        return self.b(torch.relu(self.a(x))) + self.c(x)


def test_residuals_survive_bucket_rebuild(comm):
    """One rank, plain SGD: parameters move by exactly what was sent, so for every parameter
    p_0 - p_T == lr * (sum of its gradients - its residual). A residual lost or put onto the
    wrong parameters when DDP rebuilds its buckets (after the first iteration) breaks this."""
    torch.manual_seed(0)
    dist._DEFAULT_FIRST_BUCKET_BYTES = 8 * 1024  # several buckets after the rebuild
    ddp = DDP(Branches(), bucket_cap_mb=0.02)
    state = st.TopKState(comm, density=0.02, min_compress_numel=1)
    gradient_sums = {p: torch.zeros_like(p) for p in ddp.parameters()}
    bucket_counts = []

    def recording_hook(state, bucket):
        for p, g in zip(bucket.parameters(), bucket.gradients()):
            gradient_sums[p] += g.reshape(p.shape)
        bucket_counts.append(bucket.index())
        return st.topk_hook(state, bucket)

    ddp.register_comm_hook(state, recording_hook)
    start = {p: p.detach().clone() for p in ddp.parameters()}
    lr = 0.1
    optimizer = torch.optim.SGD(ddp.parameters(), lr=lr)
    for step in range(6):
        x = torch.randn(8, 20, generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        ddp(x).pow(2).mean().backward()
        optimizer.step()
    assert bucket_counts[0] == 0 and max(bucket_counts) >= 1, "DDP did not rebuild its single first bucket"
    for name, p in ddp.module.named_parameters():
        moved = (start[p] - p.detach()) / lr
        expected = gradient_sums[p] - state.residual(p)
        assert torch.allclose(moved, expected, rtol=1e-4, atol=1e-5), \
            "%s: max error %g" % (name, (moved - expected).abs().max())
    assert state.iter == 6
