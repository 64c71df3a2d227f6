# SPDX-License-Identifier: BSD-3-Clause
"""DistributedDataParallel communication hooks over sparcl.

    comm = sparcl.torch.Communicator()
    model.register_comm_hook(sparcl.torch.TopKState(comm, density=0.01), sparcl.torch.topk_hook)
    # or, dense:  model.register_comm_hook(comm, sparcl.torch.allreduce_hook)

Both hooks return at once with a future that sparcl's worker thread completes
(see _comm.py), so DDP overlaps the exchange with the rest of the backward
pass. The result is the mean over the ranks, written into the bucket's own
buffer, and bitwise identical on every rank (sparcl's sums are; every rank
then divides by the same world size).
"""
import warnings

import torch

from ._comm import Communicator, Compressor


def _strip(name):
    # The same names for a module and its DDP wrapper.
    return name[len("module."):] if name.startswith("module.") else name


def _communicator(state, hook):
    if state is None and hook == "allreduce_hook":  # as DDP's default hooks: the default group
        from .functional import default_communicator
        return default_communicator()
    comm = state.comm if isinstance(state, TopKState) else state
    if isinstance(state, TopKState) and comm is None:
        raise ValueError("%s: the TopKState has no communicator (it was unpickled or loaded): set "
                         "state.comm = sparcl.torch.Communicator(...) first" % hook)
    if not isinstance(comm, Communicator):
        raise TypeError("%s: the hook's state must be a sparcl.torch.Communicator%s, not %s" %
                        (hook, " or TopKState" if hook == "topk_hook" else "", type(state).__name__))
    return comm


def _dense(comm, buffer, hook):
    if buffer.dtype not in (torch.float32, torch.float64):
        raise TypeError("%s: DDP bucket of dtype %s; sparcl sums float32 and float64 buckets (register "
                        "torch's default hook for this model, or keep its parameters in float32)" %
                        (hook, buffer.dtype))
    return comm.allreduce(buffer, average=True)


def allreduce_hook(state, bucket) -> torch.futures.Future[torch.Tensor]:
    """Dense mean of the bucket over the ranks through sparcl (state: a Communicator, or None for
    the default communicator of sparcl.torch.all_reduce, as DDP's default hooks take None for the
    default process group).

    sparcl_iallreduce: zeros are skipped on the wire, dense gradients take sparcl's dense
    paths (ring, recursive halving/doubling, ...)."""
    return _dense(_communicator(state, "allreduce_hook"), bucket.buffer(), "allreduce_hook")


