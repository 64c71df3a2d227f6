# SPDX-License-Identifier: BSD-3-Clause
"""Checkpoints of the hook state and of DistributedOptimizer (checkpoint_worker.py): training
resumed from TopKState.state_dict(), from a pickled TopKState and from DistributedOptimizer's
state_dict() equals uninterrupted training bit for bit (and resuming without the residuals does
not); allreduce_hook takes None as its state; Communicator.transport names the transport used."""
import os

from conftest import HERE, PYTHON, free_port, rank_env, run_all, transports


def run(size):
    transport = transports()[0]
    worker = [PYTHON, os.path.join(HERE, "checkpoint_worker.py"), "--transport", transport]
    port = free_port()
    outputs = run_all([(worker, rank_env(rank, size, port)) for rank in range(size)], timeout=150)
    for line in ("PASS topk_hook resume %s %d ranks" % (transport, size),
                 "PASS optimizer resume %s %d ranks" % (transport, size),
                 "PASS allreduce_hook None %d ranks" % size):
        assert line in outputs[0], "missing %r in rank 0's output:\n%s" % (line, outputs[0])


def test_two_processes():
    run(2)


def test_three_processes():
    run(3)
