# SPDX-License-Identifier: BSD-3-Clause
"""A Horovod-style distributed optimizer over sparcl.

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt = sparcl.torch.DistributedOptimizer(opt, model, compression="topk", density=0.01)
    for x, y in batches:
        opt.zero_grad()
        loss_fn(model(x), y).backward()   # each gradient leaves as soon as it is ready
        opt.step()                         # waits for the sums, then the wrapped optimizer's step

Every parameter's gradient is summed over the ranks and divided by their
number (the mean, as DDP and Horovod), started from a hook on the gradient's
accumulation, so the exchange overlaps with the rest of the backward pass:

- dense gradients: ``compression="none"``: sparcl's dense-buffer allreduce
  (zeros are skipped on the wire); ``compression="topk"``: top-k with error
  feedback (one ``Compressor`` per parameter; float32 parameters with at
  least ``min_compress_numel`` entries, the others dense);
- sparse gradients (``nn.Embedding(sparse=True)``, ``nn.EmbeddingBag``):
  sparcl's sparse allreduce of the COO gradient, whatever ``compression``.

As with DDP, every rank must produce gradients for the same parameters in the
same order (the same model, the same graph): the collectives start in the
order the gradients become ready, and sparcl requires that order to be the
same on every rank (it reports a different one as SPARCL_ERR_MISMATCH when
the sizes differ).
"""
import torch

from ._comm import Communicator, Compressor

COMPRESSIONS = ("none", "topk")


