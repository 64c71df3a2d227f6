# SPDX-License-Identifier: BSD-3-Clause
"""Starting and ending torch.distributed under the usual launchers.

    rank, size = sparcl.torch.init_distributed()   # RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT, or mpirun
    ...
    sparcl.torch.finalize_distributed()            # barrier + destroy_process_group

torchrun is not needed (Debian's torchrun 1.13 fails on Python 3.11): start
the processes with mpirun, or any launcher that sets RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT.
"""
import datetime
import os
import shutil
import tempfile

import torch.distributed as dist


_private_dir = None  # rendezvous directory of a single process, removed by finalize_distributed
_rendezvous_file = None  # rendezvous file init_distributed chose, removed by finalize_distributed


def _int_env(name):
    text = os.environ.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError("%s=%r is not an integer" % (name, text)) from None


def launch_environment():
    """(rank, world size, init_method) from the environment of this process.

    - RANK and WORLD_SIZE (torchrun's variables, or set by hand), with MASTER_ADDR and
      MASTER_PORT (default 29500) for the rendezvous (init_method "env://");
    - else Open MPI's OMPI_COMM_WORLD_RANK and OMPI_COMM_WORLD_SIZE (mpirun): with MASTER_ADDR
      set, "env://" as above; without it, when every rank runs on this host, a rendezvous file in
      the temporary directory named after the mpirun job; across hosts MASTER_ADDR is required;
    - else one process: rank 0 of 1, a rendezvous file of its own.
    """
    rank, size = _int_env("RANK"), _int_env("WORLD_SIZE")
    source = "RANK/WORLD_SIZE"
    if rank is None and size is None:
        rank, size = _int_env("OMPI_COMM_WORLD_RANK"), _int_env("OMPI_COMM_WORLD_SIZE")
        source = "OMPI_COMM_WORLD_RANK/SIZE"
    if rank is None and size is None:
        global _private_dir
        _private_dir = _private_dir or tempfile.mkdtemp(prefix="sparcl-torch-")
        return 0, 1, "file://" + os.path.join(_private_dir, "rendezvous")
    if rank is None or size is None:
        raise ValueError("%s: only one of the two is set" % source)
    if not 0 <= rank < size:
        raise ValueError("%s: rank %d is not in [0, %d)" % (source, rank, size))
    if "MASTER_ADDR" in os.environ:
        os.environ.setdefault("MASTER_PORT", "29500")
        return rank, size, "env://"
    if source == "RANK/WORLD_SIZE":
        raise ValueError("RANK and WORLD_SIZE are set but MASTER_ADDR is not: set MASTER_ADDR (the host of "
                         "rank 0) and MASTER_PORT")
    job = os.environ.get("PMIX_NAMESPACE") or os.environ.get("OMPI_MCA_ess_base_jobid")
    if _int_env("OMPI_COMM_WORLD_LOCAL_SIZE") == size and job:
        return rank, size, "file://" + os.path.join(tempfile.gettempdir(), "sparcl-torch-%s" % job)
    raise ValueError("mpirun across hosts: set MASTER_ADDR (the host of rank 0) and MASTER_PORT, e.g. "
                     "mpirun -x MASTER_ADDR=node1 -x MASTER_PORT=29500 ..., or pass init_method (a file:// "
                     "path on a shared file system)")


def init_distributed(backend="gloo", init_method=None, timeout=datetime.timedelta(minutes=30)):
    """torch.distributed.init_process_group from the launcher's environment (see
    launch_environment); returns (rank, world size). Does nothing if already initialised."""
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    global _rendezvous_file
    rank, size, found = launch_environment()
    init_method = init_method or found
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=size, timeout=timeout)
    if init_method == found and found.startswith("file://"):
        _rendezvous_file = found[len("file://"):]
    return rank, size


def finalize_distributed():
    """Ends torch.distributed cleanly on every rank: closes all_reduce's default communicator,
    then a barrier and destroy_process_group (without the barrier gloo sometimes aborts a process that exits while a peer still talks)."""
    global _private_dir, _rendezvous_file
    from .functional import close_default_communicator
    close_default_communicator()  # collective, like what follows
    if dist.is_initialized():
        dist.barrier()
        # Past the barrier nobody reads the rendezvous file any more (torch's FileStore removes
        # it only when every rank's store is destroyed, which need not happen before exit).
        if _rendezvous_file and dist.get_rank() == 0:
            try:
                os.remove(_rendezvous_file)
            except FileNotFoundError:
                pass
        _rendezvous_file = None
        dist.destroy_process_group()
    if _private_dir:
        shutil.rmtree(_private_dir, ignore_errors=True)
        _private_dir = None
