# SPDX-License-Identifier: BSD-3-Clause
"""Helpers of the Python tests: they start the ranks themselves and always clean up.

ctest (tests/python/CMakeLists.txt) sets PYTHONPATH to the build tree's
python/ and SPARCL_TEST_BUILD_DIR / SPARCL_TEST_SOURCE_DIR / SPARCL_TEST_MPIEXEC.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = sys.executable  # /usr/bin/python3, as ctest runs it


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _signal(process, sig):
    try:
        os.killpg(process.pid, sig)  # each was started in a session of its own
    except ProcessLookupError:
        pass


def _stop(processes, grace=5.0):
    """Ends what still runs: SIGTERM first (mpirun then stops its ranks), SIGKILL after `grace` s."""
    running = [p for p in processes if p.poll() is None]
    for p in running:
        _signal(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in running:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(p, signal.SIGKILL)
            p.wait()


def run_all(commands, timeout):
    """Runs the (argv, env) commands at once, each in a session of its own, and waits for all of
    them, at most `timeout` seconds; kills all of them at the first failure or on timeout. Returns
    their outputs (stdout and stderr together); fails the test unless every one exited with 0."""
    processes, logs = [], []
    try:
        for argv, env in commands:
            logs.append(tempfile.TemporaryFile(mode="w+"))
            processes.append(subprocess.Popen(argv, stdout=logs[-1], stderr=subprocess.STDOUT, env=env,
                                              start_new_session=True))
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in processes):
            if any(p.returncode not in (None, 0) for p in processes) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        timed_out = any(p.poll() is None for p in processes)
    finally:
        _stop(processes)
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    failed = [(i, p.returncode) for i, p in enumerate(processes) if p.returncode != 0]
    if failed or timed_out:
        report = "\n".join("--- process %d (exit %s):\n%s" % (i, p.returncode, out[-4000:])
                           for i, (p, out) in enumerate(zip(processes, outputs)))
        pytest.fail("%s\n%s" % ("timed out after %d s" % timeout if timed_out else "failed: %s" % failed, report))
    return outputs


def rank_env(rank, size, port, extra=None):
    env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    env.update(extra or {})
    return env


def mpiexec():
    return os.environ.get("SPARCL_TEST_MPIEXEC", "mpirun")


def build_dir():
    path = os.environ.get("SPARCL_TEST_BUILD_DIR")
    if not path:
        pytest.skip("SPARCL_TEST_BUILD_DIR is not set (run through ctest)")
    return path


def transports():
    """The transports of this build that a communicator from torch.distributed can use."""
    return os.environ.get("SPARCL_TEST_TRANSPORTS", "ucx,ofi").split(",")


def source_dir():
    return os.environ.get("SPARCL_TEST_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
