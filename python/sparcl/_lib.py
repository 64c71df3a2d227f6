# SPDX-License-Identifier: BSD-3-Clause
"""ctypes bindings of the C API (include/sparcl/sparcl.h and compress.h).

Only what the Python package uses is declared. Calls through ctypes.CDLL
release the GIL, so a thread blocked in sparcl does not stop Python.

The library is looked up, in order, at:
  1. $SPARCL_LIBRARY (a path to libsparcl.so*); when it is set, nowhere else;
  2. the path CMake recorded in sparcl/_libpath.py (absolute in the build tree,
     relative to the package once installed with ``cmake --install``);
  3. libsparcl.so.<major> through the dynamic loader (LD_LIBRARY_PATH, ld.so.cache).
"""
import ctypes
import os

_MAJOR = 0  # SOVERSION of the library these bindings were written for

# Status codes (sparcl_status_t).
SUCCESS = 0
ERR_INVALID_ARG = -1
ERR_MISMATCH = -2
ERR_TRANSPORT = -3
ERR_NO_MEMORY = -4
ERR_UNSUPPORTED = -5
ERR_TIMEOUT = -6
ERR_CORRUPT = -7
ERR_PEER_FAILED = -8
ERR_INTERNAL = -9
STATUS_NAMES = {
    SUCCESS: "SPARCL_SUCCESS",
    ERR_INVALID_ARG: "SPARCL_ERR_INVALID_ARG",
    ERR_MISMATCH: "SPARCL_ERR_MISMATCH",
    ERR_TRANSPORT: "SPARCL_ERR_TRANSPORT",
    ERR_NO_MEMORY: "SPARCL_ERR_NO_MEMORY",
    ERR_UNSUPPORTED: "SPARCL_ERR_UNSUPPORTED",
    ERR_TIMEOUT: "SPARCL_ERR_TIMEOUT",
    ERR_CORRUPT: "SPARCL_ERR_CORRUPT",
    ERR_PEER_FAILED: "SPARCL_ERR_PEER_FAILED",
    ERR_INTERNAL: "SPARCL_ERR_INTERNAL",
}

FLOAT32 = 1
FLOAT64 = 2
OP_SUM = 1

# Names accepted by the Python API, as the environment variables spell them.
TRANSPORTS = {"mpi": 1, "ofi": 2, "ucx": 3}
COMPRESS_METHODS = {"none": 0, "topk": 1, "topk_bucket": 2, "approx_topk": 3, "threshold": 4, "randomk": 5}
# sparcl_selection_t ("default": SPARCL_SELECTION from the environment, else local)
SELECTIONS = {"default": 0, "local": 1, "global": 2}
GLOBAL_THRESHOLDS = {"sampled": 0, "exact": 1}
# ALGORITHMS and VALUE_ENCODINGS come from the library itself (below).


class SparclError(RuntimeError):
    """A sparcl call failed. ``status`` is the sparcl_status_t code, ``status_name`` its name."""

    def __init__(self, status, message):
        self.status = status
        self.status_name = STATUS_NAMES.get(status, str(status))
        super().__init__(message)


class Config(ctypes.Structure):
    """sparcl_config_t."""
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("algorithm", ctypes.c_int),
        ("transport", ctypes.c_int),
        ("timeout_ms", ctypes.c_int64),
        ("ofi_provider", ctypes.c_char_p),
        ("progress_thread", ctypes.c_int),
        ("encoding", ctypes.c_int),
        ("quantization_bucket", ctypes.c_size_t),
        ("checksum", ctypes.c_int),
        ("reserved", ctypes.c_int),
        ("partition", ctypes.c_int),
    ]


class CompressorConfig(ctypes.Structure):
    """sparcl_compressor_config_t."""
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("method", ctypes.c_int),
        ("density", ctypes.c_double),
        ("k", ctypes.c_uint64),
        ("threshold", ctypes.c_float),
        ("bucket_size", ctypes.c_size_t),
        ("values", ctypes.c_int),
        ("quantization_bucket", ctypes.c_size_t),
        ("error_feedback", ctypes.c_int),
        ("momentum", ctypes.c_float),
        ("seed", ctypes.c_uint64),
        ("rounding_stream", ctypes.c_uint32),
        ("selection", ctypes.c_int),
        ("global_threshold", ctypes.c_int),
        ("threshold_reuse", ctypes.c_uint32),
    ]


