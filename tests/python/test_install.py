# SPDX-License-Identifier: BSD-3-Clause
"""`cmake --install` puts the package beside the library, and the installed package finds the
installed library (not the build tree's) even after the whole prefix was moved."""
import os
import subprocess

from conftest import PYTHON, build_dir

CHECK = """
import sparcl, sparcl.torch as st, torch
print("library", sparcl.library_path())
st.init_distributed()
with st.Communicator() as comm:
    t = torch.arange(4.0)
    assert torch.equal(comm.allreduce(t.clone()).wait(), t)
st.finalize_distributed()
print("installed package OK")
"""


def test_installed_package_finds_installed_library(tmp_path):
    cmake = os.environ.get("SPARCL_TEST_CMAKE", "cmake")
    subprocess.run([cmake, "--install", build_dir(), "--prefix", str(tmp_path / "prefix")], check=True,
                   capture_output=True, timeout=120)
    moved = tmp_path / "moved"
    (tmp_path / "prefix").rename(moved)
    site = moved / os.environ.get("SPARCL_TEST_PYTHON_INSTALL_DIR", "lib/python3/dist-packages")
    assert (site / "sparcl" / "torch" / "hooks.py").exists()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARCL_LIBRARY", "LD_LIBRARY_PATH")}
    env["PYTHONPATH"] = str(site)
    run = subprocess.run([PYTHON, "-c", CHECK], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "installed package OK" in run.stdout
    library = run.stdout.split("library ", 1)[1].split("\n", 1)[0]
    assert os.path.realpath(library).startswith(os.path.realpath(moved)), library
