# SPDX-License-Identifier: BSD-3-Clause
"""torch.sparse_coo tensors as sparcl sparse vectors, and back.

A COO tensor of shape S (sparse dims first, then dense dims, as torch keeps
them) becomes one sparse vector over its flattened elements: the entry at
index tuple (i0, ..., ik) of the sparse dims and offset j in the dense block
is element ((i0 * S1 + i1) * S2 + ...) * block + j. Uncoalesced tensors go in
as they are (sparcl sorts the indices and sums duplicates); coalesced ones are
already sorted. The sum comes back as a coalesced COO tensor of shape S.

Every rank must pass the same shape. The vector's dimension is the number of
elements plus a pad of 1..4096 taken from a hash of the shape and the
sparse/dense split, so that ranks with different shapes (even of equal size)
pass different dimensions, which sparcl rejects on every rank
(SPARCL_ERR_MISMATCH). Two different shapes of the same size escape this only
when their hashes collide (1 in 4096). The pad is never written.

A rank whose own input is bad (indices outside the shape, values neither
float32 nor float64) still takes part in the collective, with a vector that
sparcl rejects, so that every rank fails instead of waiting for it; it then
raises its own error, the others sparcl's.
"""
import ctypes
import hashlib

import torch

from .. import _lib

VALUE_TYPES = {torch.float32: _lib.FLOAT32, torch.float64: _lib.FLOAT64}
PAD_LIMIT = 4096


def _pad(shape, sparse_dim):
    digest = hashlib.blake2b(repr((tuple(shape), int(sparse_dim))).encode(), digest_size=8).digest()
    return 1 + int.from_bytes(digest, "little") % PAD_LIMIT