class Sparse(ctypes.Structure):
    """sparcl_sparse_t."""
    _fields_ = [
        ("dim", ctypes.c_uint64),
        ("nnz", ctypes.c_size_t),
        ("index_type", ctypes.c_int),
        ("indices", ctypes.c_void_p),
        ("value_type", ctypes.c_int),
        ("values", ctypes.c_void_p),
        ("flags", ctypes.c_uint32),
    ]


INDEX_U32 = 1
INDEX_U64 = 2
SPARSE_UNSORTED = 1


class Stats(ctypes.Structure):
    """sparcl_stats_t."""
    _fields_ = [("collectives", ctypes.c_uint64), ("messages_sent", ctypes.c_uint64),
                ("bytes_sent", ctypes.c_uint64), ("bytes_sent_off_host", ctypes.c_uint64),
                ("messages_received", ctypes.c_uint64), ("bytes_received", ctypes.c_uint64)]


# int (*)(const void *send, void *recv, size_t bytes, void *ctx)
BOOTSTRAP_ALLGATHER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                       ctypes.c_void_p)

_P = ctypes.c_void_p
_PP = ctypes.POINTER(ctypes.c_void_p)
_PROTOTYPES = {
    "sparcl_version": (ctypes.c_int, []),
    "sparcl_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "sparcl_algorithm_name": (ctypes.c_char_p, [ctypes.c_int]),
    "sparcl_encoding_name": (ctypes.c_char_p, [ctypes.c_int]),
    "sparcl_config_init": (ctypes.c_int, [ctypes.POINTER(Config)]),
    "sparcl_comm_create": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, BOOTSTRAP_ALLGATHER, _P,
                                          ctypes.POINTER(Config), _PP]),
    "sparcl_comm_free": (ctypes.c_int, [_P]),
    "sparcl_comm_rank": (ctypes.c_int, [_P, ctypes.POINTER(ctypes.c_int)]),
    "sparcl_comm_size": (ctypes.c_int, [_P, ctypes.POINTER(ctypes.c_int)]),
    "sparcl_comm_transport": (ctypes.c_char_p, [_P]),
    "sparcl_comm_last_error": (ctypes.c_char_p, [_P]),
    "sparcl_comm_stats": (ctypes.c_int, [_P, ctypes.POINTER(Stats)]),
    "sparcl_comm_reset_stats": (ctypes.c_int, [_P]),
    "sparcl_iallreduce": (ctypes.c_int, [_P, _P, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, _P, _PP]),
    "sparcl_iallreduce_sparse": (ctypes.c_int, [ctypes.POINTER(Sparse), _P, _PP, _P, _PP]),
    "sparcl_result_free": (ctypes.c_int, [_P]),
    "sparcl_result_dim": (ctypes.c_uint64, [_P]),
    "sparcl_result_is_dense": (ctypes.c_int, [_P]),
    "sparcl_result_nnz": (ctypes.c_size_t, [_P]),
    "sparcl_result_value_type": (ctypes.c_int, [_P]),
    "sparcl_result_index_type": (ctypes.c_int, [_P]),
    "sparcl_result_indices": (_P, [_P]),
    "sparcl_result_values": (_P, [_P]),
    "sparcl_comm_last_algorithm": (ctypes.c_int, [_P, ctypes.POINTER(ctypes.c_int)]),
    "sparcl_test": (ctypes.c_int, [_PP, ctypes.POINTER(ctypes.c_int)]),
    "sparcl_wait": (ctypes.c_int, [_PP]),
    "sparcl_compressor_config_init": (ctypes.c_int, [ctypes.POINTER(CompressorConfig)]),
    "sparcl_compressor_create": (ctypes.c_int, [ctypes.POINTER(CompressorConfig), ctypes.c_uint64, _PP]),
    "sparcl_compressor_free": (ctypes.c_int, [_P]),
    "sparcl_compressor_residual": (ctypes.POINTER(ctypes.c_float), [_P]),
    "sparcl_compressor_reset": (ctypes.c_int, [_P]),
    "sparcl_iallreduce_compressed": (ctypes.c_int, [_P, _P, _P, _P, _PP]),
    "sparcl_allreduce_compressed_init": (ctypes.c_int, [_P, _P, _P, _P, _PP]),
    "sparcl_start": (ctypes.c_int, [_PP]),
    "sparcl_request_free": (ctypes.c_int, [_PP]),
}