class TopKState:
    """State of ``topk_hook``: settings, the iteration count and one compressor (with its
    error-feedback residual) per DDP bucket.

    comm: the sparcl.torch.Communicator
    density: fraction of each bucket's entries sent (when k is None)
    k: entries sent per bucket (overrides density; capped at the bucket's size)
    error_feedback: keep what was not sent and add it to the next step's gradient
    values: encoding of the sent values: "raw" (32 bits), "fp16", "bf16", "qsgd8", "qsgd4", "qsgd2"
    start_iter: iterations (optimizer steps) that use a dense allreduce before top-k starts
    min_compress_numel: buckets with fewer entries go dense (small buckets are bound by
        latency, not by bytes)
    method: "topk" (exact) or another selection of sparcl.torch.Compressor ("approx_topk", ...)
    model: the module (or the DDP wrapper) whose parameter names key the residuals in
        state_dict(); needed to checkpoint residuals
    selection: "local" (the sum of every rank's top-k; up to P*k entries), "global" (about k
        entries of that sum, Ok-Topk; what a rank sent but the sum did not keep stays in its
        residual) or "default" (SPARCL_SELECTION, else local)
    compressor_options: further Compressor arguments (momentum, seed, quantization_bucket,
        global_threshold, threshold_reuse, ...)

    Checkpoints: ``state_dict()`` holds the settings, the iteration count and every
    parameter's residual under its name; ``load_state_dict()`` restores them into a state of a
    new (or the same) model, and the next backward pass starts from those residuals, so that a
    resumed run trains exactly as an uninterrupted one. Pickling keeps the same and drops the
    communicator and the model: set ``state.comm`` (and ``state.model``) after unpickling.
    (DGC momentum and the compressors' step counts are not in the checkpoint: the library does
    not expose them.)

    DDP rebuilds its buckets after the first iteration. Residuals are kept per bucket and,
    when the parameters of the buckets change, carried over parameter by parameter into the
    new buckets, so that nothing unsent is lost (PowerSGD instead requires dense warm-up
    across the rebuild).
    """

    def __init__(self, comm, *, density=0.01, k=None, error_feedback=True, values="raw", start_iter=0,
                 min_compress_numel=4096, method="topk", model=None, selection="default", **compressor_options):
        if not isinstance(comm, Communicator):
            raise TypeError("comm must be a sparcl.torch.Communicator, not %s" % type(comm).__name__)
        if k is None and not 0.0 < density <= 1.0:
            raise ValueError("density must lie in (0, 1], not %r" % (density,))
        if not isinstance(start_iter, int) or start_iter < 0:
            raise ValueError("start_iter must be an int >= 0, not %r" % (start_iter,))
        if not isinstance(min_compress_numel, int) or min_compress_numel < 1:
            raise ValueError("min_compress_numel must be an int >= 1, not %r" % (min_compress_numel,))
        self.comm = comm
        self.model = model
        self.start_iter = start_iter
        self.min_compress_numel = min_compress_numel
        self.iter = 0
        self._options = dict(compressor_options, method=method, density=density, k=k, values=values,
                             error_feedback=error_feedback, selection=selection)
        Compressor(1, **self._options).close()  # reject bad options here, not in the first backward
        self._buckets = {}  # bucket index -> (parameter key, compressor)
        self._carried = {}  # parameter key -> residual slice, while buckets are rebuilt (or loaded)
        self._warned = set()

    @staticmethod
    def _key(bucket):
        return tuple((p.data_ptr(), p.numel()) for p in bucket.parameters())

    def _compressor(self, bucket, numel):
        key = self._key(bucket)
        index = bucket.index()
        entry = self._buckets.get(index)
        if entry is not None and entry[0] == key:
            return entry[1]
        # New parameters in this bucket (DDP rebuilt its buckets): retire every compressor that
        # held this index or any of these parameters, keeping its residual per parameter.
        params = set(key)
        for other, (old_key, _) in list(self._buckets.items()):
            if other == index or params.intersection(old_key):
                self._retire(other)
        compressor = Compressor(numel, **self._options)
        if compressor.error_feedback and self._carried:
            view = compressor._residual_view()
            offset = 0
            for param in key:
                carried = self._carried.pop(param, None)
                if carried is not None:
                    view[offset:offset + param[1]].copy_(carried)
                offset += param[1]
        self._buckets[index] = (key, compressor)
        return compressor

    def _retire(self, index):
        key, compressor = self._buckets.pop(index)
        residual = compressor.residual()
        compressor.close()
        if residual is None:
            return
        offset = 0
        for param in key:
            self._carried[param] = residual[offset:offset + param[1]]
            offset += param[1]

    def _warn_once(self, what, message):
        if what not in self._warned:
            self._warned.add(what)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    # --- checkpoints ---------------------------------------------------------------

    def _parameter_names(self, what):
        if self.model is None:
            raise ValueError("TopKState.%s: residuals are keyed by parameter name: pass model= to TopKState "
                             "(or set state.model)" % what)
        return {(p.data_ptr(), p.numel()): _strip(name) for name, p in self.model.named_parameters()}, \
            {_strip(name): p for name, p in self.model.named_parameters()}

    def _residuals_by_key(self):
        out = {}
        for key, compressor in self._buckets.values():
            residual = compressor.residual()  # raises while a collective still uses it
            if residual is None:
                continue
            offset = 0
            for param in key:
                out[param] = residual[offset:offset + param[1]].clone()
                offset += param[1]
        for param, residual in self._carried.items():
            out.setdefault(param, residual.clone())
        return out

    def state_dict(self):
        """Settings, iteration count and residuals (by parameter name) as plain Python and tensors.
        Call it between steps (not while a backward pass is exchanging gradients)."""
        residuals = self._residuals_by_key()
        named = {}
        if residuals:
            names, _ = self._parameter_names("state_dict")
            for key, residual in residuals.items():
                if key not in names:
                    raise ValueError("TopKState.state_dict: a residual belongs to a parameter that is not in "
                                     "state.model")
                named[names[key]] = residual
        return {"version": 1, "iter": self.iter, "start_iter": self.start_iter,
                "min_compress_numel": self.min_compress_numel, "options": dict(self._options),
                "residuals": named}

    def load_state_dict(self, state_dict):
        """Restores what state_dict() returned; the residuals go to the parameters of state.model
        with the same names when the next backward pass reaches them."""
        if state_dict.get("version") != 1:
            raise ValueError("TopKState.load_state_dict: unknown checkpoint version %r" % state_dict.get("version"))
        residuals = state_dict["residuals"]
        carried = {}
        if residuals:
            _, params = self._parameter_names("load_state_dict")
            for name, residual in residuals.items():
                p = params.get(name)
                if p is None:
                    raise ValueError("TopKState.load_state_dict: the model has no parameter %r" % name)
                residual = torch.as_tensor(residual, dtype=torch.float32).reshape(-1)
                if residual.numel() != p.numel():
                    raise ValueError("TopKState.load_state_dict: residual of %r has %d entries, the parameter %d" %
                                     (name, residual.numel(), p.numel()))
                carried[(p.data_ptr(), p.numel())] = residual.clone()
        Compressor(1, **state_dict["options"]).close()  # reject bad options before changing anything
        for index in list(self._buckets):
            self._buckets.pop(index)[1].close()
        self._options = dict(state_dict["options"])
        self.iter = int(state_dict["iter"])
        self.start_iter = int(state_dict["start_iter"])
        self.min_compress_numel = int(state_dict["min_compress_numel"])
        self._carried = carried

    def __getstate__(self):
        state = self.state_dict()
        state["warned"] = set(self._warned)
        return state

    def __setstate__(self, state):
        self.comm = None
        self.model = None
        self._buckets, self._carried, self._warned = {}, {}, set(state.get("warned", ()))
        self._options = dict(state["options"])
        self.iter = int(state["iter"])
        self.start_iter = int(state["start_iter"])
        self.min_compress_numel = int(state["min_compress_numel"])
        # Residuals wait by name until a model is set: they are placed at the first hook call.
        self._pending = dict(state["residuals"])

    def _place_pending(self):
        pending = getattr(self, "_pending", None)
        if pending:
            self._pending = None
            snapshot = {"version": 1, "iter": self.iter, "start_iter": self.start_iter,
                        "min_compress_numel": self.min_compress_numel, "options": self._options,
                        "residuals": pending}
            self.load_state_dict(snapshot)

    def residual(self, param):
        """A copy of the error-feedback residual of one parameter (shaped like it), or None when
        no compressed bucket holds the parameter (yet) or error feedback is off."""
        wanted = (param.data_ptr(), param.numel())
        for key, compressor in self._buckets.values():
            offset = 0
            for entry in key:
                if entry == wanted:
                    residual = compressor.residual()
                    return None if residual is None else residual[offset:offset + entry[1]].reshape(param.shape)
                offset += entry[1]
        return None


