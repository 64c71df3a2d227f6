# SPDX-License-Identifier: BSD-3-Clause
"""sparcl: sparse collective communication for distributed deep learning.

This package binds the C library (libsparcl) with ctypes. ``sparcl.torch``
adds a communicator built from a torch.distributed process group and
DistributedDataParallel communication hooks (top-k with error feedback, dense
allreduce). See docs/pytorch.md.
"""
from ._lib import ALGORITHMS, VALUE_ENCODINGS, SparclError, library_path, version

__all__ = ["ALGORITHMS", "VALUE_ENCODINGS", "SparclError", "library_path", "version"]
