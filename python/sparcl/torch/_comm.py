# SPDX-License-Identifier: BSD-3-Clause
"""A sparcl communicator made from a torch.distributed process group.

Threading: sparcl's calls on one communicator are serialized by the caller
(sparcl.h). Here one thread owns the communicator: the worker thread started
with it. ``allreduce`` and ``allreduce_compressed`` only queue a job and
return a ``torch.futures.Future``; the worker starts the queued collectives
in the order they were queued (the same on every rank, as sparcl requires),
progresses them with ``sparcl_test`` and completes the futures. So a DDP
hook returns at once, and the collectives (and the compression, which runs
in the worker without the GIL) overlap with the rest of the backward pass.
"""
import collections
import ctypes
import os
import threading
import time
import weakref

import torch
import torch.distributed as dist

from .. import _lib
from . import _sparse

_DTYPES = {torch.float32: _lib.FLOAT32, torch.float64: _lib.FLOAT64}


def _check_tensor(tensor, what, dtypes):
    if not isinstance(tensor, torch.Tensor):
        raise TypeError("%s must be a torch.Tensor, not %s" % (what, type(tensor).__name__))
    if tensor.device.type != "cpu":
        raise TypeError("%s is on %s: sparcl reads and writes host memory, so pass a CPU tensor" %
                        (what, tensor.device))
    if tensor.dtype not in dtypes:
        raise TypeError("%s has dtype %s; sparcl supports %s here" %
                        (what, tensor.dtype, ", ".join(str(d) for d in dtypes)))
    if not tensor.is_contiguous():
        raise ValueError("%s must be contiguous (call .contiguous() first)" % what)
    if tensor.requires_grad and tensor.is_leaf:
        raise ValueError("%s requires grad: pass its .detach() or a gradient buffer" % what)


class Compressor:
    """Gradient compressor of one tensor of ``numel`` float32 entries (sparcl_compressor_t).

    It keeps the tensor's error-feedback residual, so use one per gradient
    tensor (or per DDP bucket). The arguments are those of
    sparcl_compressor_config_t (include/sparcl/compress.h):

    method: "topk" (exact), "approx_topk", "topk_bucket", "threshold", "randomk" or "none"
    density: fraction of entries sent when k is None, in (0, 1]
    k: number of entries sent (overrides density)
    values: value encoding of the sent entries: "raw" (32 bits), "fp16", "bf16" (16),
        "qsgd8", "qsgd4", "qsgd2" (8, 4, 2 bits and a scale per quantization_bucket values)
    error_feedback: keep what was not sent and add it to the next gradient
    momentum: DGC momentum correction in [0, 1) (with error feedback; then use plain SGD)
    seed: random-k indices and stochastic rounding; the same on every rank
    selection: what allreduce_compressed returns: "local" (the sum of every rank's selection),
        "global" (about k entries of that sum, Ok-Topk: what a rank sent but the sum did not
        keep goes back into its residual) or "default" (SPARCL_SELECTION, else local)
    global_threshold: global selection's threshold: "sampled" (estimated every
        threshold_reuse steps) or "exact" (exact top-k of the sum; for testing)
    """

    def __init__(self, numel, *, method="topk", density=0.01, k=None, values="raw", error_feedback=True,
                 momentum=0.0, threshold=0.0, bucket_size=512, quantization_bucket=512, seed=0,
                 selection="default", global_threshold="sampled", threshold_reuse=32):
        if not isinstance(numel, int) or numel < 1:
            raise ValueError("numel must be a positive int, not %r" % (numel,))
        config = _lib.default_compressor_config()
        config.method = _lib.lookup(_lib.COMPRESS_METHODS, method, "method")
        config.values = _lib.lookup(_lib.VALUE_ENCODINGS, values, "values")
        config.density = float(density)
        if k is not None:
            if not isinstance(k, int) or k < 1:
                raise ValueError("k must be a positive int or None, not %r" % (k,))
            config.k = k
        config.error_feedback = 1 if error_feedback else 0
        config.momentum = float(momentum)
        config.threshold = float(threshold)
        config.bucket_size = int(bucket_size)
        config.quantization_bucket = int(quantization_bucket)
        config.seed = int(seed)
        config.selection = _lib.lookup(_lib.SELECTIONS, selection, "selection")
        config.global_threshold = _lib.lookup(_lib.GLOBAL_THRESHOLDS, global_threshold, "global_threshold")
        if not isinstance(threshold_reuse, int) or threshold_reuse < 1:
            raise ValueError("threshold_reuse must be an int >= 1, not %r" % (threshold_reuse,))
        config.threshold_reuse = threshold_reuse
        handle = ctypes.c_void_p()
        _lib.check(_lib.lib.sparcl_compressor_create(ctypes.byref(config), numel, ctypes.byref(handle)),
                   "sparcl_compressor_create")
        self._handle = handle
        self.numel = numel
        self.error_feedback = bool(error_feedback)
        self._busy = False  # a collective in flight uses it
        self._finalizer = weakref.finalize(self, _lib.lib.sparcl_compressor_free, handle)

    def _check_idle(self, what):
        if self._handle is None:
            raise ValueError("the compressor is closed")
        if self._busy:
            raise RuntimeError("%s: a collective that uses this compressor is still in flight" % what)

    def _residual_view(self):
        # Aliases the library's memory: only while this object lives and no collective uses it.
        pointer = _lib.lib.sparcl_compressor_residual(self._handle)
        if not pointer:
            return None
        array = (ctypes.c_float * self.numel).from_address(ctypes.addressof(pointer.contents))
        return torch.frombuffer(array, dtype=torch.float32)

    def residual(self):
        """A copy of the error-feedback residual (None without error feedback)."""
        self._check_idle("residual")
        view = self._residual_view()
        return None if view is None else view.clone()

    def set_residual(self, values):
        """Overwrites the residual (e.g. from a checkpoint) with ``numel`` float32 values."""
        self._check_idle("set_residual")
        view = self._residual_view()
        if view is None:
            raise ValueError("the compressor has no residual (error_feedback=False)")
        values = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
        if values.numel() != self.numel:
            raise ValueError("residual has %d entries, the compressor %d" % (values.numel(), self.numel))
        view.copy_(values)

    def reset(self):
        """Zeroes the residual and the momentum and restarts the step count."""
        self._check_idle("reset")
        _lib.check(_lib.lib.sparcl_compressor_reset(self._handle), "sparcl_compressor_reset")

    def close(self):
        """Frees the compressor (also done when it is garbage collected). Calling it again does nothing."""
        if self._handle is None:
            return
        self._check_idle("close")
        self._finalizer()
        self._handle = None