IN_PLACE = ctypes.c_void_p(1)  # SPARCL_IN_PLACE
_path_origin = None  # where the library was found (see _candidates)


def _candidates():
    env = os.environ.get("SPARCL_LIBRARY")
    if env:
        yield "$SPARCL_LIBRARY", env
        return
    try:
        from . import _libpath  # written by CMake (python/CMakeLists.txt)
    except ImportError:
        pass
    else:
        path = _libpath.LIBSPARCL
        if not os.path.isabs(path):
            path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), path))
        yield "sparcl/_libpath.py", path
    yield "the dynamic loader", "libsparcl.so.%d" % _MAJOR


def _load():
    global _path_origin
    tried = []
    for origin, path in _candidates():
        try:
            library = ctypes.CDLL(path)
            _path_origin = origin
            return library, path
        except OSError as e:
            tried.append("%s (from %s): %s" % (path, origin, e))
    raise ImportError("sparcl: cannot load libsparcl; tried:\n  " + "\n  ".join(tried) +
                      "\nBuild the project with CMake and use build/python, or set SPARCL_LIBRARY "
                      "(see docs/pytorch.md)")


lib, _path = _load()
for _name, (_restype, _argtypes) in _PROTOTYPES.items():
    _fn = getattr(lib, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes


def _check_layout(struct, init, c_name):
    # The library writes its own sizeof into struct_size: a different value
    # means the header changed and these bindings are out of date.
    probe = struct()
    init(ctypes.byref(probe))
    if probe.struct_size != ctypes.sizeof(struct):
        raise ImportError("sparcl: %s has %d bytes in %s but %d in the Python bindings; rebuild the package "
                          "with the library" % (c_name, probe.struct_size, _path, ctypes.sizeof(struct)))


_check_layout(Config, lib.sparcl_config_init, "sparcl_config_t")
_check_layout(CompressorConfig, lib.sparcl_compressor_config_init, "sparcl_compressor_config_t")
if lib.sparcl_version() // 10000 != _MAJOR:
    _v = lib.sparcl_version()
    raise ImportError("sparcl: %s is version %d.%d.%d, the Python bindings need %d.x" % (
        _path, _v // 10000, _v // 100 % 100, _v % 100, _MAJOR))


def _names_of(name_fn):
    # {name: value} for the enum values 0, 1, ... that the library names.
    out = {}
    while True:
        name = name_fn(len(out))
        if name is None:
            return out
        out[name.decode()] = len(out)


ALGORITHMS = _names_of(lib.sparcl_algorithm_name)
VALUE_ENCODINGS = _names_of(lib.sparcl_encoding_name)


def library_path():
    """Path (or loader name) of the libsparcl this package uses."""
    return _path


def version():
    """Version of the loaded library as a string, e.g. '0.1.0'."""
    v = lib.sparcl_version()
    return "%d.%d.%d" % (v // 10000, v // 100 % 100, v % 100)


def strerror(status):
    return lib.sparcl_strerror(status).decode()


def last_error(comm):
    """Message of the last error on comm (None: of this thread's last call without one)."""
    return (lib.sparcl_comm_last_error(comm) or b"").decode(errors="replace")


def check(status, what, comm=None):
    """Raises SparclError for a failed status; the message names the call and sparcl's reason."""
    if status != SUCCESS:
        raise SparclError(status, "%s: %s: %s" % (what, strerror(status), last_error(comm)))


def default_config():
    config = Config()
    check(lib.sparcl_config_init(ctypes.byref(config)), "sparcl_config_init")
    return config


def default_compressor_config():
    config = CompressorConfig()
    check(lib.sparcl_compressor_config_init(ctypes.byref(config)), "sparcl_compressor_config_init")
    return config


def lookup(table, name, what):
    """Value of a name in one of the tables above; ValueError naming the choices otherwise."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ValueError("%s must be one of %s, not %r" % (what, ", ".join(sorted(table)), name)) from None
