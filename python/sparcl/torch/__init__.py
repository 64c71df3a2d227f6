# SPDX-License-Identifier: BSD-3-Clause
"""sparcl for PyTorch: a communicator from torch.distributed and DDP communication hooks.

    import sparcl.torch
    sparcl.torch.init_distributed()                   # or torch.distributed.init_process_group("gloo", ...)
    comm = sparcl.torch.Communicator()                # same ranks, sparcl's own transport (UCX or libfabric)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    ddp.register_comm_hook(sparcl.torch.TopKState(comm, density=0.01), sparcl.torch.topk_hook)
    ... train ...
    comm.close()                                      # collective
    sparcl.torch.finalize_distributed()

docs/pytorch.md has the details.
"""
from ._comm import Communicator, Compressor
from .functional import all_reduce, close_default_communicator, default_communicator
from .hooks import TopKState, allreduce_hook, topk_hook
from .optimizer import DistributedOptimizer
from .launch import finalize_distributed, init_distributed, launch_environment

__all__ = ["Communicator", "Compressor", "DistributedOptimizer", "TopKState", "all_reduce", "allreduce_hook", "close_default_communicator",
           "default_communicator", "finalize_distributed", "init_distributed", "launch_environment", "topk_hook"]
