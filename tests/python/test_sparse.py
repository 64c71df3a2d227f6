# SPDX-License-Identifier: BSD-3-Clause
"""sparcl.torch.all_reduce on torch.sparse_coo tensors (sparse_worker.py checks on every rank):
coalesced and uncoalesced, 1-D, 2-D and hybrid (embedding gradient) tensors, float32 and float64,
blocking and non-blocking, against the sum of the ranks' dense forms; bad input on one rank or on
all (indices beyond the size, shapes or sizes that differ between ranks, integer values) raises on
every rank without a hang and leaves the communicator usable. 2 and 3 processes, every transport
of the build."""
import os

from conftest import HERE, PYTHON, free_port, rank_env, run_all, transports

WORKER = [PYTHON, os.path.join(HERE, "sparse_worker.py"), "--transports", ",".join(transports())]


def run(size):
    port = free_port()
    outputs = run_all([(WORKER, rank_env(rank, size, port)) for rank in range(size)], timeout=150)
    for transport in transports():
        line = "PASS %s %d ranks" % (transport, size)
        assert line in outputs[0], "missing %r in rank 0's output:\n%s" % (line, outputs[0])
    assert "PASS default communicator %d ranks" % size in outputs[0], outputs[0]


def test_two_processes():
    run(2)


def test_three_processes():
    run(3)
