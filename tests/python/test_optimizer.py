# SPDX-License-Identifier: BSD-3-Clause
"""sparcl.torch.DistributedOptimizer against DDP's default allreduce (optimizer_worker.py): a model
with a sparse embedding and an MLP, top-k at density 1.0 and dense exchange; bitwise identical
parameters on 2 processes, within float32 rounding on 3."""
import os

from conftest import HERE, PYTHON, free_port, rank_env, run_all, transports


def run(size):
    transport = transports()[0]
    worker = [PYTHON, os.path.join(HERE, "optimizer_worker.py"), "--transport", transport]
    port = free_port()
    outputs = run_all([(worker, rank_env(rank, size, port)) for rank in range(size)], timeout=150)
    for compression in ("topk", "none"):
        line = "PASS %s %s %d ranks" % (compression, transport, size)
        assert line in outputs[0], "missing %r in rank 0's output:\n%s" % (line, outputs[0])


def test_two_processes_bitwise():
    run(2)


def test_three_processes():
    run(3)
