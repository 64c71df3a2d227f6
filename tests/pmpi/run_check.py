# SPDX-License-Identifier: BSD-3-Clause
"""Runs an unmodified MPI program with and without LD_PRELOAD=libsparcl_pmpi.so and compares.

    run_check.py c MPIEXEC NP PRELOAD_LIB PROGRAM     the C program (allreduce_check.c)
    run_check.py python MPIEXEC NP PRELOAD_LIB SCRIPT  the mpi4py program (allreduce_mpi4py.py)

Both programs check their own sums; rank 0 writes every result to a file.
Here the two files must agree: bit for bit where MPI computes the result in
both runs (pass-through cases) or where the sum is exact in any order, within
float reordering elsewhere. The preloaded run prints where each call went
(SPARCL_PMPI_VERBOSE=2): the counts must be exactly those the program makes,
so a preload that intercepts nothing cannot pass.
"""
import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np

TIMEOUT = 150


def run(cmd, env=None):
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=TIMEOUT, check=False)
    sys.stdout.write(proc.stdout)
    sys.stdout.write(proc.stderr)
    if proc.returncode != 0:
        sys.exit("FAILED: exit status %d" % proc.returncode)
    return proc.stdout + proc.stderr


def mpirun(mpiexec, np_, argv, preload=None, extra=()):
    cmd = [mpiexec, "-np", str(np_)]
    if preload:
        # The programs' large calls have 2^17 elements: below the default threshold, above this one.
        cmd += ["-x", "LD_PRELOAD=" + preload, "-x", "SPARCL_PMPI_VERBOSE=2", "-x", "SPARCL_PMPI_MIN_COUNT=65536"]
    for var in extra:
        cmd += ["-x", var]
    return run(cmd + list(argv))


def records(path):
    out = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        name = data[pos:pos + 32].split(b"\0")[0].decode()
        exact, elem, count = struct.unpack_from("<iii", data, pos + 32)
        pos += 44
        dtype = {4: np.float32, 8: np.float64}[elem]
        if name == "int sum":
            dtype = np.int32
        out.append((name, exact, np.frombuffer(data, dtype=dtype, count=count, offset=pos)))
        pos += elem * count
    return out


def compare(plain, preload):
    a, b = records(plain), records(preload)
    if [r[0] for r in a] != [r[0] for r in b]:
        sys.exit("FAILED: the runs recorded different cases: %s / %s" % ([r[0] for r in a], [r[0] for r in b]))
    for (name, exact, x), (_, _, y) in zip(a, b):
        if exact:
            if x.tobytes() != y.tobytes():
                sys.exit("FAILED: %s: results differ (expected identical bits)" % name)
        else:
            scale = np.maximum(np.abs(x).astype(np.float64), 1.0)
            tol = 1e-5 if x.dtype == np.float32 else 1e-12
            if not np.all(np.abs(x.astype(np.float64) - y.astype(np.float64)) <= tol * scale * 4):
                sys.exit("FAILED: %s: results differ beyond float reordering" % name)
    print("results agree: %d cases (%d bit for bit)" % (len(a), sum(1 for r in a if r[1])))


ROUTES = {"sparcl (blocking)": "blocking", "sparcl (non-blocking)": "nonblocking",
          "MPI: op or datatype": "optype", "MPI: below SPARCL_PMPI_MIN_COUNT": "small",
          "MPI: communicator or disabled": "comm"}


def routes(output, np_):
    found = {}
    for m in re.finditer(r"sparcl-pmpi: rank (\d+):\s+(.+?)\s+(\d+) calls\s+(\d+) bytes", output):
        found.setdefault(int(m.group(1)), {})[ROUTES[m.group(2)]] = int(m.group(3))
    if sorted(found) != list(range(np_)):
        sys.exit("FAILED: no route summary from every rank (SPARCL_PMPI_VERBOSE=2): %s" % sorted(found))
    return found


def expect_routes(found, expected_of_rank):
    for rank, got in sorted(found.items()):
        want = expected_of_rank(rank)
        if got != want:
            sys.exit("FAILED: rank %d: calls by route %s, expected %s" % (rank, got, want))
    print("routes as expected on every rank")


def check_c(mpiexec, np_, lib, program):
    def expected(rank):
        half = len(range(rank % 2, np_, 2))
        return {"blocking": 8 + 4 + (half > 1), "nonblocking": 9, "optype": 9, "small": 2, "comm": int(half == 1)}

    with tempfile.TemporaryDirectory() as tmp:
        plain, pre = os.path.join(tmp, "plain.bin"), os.path.join(tmp, "preload.bin")
        mpirun(mpiexec, np_, [program, plain])
        output = mpirun(mpiexec, np_, [program, pre], preload=lib)
        compare(plain, pre)
        expect_routes(routes(output, np_), expected)
        # Again with sparcl's progress thread, whose MPI calls must not come back into sparcl.
        output = mpirun(mpiexec, np_, [program, pre], preload=lib,
                        extra=["SPARCL_PROGRESS_THREAD=1", "CHECK_THREAD_MULTIPLE=1"])
        compare(plain, pre)
        expect_routes(routes(output, np_), expected)

    # Erroneous on purpose: every rank must get an error code with sparcl's message back.
    output = mpirun(mpiexec, np_, [program, "--mismatch"], preload=lib)
    if output.count("mismatched counts: error") != np_:
        sys.exit("FAILED: not every rank reported the mismatch")
    # A program that never initialises MPI, and one that is no MPI program at all.
    env = dict(os.environ, LD_PRELOAD=lib)
    run([program, "--no-mpi"], env=env)
    run(["/bin/true"], env=env)


def check_python(mpiexec, np_, lib, script):
    python = "/usr/bin/python3"
    with tempfile.TemporaryDirectory() as tmp:
        plain, pre = os.path.join(tmp, "plain.bin"), os.path.join(tmp, "preload.bin")
        mpirun(mpiexec, np_, [python, script, plain])
        output = mpirun(mpiexec, np_, [python, script, pre], preload=lib)
        compare(plain, pre)
    # mpi4py makes calls of its own (none of them float sums above the threshold).
    found = routes(output, np_)
    for rank, got in sorted(found.items()):
        if got.get("blocking") != 4 or got.get("nonblocking") != 1 or got.get("small", 0) < 1 or got.get("optype", 0) < 2:
            sys.exit("FAILED: rank %d: calls by route %s" % (rank, got))
    print("routes as expected on every rank")
    # The preload in a Python that never initialises MPI (mpi4py.rc.initialize = False).
    env = dict(os.environ, LD_PRELOAD=lib)
    run([python, "-c", "import mpi4py; mpi4py.rc.initialize = False; from mpi4py import MPI; "
         "print('initialized:', MPI.Is_initialized())"], env=env)


def main():
    kind, mpiexec, np_, lib, program = sys.argv[1:6]
    np_ = int(np_)
    (check_c if kind == "c" else check_python)(mpiexec, np_, lib, program)
    print("passed")


if __name__ == "__main__":
    main()
