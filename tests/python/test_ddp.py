# SPDX-License-Identifier: BSD-3-Clause
"""Multi-process DDP with sparcl's hooks (ddp_worker.py does the checks on every rank):

- exact dense and top-k sums against sums computed from every rank's data;
- top-k DDP (1%, 7 entries with 4-bit values, approximate top-k without error feedback,
  global selection at 2%) keeps the parameters bitwise identical on every rank;
- with density 1.0, and with sparcl's dense hook, the parameters after 5 steps equal those of
  DDP's default allreduce within float32 rounding (rtol 1e-5, atol 1e-6);
- a collective that fails (ranks disagree on its size) fails on every rank and the
  communicator stays usable;

on 2 processes started with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT and on 4 started by
mpirun (OMPI_COMM_WORLD_*), over UCX and libfabric (those in the build).
"""
import os

from conftest import HERE, PYTHON, free_port, mpiexec, rank_env, run_all, transports

WORKER = [PYTHON, os.path.join(HERE, "ddp_worker.py"), "--transports", ",".join(transports())]
SCENARIOS = ["sums", "identical", "dense", "errors"]


def check_passed(output, size):
    for scenario in SCENARIOS:
        for transport in transports():
            line = "PASS %s %s %d ranks" % (scenario, transport, size)
            assert line in output, "missing %r in rank 0's output:\n%s" % (line, output)


def test_two_processes_from_environment():
    port = free_port()
    outputs = run_all([(WORKER, rank_env(rank, 2, port)) for rank in range(2)], timeout=150)
    check_passed(outputs[0], 2)


def test_four_processes_from_mpirun():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    outputs = run_all([([mpiexec(), "-np", "4"] + WORKER, env)], timeout=200)
    check_passed(outputs[0], 4)