def topk_hook(state, bucket) -> torch.futures.Future[torch.Tensor]:
    """Top-k sparsification with error feedback over sparcl's sparse allreduce (state: TopKState).

    Each rank sends the k largest magnitudes of (residual + bucket); sparcl sums the sparse
    vectors; the mean is written into the bucket. Before state.start_iter, for buckets smaller
    than state.min_compress_numel and for float64 buckets (with a one-time warning) the
    bucket goes through sparcl's dense allreduce instead."""
    if not isinstance(state, TopKState):
        raise TypeError("topk_hook: the hook's state must be a sparcl.torch.TopKState, not %s" %
                        type(state).__name__)
    _communicator(state, "topk_hook")
    state._place_pending()
    buffer = bucket.buffer()
    if state.iter < state.start_iter or buffer.numel() < state.min_compress_numel:
        future = _dense(state.comm, buffer, "topk_hook")
    elif buffer.dtype != torch.float32:
        if buffer.dtype == torch.float64:
            state._warn_once("float64", "sparcl.torch.topk_hook: float64 buckets are not compressed (sparcl "
                             "compresses float32); they go through sparcl's dense allreduce")
        future = _dense(state.comm, buffer, "topk_hook")
    else:
        future = state.comm.allreduce_compressed(state._compressor(bucket, buffer.numel()), buffer,
                                                 average=True)
    if bucket.is_last():
        state.iter += 1
        state._carried.clear()  # slices of parameters no compressed bucket holds any more
    return future