class _Job:
    __slots__ = ("what", "start", "finish", "future", "keep", "request", "compressor", "on_error")

    def __init__(self, what, start, finish, keep, compressor=None, on_error=None):
        self.what = what          # for error messages
        self.start = start        # (job) -> status; writes job.request
        self.finish = finish      # () -> value of the future, after success
        self.future = torch.futures.Future()
        self.keep = keep          # tensors that must live until the collective ends
        self.request = ctypes.c_void_p()
        self.compressor = compressor
        self.on_error = on_error  # (SparclError) -> the exception the future gets


class Communicator:
    """A sparcl communicator over the ranks of a torch.distributed process group.

    Create it on every rank of ``group`` (default: the whole world) after
    ``torch.distributed.init_process_group``: the ranks exchange their
    transport addresses through the group (an all_gather of bytes, so the
    group's backend must handle CPU tensors: gloo or mpi), then sparcl talks
    over its own transport, UCX or libfabric.

    transport: "ucx", "ofi" (libfabric) or None (SPARCL_TRANSPORT, else UCX, else libfabric)
    algorithm: a name of sparcl.ALGORITHMS ("auto", "ring", ...) or None (SPARCL_ALGORITHM, else auto)
    ofi_provider: libfabric provider, e.g. "tcp;ofi_rxm" (the default) or "shm"
    timeout_ms: limit of each collective (0: none); None: SPARCL_TIMEOUT_MS, else 30 min
    progress_thread: let sparcl progress collectives on a thread of its own (it spins
        while collectives move and sleeps up to 256 us while they wait on the network)
    poll_interval: seconds the worker waits between progress calls while collectives are in
        flight and nothing new was queued

    Environment variables (SPARCL_TRANSPORT, SPARCL_ALGORITHM, ...) override the arguments, as
    in the C API. ``close()`` is collective: call it on every rank (or use ``with``).

    ``transport`` (attribute): the transport the communicator really uses, "ucx" or "ofi"
    (SPARCL_TRANSPORT, else the argument, else the library's default).
    """

    def __init__(self, group=None, *, transport=None, algorithm=None, ofi_provider=None, timeout_ms=None,
                 progress_thread=False, poll_interval=1e-4):
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("sparcl.torch.Communicator needs torch.distributed: call "
                               "torch.distributed.init_process_group (or sparcl.torch.init_distributed) first")
        group = group if group is not None else dist.group.WORLD
        backend = dist.get_backend(group)
        if backend == "nccl":
            raise ValueError("the process group's backend is nccl, which has no CPU all_gather: create a gloo "
                             "group for sparcl (torch.distributed.new_group(backend='gloo'))")
        if not poll_interval >= 0:
            raise ValueError("poll_interval must be >= 0 seconds, not %r" % (poll_interval,))
        config = _lib.default_config()
        if transport is not None:
            config.transport = _lib.lookup(_lib.TRANSPORTS, transport, "transport")
        if algorithm is not None:
            config.algorithm = _lib.lookup(_lib.ALGORITHMS, algorithm, "algorithm")
        if ofi_provider is not None:
            self._provider = ofi_provider.encode()  # kept alive: the config points to it
            config.ofi_provider = self._provider
        if timeout_ms is not None:
            if not isinstance(timeout_ms, int) or timeout_ms < 0:
                raise ValueError("timeout_ms must be an int >= 0, not %r" % (timeout_ms,))
            config.timeout_ms = timeout_ms
        config.progress_thread = 1 if progress_thread else 0

        rank, size = dist.get_rank(group), dist.get_world_size(group)
        if rank < 0:
            raise ValueError("this process is not a member of the process group")
        failure = []

        def allgather(send, recv, nbytes, _ctx):
            # Called by sparcl_comm_create on this thread; no exception may cross into C.
            try:
                mine = torch.empty(nbytes, dtype=torch.uint8)
                if nbytes:
                    ctypes.memmove(mine.data_ptr(), send, nbytes)
                gathered = [torch.empty(nbytes, dtype=torch.uint8) for _ in range(size)]
                dist.all_gather(gathered, mine, group=group)
                for i, part in enumerate(gathered):
                    if nbytes:
                        ctypes.memmove(recv + i * nbytes, part.data_ptr(), nbytes)
                return 0
            except BaseException as e:  # noqa: B902 - reported after sparcl returns
                failure.append(e)
                return 1

        callback = _lib.BOOTSTRAP_ALLGATHER(allgather)
        handle = ctypes.c_void_p()
        status = _lib.lib.sparcl_comm_create(rank, size, callback, None, ctypes.byref(config),
                                             ctypes.byref(handle))
        if status != _lib.SUCCESS:
            error = _lib.SparclError(status, "sparcl_comm_create: %s: %s" % (_lib.strerror(status),
                                                                             _lib.last_error(None)))
            if failure:
                raise error from failure[0]
            raise error
        self._handle = handle
        self.transport = _lib.lib.sparcl_comm_transport(handle).decode()
        self.group = group
        self.rank, self.size = rank, size
        self._poll_interval = float(poll_interval)
        self._queue = collections.deque()
        self._cv = threading.Condition()
        self._calls = threading.Lock()  # serializes sparcl calls on this communicator (sparcl.h)
        # Persistent compressed allreduces, one per compressor: id -> (weakref, tensor pointer, request).
        # Used by the worker only (and by close() once it has stopped).
        self._plans = {}
        self._stopping = False
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="sparcl-worker", daemon=True)
        self._worker.start()

    # --- collectives ---------------------------------------------------

    def allreduce(self, tensor, *, average=False):
        """Sums ``tensor`` (float32 or float64, CPU, contiguous) over the ranks, in place.

        Returns a Future whose value is ``tensor`` holding the sum (or the mean with
        average=True). sparcl finds the nonzeros itself: zeros cost nothing on the wire.
        """
        _check_tensor(tensor, "tensor", _DTYPES)
        count, dtype = tensor.numel(), _DTYPES[tensor.dtype]

        def start(job):
            return _lib.lib.sparcl_iallreduce(_lib.IN_PLACE, tensor.data_ptr(), count, dtype, _lib.OP_SUM,
                                              self._handle, ctypes.byref(job.request))

        what = "sparcl_iallreduce of %d %s values" % (count, tensor.dtype)
        return self._submit(_Job(what, start, self._finisher(tensor, average), keep=tensor))

    def allreduce_compressed(self, compressor, tensor, *, average=False):
        """Compresses ``tensor`` (float32, CPU, contiguous, ``compressor.numel`` entries) and sums
        what every rank sent, in place.

        The compression runs on the worker thread when the collective starts; ``tensor`` is read
        then and written with the sum when it completes. Returns a Future of ``tensor``.
        The first call for a compressor plans a persistent allreduce
        (sparcl_allreduce_compressed_init) bound to it and to ``tensor``'s memory; later calls
        with the same tensor memory start that plan (sparcl_start), so the algorithm is chosen
        once per compressor. Other memory gets a new plan.
        """
        if not isinstance(compressor, Compressor):
            raise TypeError("compressor must be a sparcl.torch.Compressor")
        _check_tensor(tensor, "tensor", (torch.float32,))
        if tensor.numel() != compressor.numel:
            raise ValueError("tensor has %d entries, the compressor was made for %d" %
                             (tensor.numel(), compressor.numel))
        compressor._check_idle("allreduce_compressed")
        compressor._busy = True

        def start(job):
            status, plan = self._plan_for(compressor, tensor.data_ptr())
            if status != _lib.SUCCESS:
                return status
            job.request.value = plan.value  # completed by sparcl_test; the plan stays
            return _lib.lib.sparcl_start(ctypes.byref(plan))

        what = "compressed allreduce of %d values" % tensor.numel()
        return self._submit(_Job(what, start, self._finisher(tensor, average), keep=tensor, compressor=compressor))

    def allreduce_sparse(self, tensor):
        """Sums a torch.sparse_coo tensor (float32 or float64 values, CPU, coalesced or not,
        the same shape on every rank) over the ranks with sparcl's sparse allreduce.

        Returns a Future whose value is a new coalesced COO tensor of the same shape and dtype
        holding the sum. Bad input (indices outside the shape, other value types, shapes that
        differ between ranks) fails on every rank with a Python exception, never a hang: a rank
        whose own input is bad raises TypeError or ValueError, the others a SparclError naming it.
        """
        contribution = _sparse.Contribution(tensor)
        result = ctypes.c_void_p()

        def start(job):
            return _lib.lib.sparcl_iallreduce_sparse(ctypes.byref(contribution.vector), None, ctypes.byref(result),
                                                     self._handle, ctypes.byref(job.request))

        def finish():
            if contribution.error is not None:  # cannot happen: sparcl rejects the stand-in
                raise contribution.error
            try:
                return _sparse.to_coo(result, contribution)
            finally:
                _lib.lib.sparcl_result_free(result)
                result.value = None

        def on_error(error):
            if contribution.error is not None:
                contribution.error.__cause__ = error
                return contribution.error
            if error.status == _lib.ERR_MISMATCH:
                mismatch = ValueError("sparse all_reduce: the ranks passed different shapes or dtypes (this rank: "
                                      "shape %s, %s): %s" % (contribution.shape, contribution.dtype, error))
                mismatch.__cause__ = error
                return mismatch
            return error

        what = "sparse all_reduce of a %s tensor" % (contribution.shape,)
        return self._submit(_Job(what, start, finish, keep=contribution, on_error=on_error))

    def allreduce_checked(self, tensor):
        """``allreduce`` for callers whose tensors may be bad on some ranks only: a bad tensor
        still takes part (with an input sparcl rejects), so that every rank fails at wait()
        instead of the others waiting for this one."""
        try:
            _check_tensor(tensor, "tensor", _DTYPES)
        except (TypeError, ValueError) as e:
            local = e
            count = max(1, tensor.numel()) if isinstance(tensor, torch.Tensor) else 1
            dtype = _DTYPES.get(getattr(tensor, "dtype", None), _lib.FLOAT32)

            def start(job):  # a NULL output: sparcl rejects it on every rank
                return _lib.lib.sparcl_iallreduce(None, None, count, dtype, _lib.OP_SUM, self._handle,
                                                  ctypes.byref(job.request))

            def on_error(error):
                local.__cause__ = error
                return local
            return self._submit(_Job("all_reduce of a bad tensor", start, lambda: None, keep=None,
                                     on_error=on_error))
        return self.allreduce(tensor)

    def _plan_for(self, compressor, pointer):
        # The worker's persistent request for (compressor, pointer): (status, request). Plans of
        # compressors that are gone, or bound to other memory, are freed (they are inactive: a
        # compressor runs one collective at a time, and the worker completes it before the next).
        for key, (ref, _, request) in list(self._plans.items()):
            if ref() is None or (ref() is compressor and self._plans[key][1] != pointer):
                _lib.lib.sparcl_request_free(ctypes.byref(request))
                del self._plans[key]
        entry = self._plans.get(id(compressor))
        if entry is not None and entry[0]() is compressor:
            return _lib.SUCCESS, entry[2]
        request = ctypes.c_void_p()
        status = _lib.lib.sparcl_allreduce_compressed_init(self._handle, compressor._handle, pointer, pointer,
                                                           ctypes.byref(request))
        if status == _lib.SUCCESS:
            self._plans[id(compressor)] = (weakref.ref(compressor), pointer, request)
        return status, request

    def _finisher(self, tensor, average):
        size = self.size

        def finish():
            if average and size > 1:
                tensor.div_(size)
            return tensor
        return finish

    def stats(self):
        """Messages and bytes this rank sent on this communicator: a dict (sparcl_comm_stats).

        Exact between collectives; while some are in flight it may lag behind."""
        self._check_open()
        stats = _lib.Stats()
        with self._calls:
            _lib.check(_lib.lib.sparcl_comm_stats(self._handle, ctypes.byref(stats)), "sparcl_comm_stats",
                       self._handle)
        return {"collectives": stats.collectives, "messages_sent": stats.messages_sent,
                "bytes_sent": stats.bytes_sent}

    # --- the worker ----------------------------------------------------

    def _check_open(self):
        if self._closed or self._stopping:
            raise RuntimeError("the sparcl communicator is closed")

    def _submit(self, job):
        with self._cv:
            if self._closed or self._stopping:
                if job.compressor is not None:
                    job.compressor._busy = False
                raise RuntimeError("the sparcl communicator is closed")
            self._queue.append(job)
            self._cv.notify()
        return job.future

    def _run(self):
        in_flight = collections.deque()
        try:
            self._serve(in_flight)
        except BaseException as e:  # noqa: B902 - a bug here must not leave futures waiting forever
            with self._cv:
                self._stopping = True
                pending = list(in_flight) + list(self._queue)
                self._queue.clear()
            for job in pending:
                if not job.future.done():
                    job.future.set_exception(RuntimeError("sparcl worker thread failed: %r" % (e,)))
            raise

    def _serve(self, in_flight):
        completed = ctypes.c_int()
        while True:
            with self._cv:
                if not self._queue:
                    if in_flight:
                        if self._poll_interval > 0:
                            self._cv.wait(self._poll_interval)
                        else:
                            self._cv.release()  # spin: let others have the lock and the GIL
                            time.sleep(0)
                            self._cv.acquire()
                    else:
                        self._cv.wait_for(lambda: self._queue or self._stopping)
                if self._stopping and not self._queue and not in_flight:
                    return
                started, self._queue = self._queue, collections.deque()
            for job in started:
                with self._calls:
                    error = self._error(job, job.start(job))
                if error is None:
                    in_flight.append(job)
                else:
                    self._complete(job, error)
            # Requests complete in order (their collectives were started in order); one
            # sparcl_test progresses all of them.
            while in_flight:
                job = in_flight[0]
                with self._calls:
                    status = _lib.lib.sparcl_test(ctypes.byref(job.request), ctypes.byref(completed))
                    error = self._error(job, status)
                if not completed.value and error is None:
                    break
                in_flight.popleft()
                self._complete(job, error)

    def _error(self, job, status):
        # Called with self._calls held: the message is the communicator's last error.
        if status == _lib.SUCCESS:
            return None
        error = _lib.SparclError(status, "%s: %s: %s" % (job.what, _lib.strerror(status),
                                                         _lib.last_error(self._handle)))
        return job.on_error(error) if job.on_error is not None else error

    def _complete(self, job, error):
        if job.compressor is not None:
            job.compressor._busy = False
        if error is None:
            try:
                value = job.finish()
            except BaseException as e:  # noqa: B902 - handed to whoever waits on the future
                error = e
        if error is None:
            job.future.set_result(value)
        else:
            job.future.set_exception(error)
        job.keep = None

    # --- lifetime ------------------------------------------------------

    def close(self):
        """Completes the collectives already queued, stops the worker and frees the
        communicator. Collective: every rank calls it. Calling it again does nothing."""
        if self._closed:
            return
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._worker.join()
        self._closed = True
        for _, _, request in self._plans.values():
            _lib.lib.sparcl_request_free(ctypes.byref(request))
        self._plans.clear()
        _lib.check(_lib.lib.sparcl_comm_free(self._handle), "sparcl_comm_free")
        self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self._closed else "open"
        return "<sparcl.torch.Communicator rank %d of %d, %s, %s>" % (self.rank, self.size, self.transport, state)
