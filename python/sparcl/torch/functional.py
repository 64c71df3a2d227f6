# SPDX-License-Identifier: BSD-3-Clause
"""``all_reduce`` in torch.distributed's style, for dense and sparse (COO) tensors.

    import sparcl.torch as st
    st.init_distributed()
    total = st.all_reduce(grad)                       # dense: summed in place, returns grad
    total = st.all_reduce(embedding.weight.grad)      # sparse COO: returns a new coalesced COO tensor
    work = st.all_reduce(grad, async_op=True); ...; total = work.wait()
"""
import torch

from ._comm import Communicator

_default = None


def default_communicator():
    """The communicator ``all_reduce`` uses when none is given: one over the whole world, created
    on first use (collective: the first ``all_reduce`` must be called on every rank) and closed by
    ``finalize_distributed`` or ``close_default_communicator``."""
    global _default
    if _default is None:
        _default = Communicator()
    return _default


def close_default_communicator():
    """Closes the default communicator if there is one (collective)."""
    global _default
    if _default is not None:
        _default.close()
        _default = None


def all_reduce(tensor, comm=None, async_op=False):
    """Sum of ``tensor`` over the ranks of ``comm`` (default: ``default_communicator()``).

    Dense tensors (float32 or float64, CPU, contiguous) are summed in place and returned;
    sparcl skips their zeros on the wire. torch.sparse_coo tensors (float32 or float64 values,
    coalesced or not, the same shape on every rank) are summed with the sparse allreduce into
    a new coalesced COO tensor of the same shape and dtype.

    With ``async_op=True`` returns a handle (a torch.futures.Future) whose ``wait()`` returns
    that tensor. Bad input on any rank makes every rank raise (TypeError or ValueError on the
    rank whose input is bad, sparcl.SparclError on the others, or ValueError for shapes that
    differ between ranks) instead of hanging.
    """
    comm = comm if comm is not None else default_communicator()
    if isinstance(tensor, torch.Tensor) and tensor.layout == torch.sparse_coo:
        future = comm.allreduce_sparse(tensor)
    elif isinstance(tensor, torch.Tensor) and tensor.layout != torch.strided:
        future = comm.allreduce_sparse(tensor)  # rejected there, on every rank
    else:
        future = comm.allreduce_checked(tensor)
    return future if async_op else future.wait()