class _DistributedOptimizer:
    """Methods of the class that DistributedOptimizer derives from the wrapped optimizer's."""

    def _sparcl_setup(self, model, comm, compression, density, min_compress_numel, compressor_options):
        if compression not in COMPRESSIONS:
            raise ValueError("compression must be one of %s, not %r" % (", ".join(COMPRESSIONS), compression))
        if not 0.0 < density <= 1.0:
            raise ValueError("density must lie in (0, 1], not %r" % (density,))
        if comm is None:
            from .functional import default_communicator
            comm = default_communicator()
        if not isinstance(comm, Communicator):
            raise TypeError("comm must be a sparcl.torch.Communicator, not %s" % type(comm).__name__)
        self.comm = comm
        self.compression = compression
        self.density = float(density)
        self.min_compress_numel = int(min_compress_numel)
        self._compressor_options = dict(compressor_options)
        # Parameters in a fixed order: the names of the model's, else the optimizer's order.
        names = {p: n for n, p in model.named_parameters()} if model is not None else {}
        self._params = [p for group in self.param_groups for p in group["params"] if p.requires_grad]
        self._names = [names.get(p, "param%d" % i) for i, p in enumerate(self._params)]
        self._index = {p: i for i, p in enumerate(self._params)}
        self._compressors = {}  # parameter index -> Compressor (top-k only)
        self._handles = {}      # parameter -> (future, sparse)
        self._hooks = []
        self._grad_accs = []
        for p in self._params:
            # The gradient accumulator's hook runs once p.grad holds this backward's gradient.
            acc = p.expand_as(p).grad_fn.next_functions[0][0]
            self._hooks.append(acc.register_hook(self._make_hook(p)))
            self._grad_accs.append(acc)

    def _make_hook(self, p):
        def hook(*_):
            if p in self._handles:
                raise RuntimeError("sparcl DistributedOptimizer: the gradient of %s was computed twice before "
                                   "step() (several backward passes per step are not supported)" %
                                   self._names[self._index[p]])
            self._handles[p] = self._start(p)
        return hook

    def _compressor(self, p):
        i = self._index[p]
        c = self._compressors.get(i)
        if c is None:
            c = Compressor(p.numel(), density=self.density, **self._compressor_options)
            self._compressors[i] = c
        return c

    def _start(self, p):
        grad = p.grad
        if grad.layout == torch.sparse_coo:
            return self.comm.allreduce_sparse(grad), True
        if (self.compression == "topk" and grad.dtype == torch.float32 and grad.numel() >= self.min_compress_numel):
            return self.comm.allreduce_compressed(self._compressor(p), grad, average=True), False
        return self.comm.allreduce(grad, average=True), False

    def synchronize(self):
        """Waits for every gradient sum started so far (step() calls it)."""
        handles, self._handles = self._handles, {}
        size = self.comm.size
        failure = None
        for p in self._params:  # every future is waited for, also after a failure
            entry = handles.get(p)
            if entry is None:
                continue
            future, sparse = entry
            try:
                result = future.wait()
            except Exception as e:  # noqa: B902 - re-raised once all are done
                failure = failure or e
                continue
            if sparse:
                p.grad = result / size if size > 1 else result
        if failure is not None:
            raise failure

    def step(self, closure=None):
        self.synchronize()
        return super(self.__class__, self).step(closure)

    def zero_grad(self, set_to_none=False):
        if self._handles:
            raise RuntimeError("sparcl DistributedOptimizer: zero_grad() while gradient sums are in flight "
                               "(call step() or synchronize() first)")
        return super(self.__class__, self).zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        """The wrapped optimizer's state_dict, plus under "sparcl" the top-k residuals of every
        parameter (by name) and the settings. Call it between steps."""
        if self._handles:
            raise RuntimeError("sparcl DistributedOptimizer: state_dict() while gradient sums are in flight")
        state = super(self.__class__, self).state_dict()
        residuals = {}
        for i, compressor in sorted(self._compressors.items()):
            residual = compressor.residual()
            if residual is not None:
                residuals[self._names[i]] = residual.reshape(self._params[i].shape)
        state["sparcl"] = {"version": 1, "compression": self.compression, "density": self.density,
                           "residuals": residuals}
        return state

    def load_state_dict(self, state_dict):
        """Restores what state_dict() returned (a plain optimizer state_dict is accepted too)."""
        state_dict = dict(state_dict)
        extra = state_dict.pop("sparcl", None)
        if extra is not None and extra.get("version") != 1:
            raise ValueError("DistributedOptimizer.load_state_dict: unknown checkpoint version %r" %
                             extra.get("version"))
        residuals = extra["residuals"] if extra else {}
        index = {name: i for i, name in enumerate(self._names)}
        for name, residual in residuals.items():
            if name not in index:
                raise ValueError("DistributedOptimizer.load_state_dict: no parameter %r" % name)
        super(self.__class__, self).load_state_dict(state_dict)
        for compressor in self._compressors.values():
            compressor.close()
        self._compressors = {}
        for name, residual in residuals.items():
            self._compressor(self._params[index[name]]).set_residual(residual)

    def remove_hooks(self):
        """Detaches the gradient hooks (the optimizer then no longer sums anything)."""
        for h in self._hooks:
            h.remove()
        self._hooks, self._grad_accs = [], []


def DistributedOptimizer(optimizer, model=None, *, comm=None, compression="none", density=0.01,
                         min_compress_numel=4096, **compressor_options):
    """Wraps ``optimizer`` so that ``step()`` applies the mean of every rank's gradients.

    optimizer: a torch.optim optimizer over (some of) the model's parameters
    model: the module (names the parameters in messages; optional)
    comm: a sparcl.torch.Communicator (default: the default communicator of all_reduce)
    compression: "none" (every dense gradient in full) or "topk" (top-k with error feedback)
    density: the fraction of each dense gradient that top-k sends
    min_compress_numel: dense gradients with fewer entries go in full
    compressor_options: further sparcl.torch.Compressor arguments (values, method, momentum, ...)

    Returns an optimizer of a class derived from the wrapped one's (so learning-rate schedulers
    accept it), over the same parameter groups. The wrapped optimizer's state is not carried over:
    wrap it before training.
    """
    cls = type(optimizer.__class__.__name__, (optimizer.__class__,),
               {k: v for k, v in _DistributedOptimizer.__dict__.items() if not k.startswith("__")})
    wrapped = cls.__new__(cls)
    optimizer.__class__.__init__(wrapped, optimizer.param_groups)
    wrapped._sparcl_setup(model, comm, compression, density, min_compress_numel, compressor_options)
    return wrapped