def _numel(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n


class Contribution:
    """One rank's sparse vector, kept alive until the collective ends."""

    def __init__(self, tensor):
        self.error = None
        self.shape = None
        try:
            self._prepare(tensor)
        except (TypeError, ValueError) as e:
            self.error = e
            self._poison(tensor)

    def _prepare(self, tensor):
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.sparse_coo:
            raise TypeError("expected a torch.sparse_coo tensor, not %s" %
                            (tensor.layout if isinstance(tensor, torch.Tensor) else type(tensor).__name__))
        if tensor.device.type != "cpu":
            raise TypeError("the sparse tensor is on %s: sparcl reads and writes host memory" % tensor.device)
        if tensor.dtype not in VALUE_TYPES:
            raise TypeError("sparse tensor values of dtype %s: sparcl sums float32 and float64 values" % tensor.dtype)
        if tensor.requires_grad:
            raise ValueError("the sparse tensor requires grad: pass its .detach() or a gradient")
        shape = tuple(int(s) for s in tensor.shape)
        sparse_dim = tensor.sparse_dim()
        numel = _numel(shape)
        if numel == 0:
            raise ValueError("the sparse tensor has no elements (shape %s)" % (shape,))
        indices = tensor._indices()
        values = tensor._values()
        nnz = indices.shape[1]
        sparse_shape = shape[:sparse_dim]
        block = _numel(shape[sparse_dim:])
        if nnz:
            low = indices.min(dim=1).values
            high = indices.max(dim=1).values
            for d in range(sparse_dim):
                if low[d] < 0 or high[d] >= sparse_shape[d]:
                    bad = int(low[d]) if low[d] < 0 else int(high[d])
                    raise ValueError("sparse tensor index %d in dimension %d lies outside its size %d (shape %s)" %
                                     (bad, d, sparse_shape[d], shape))
        linear = torch.zeros(nnz, dtype=torch.int64)
        for d in range(sparse_dim):
            linear.mul_(sparse_shape[d]).add_(indices[d])
        if block > 1:
            linear = (linear.unsqueeze(1) * block + torch.arange(block, dtype=torch.int64)).reshape(-1)
        self.indices = linear.contiguous()
        self.values = values.reshape(-1).contiguous()
        self.shape, self.sparse_dim, self.block, self.numel = shape, sparse_dim, block, numel
        self.dtype = tensor.dtype
        self.vector = _lib.Sparse(dim=numel + _pad(shape, sparse_dim), nnz=self.indices.numel(),
                                  index_type=_lib.INDEX_U64, indices=self.indices.data_ptr(),
                                  value_type=VALUE_TYPES[tensor.dtype], values=self.values.data_ptr(),
                                  flags=0 if tensor.is_coalesced() else _lib.SPARSE_UNSORTED)

    def _poison(self, tensor):
        # An index equal to the dimension: sparcl rejects it on every rank.
        dim = 1
        dtype = torch.float32
        if isinstance(tensor, torch.Tensor):
            dim = max(1, tensor.numel()) + _pad(tuple(tensor.shape), tensor.sparse_dim() if tensor.is_sparse else 0)
            dtype = tensor.dtype if tensor.dtype in VALUE_TYPES else torch.float32
        self.indices = torch.tensor([dim], dtype=torch.int64)
        self.values = torch.zeros(1, dtype=dtype)
        self.vector = _lib.Sparse(dim=dim, nnz=1, index_type=_lib.INDEX_U64, indices=self.indices.data_ptr(),
                                  value_type=VALUE_TYPES[dtype], values=self.values.data_ptr(), flags=0)


def _array(pointer, ctype, count):
    if count == 0:
        return None
    return (ctype * count).from_address(pointer)


def to_coo(result, c):
    """The sum as a coalesced COO tensor of the contribution's shape (frees nothing)."""
    lib = _lib.lib
    ctype = ctypes.c_float if c.dtype == torch.float32 else ctypes.c_double
    n = lib.sparcl_result_nnz(result)
    values_array = _array(lib.sparcl_result_values(result), ctype, n)
    values = torch.frombuffer(values_array, dtype=c.dtype).clone() if n else torch.zeros(0, dtype=c.dtype)
    if lib.sparcl_result_is_dense(result):
        values = values[:c.numel]
        linear = torch.nonzero(values).reshape(-1)
        values = values[linear]
    elif n == 0:
        linear = torch.zeros(0, dtype=torch.int64)
    else:
        if lib.sparcl_result_index_type(result) == _lib.INDEX_U32:
            raw = _array(lib.sparcl_result_indices(result), ctypes.c_int32, n)
            linear = torch.frombuffer(raw, dtype=torch.int32).to(torch.int64).bitwise_and_(0xFFFFFFFF)
        else:
            raw = _array(lib.sparcl_result_indices(result), ctypes.c_int64, n)
            linear = torch.frombuffer(raw, dtype=torch.int64).clone()
        if linear[-1] >= c.numel:  # the pad is never written; kept as a guard (indices are sorted)
            keep = linear < c.numel
            linear, values = linear[keep], values[keep]
    sparse_shape = c.shape[:c.sparse_dim]
    dense_shape = c.shape[c.sparse_dim:]
    if c.block > 1:
        # Rows of `block` values: indices are sorted, so a row's entries are consecutive.
        blocks = torch.div(linear, c.block, rounding_mode="trunc")
        rows, inverse = torch.unique_consecutive(blocks, return_inverse=True)
        if rows.numel() * c.block == linear.numel():  # every row complete (an embedding gradient's sum)
            block_values = values.reshape(rows.numel(), c.block)
        else:
            block_values = torch.zeros(rows.numel(), c.block, dtype=c.dtype)
            block_values[inverse, linear - blocks * c.block] = values
        linear, values = rows, block_values.reshape((rows.numel(),) + dense_shape)
    if len(sparse_shape) == 1:
        indices = linear.unsqueeze(0)
    else:
        indices = torch.empty(len(sparse_shape), linear.numel(), dtype=torch.int64)
        rest = linear
        for d in reversed(range(len(sparse_shape))):
            if d == 0:
                indices[0] = rest
                break
            quotient = torch.div(rest, sparse_shape[d], rounding_mode="trunc")
            indices[d] = rest - quotient * sparse_shape[d]
            rest = quotient
    out = torch.sparse_coo_tensor(indices, values, c.shape, dtype=c.dtype)
    # Linear indices come back sorted and unique, so these indices are in
    # torch's coalesced order already.
    return out._coalesced_(True) if hasattr(out, "_coalesced_") else out.coalesce()
