"""CHOLMOD's supernodal Cholesky called through ``ctypes``, so that the GIL is let go while it works.

cvxopt's own ``cholmod`` module holds the GIL for the whole factorisation (a Python thread beside it gets
about a sixth of its time), so ROAD's imputation could not overlap the model's forward passes. cvxopt's
wheels ship CHOLMOD as a shared library (``cvxopt.libs/libcholmod-*.so``, CHOLMOD 3.0); ``ctypes`` lets go
of the GIL during each foreign call, and reading numpy arrays in place also skips cvxopt's conversions.

The library is used only when it is found and its ``cholmod_common`` record has the layout written below:
after ``cholmod_start`` every default this module relies on must read back as CHOLMOD documents it
(:func:`available`). Otherwise :mod:`micam_core.imputation` falls back to cvxopt's module. Each
:class:`Session` has its own ``cholmod_common`` (CHOLMOD's workspace), so threads never share one.
Licence: CHOLMOD's Supernodal module is GPL, as with cvxopt's module: an optional extra (``road-fast``).
"""

from __future__ import annotations

import ctypes as C
import glob
import logging
import os
from functools import lru_cache

import numpy as np

from .errors import MicamError

log = logging.getLogger(__name__)

NATURAL, SUPERNODAL, REAL, DOUBLE, INT, LOWER = 0, 2, 1, 0, 0, -1  # CHOLMOD's constants (cholmod_core.h)
COMMON_BYTES = 1 << 16  # more than sizeof(cholmod_common) in any CHOLMOD release (3.0: 1872 bytes up to postorder)


class _Method(C.Structure):
    _fields_ = [("lnz", C.c_double), ("fl", C.c_double), ("prune_dense", C.c_double),
                ("prune_dense2", C.c_double), ("nd_oksep", C.c_double), ("other_1", C.c_double * 4),
                ("nd_small", C.c_size_t), ("other_2", C.c_size_t * 4), ("aggressive", C.c_int),
                ("order_for_lu", C.c_int), ("nd_compress", C.c_int), ("nd_camd", C.c_int),
                ("nd_components", C.c_int), ("ordering", C.c_int), ("other_3", C.c_size_t * 4)]


class _CommonHead(C.Structure):
    """The start of ``cholmod_common`` (CHOLMOD 3.0), up to the fields this module sets."""

    _fields_ = [("dbound", C.c_double), ("grow0", C.c_double), ("grow1", C.c_double), ("grow2", C.c_size_t),
                ("maxrank", C.c_size_t), ("supernodal_switch", C.c_double), ("supernodal", C.c_int),
                ("final_asis", C.c_int), ("final_super", C.c_int), ("final_ll", C.c_int), ("final_pack", C.c_int),
                ("final_monotonic", C.c_int), ("final_resymbol", C.c_int), ("zrelax", C.c_double * 3),
                ("nrelax", C.c_size_t * 3), ("prefer_zomplex", C.c_int), ("prefer_upper", C.c_int),
                ("quick_return_if_not_posdef", C.c_int), ("prefer_binary", C.c_int), ("print", C.c_int),
                ("precise", C.c_int), ("try_catch", C.c_int), ("error_handler", C.c_void_p),
                ("nmethods", C.c_int), ("current", C.c_int), ("selected", C.c_int), ("method", _Method * 10),
                ("postorder", C.c_int)]


# cholmod_start's defaults (cholmod_core.h): if any reads back otherwise, the layout is not the one above.
_DEFAULTS = {"grow0": 1.2, "grow1": 1.2, "grow2": 5, "maxrank": 8, "supernodal_switch": 40.0, "supernodal": 1,
             "final_asis": 1, "final_super": 1, "final_ll": 0, "final_pack": 1, "print": 3, "nmethods": 0,
             "postorder": 1}
_ORDERINGS = (1, 2, 3)  # method[0..2]: given, AMD, METIS


class _Sparse(C.Structure):
    _fields_ = [("nrow", C.c_size_t), ("ncol", C.c_size_t), ("nzmax", C.c_size_t), ("p", C.c_void_p),
                ("i", C.c_void_p), ("nz", C.c_void_p), ("x", C.c_void_p), ("z", C.c_void_p), ("stype", C.c_int),
                ("itype", C.c_int), ("xtype", C.c_int), ("dtype", C.c_int), ("sorted", C.c_int),
                ("packed", C.c_int)]


class _Dense(C.Structure):
    _fields_ = [("nrow", C.c_size_t), ("ncol", C.c_size_t), ("nzmax", C.c_size_t), ("d", C.c_size_t),
                ("x", C.c_void_p), ("z", C.c_void_p), ("xtype", C.c_int), ("dtype", C.c_int)]


def _library_path() -> str | None:
    try:
        import cvxopt
        import cvxopt.cholmod  # loads the library's own dependencies by cvxopt's run path
    except ImportError:
        return None
    site = os.path.dirname(os.path.dirname(cvxopt.__file__))
    found = sorted(glob.glob(os.path.join(site, "cvxopt.libs", "libcholmod*.so*")))
    return found[0] if found else None


def _declare(lib: C.CDLL) -> None:
    lib.cholmod_start.argtypes = [C.c_void_p]
    lib.cholmod_finish.argtypes = [C.c_void_p]
    lib.cholmod_analyze.restype = C.c_void_p
    lib.cholmod_analyze.argtypes = [C.POINTER(_Sparse), C.c_void_p]
    lib.cholmod_factorize.argtypes = [C.POINTER(_Sparse), C.c_void_p, C.c_void_p]
    lib.cholmod_solve.restype = C.POINTER(_Dense)
    lib.cholmod_solve.argtypes = [C.c_int, C.c_void_p, C.POINTER(_Dense), C.c_void_p]
    lib.cholmod_free_factor.argtypes = [C.POINTER(C.c_void_p), C.c_void_p]
    lib.cholmod_free_dense.argtypes = [C.POINTER(C.POINTER(_Dense)), C.c_void_p]


def _layout_matches(lib: C.CDLL) -> bool:
    buf = C.create_string_buffer(COMMON_BYTES)
    if not lib.cholmod_start(buf):
        return False
    head = _CommonHead.from_buffer(buf)
    ok = (all(getattr(head, k) == v for k, v in _DEFAULTS.items())
          and tuple(m.ordering for m in head.method[:3]) == _ORDERINGS
          and list(head.zrelax) == [0.8, 0.1, 0.05] and list(head.nrelax) == [4, 16, 48])
    lib.cholmod_finish(buf)
    return ok


@lru_cache(maxsize=1)
def library() -> C.CDLL | None:
    """cvxopt's CHOLMOD library, or None when it is missing or its ``cholmod_common`` is not laid out as above."""
    path = _library_path()
    if path is None:
        return None
    try:
        lib = C.CDLL(path)
        _declare(lib)
    except (OSError, AttributeError) as exc:
        log.debug("CHOLMOD through ctypes is unavailable (%s): cvxopt's module is used", exc)
        return None
    if not _layout_matches(lib):
        log.debug("CHOLMOD at %s has another cholmod_common layout: cvxopt's module is used", path)
        return None
    return lib


def available() -> bool:
    """Whether :class:`Session` can run (cvxopt installed, its CHOLMOD found and laid out as expected)."""
    return library() is not None


class Session:
    """One ``cholmod_common``: supernodal Cholesky in the matrix's own order (no fill-reducing reordering)."""

    def __init__(self) -> None:
        lib = library()
        if lib is None:
            raise MicamError("CHOLMOD through ctypes is unavailable (pip install micam-core[road-fast]).")
        self.lib = lib
        self.common = C.create_string_buffer(COMMON_BYTES)
        lib.cholmod_start(self.common)
        head = _CommonHead.from_buffer(self.common)
        head.nmethods, head.method[0].ordering = 1, NATURAL
        head.supernodal, head.postorder = SUPERNODAL, 1

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.lib.cholmod_finish(self.common)

    def solve(self, n: int, indptr: np.ndarray, row: np.ndarray, value: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        """``x`` (``n x k``) with ``A x = rhs``, ``A`` SPD given by its lower triangle in CSC (sorted rows)."""
        indptr, row = (np.ascontiguousarray(a, dtype=np.int32) for a in (indptr, row))
        value = np.ascontiguousarray(value, dtype=np.float64)
        rhs = np.asfortranarray(rhs, dtype=np.float64)
        lib, common = self.lib, self.common
        matrix = _Sparse(n, n, value.size, indptr.ctypes.data, row.ctypes.data, None, value.ctypes.data, None,
                         LOWER, INT, REAL, DOUBLE, 1, 1)
        right = _Dense(n, rhs.shape[1], rhs.size, n, rhs.ctypes.data, None, REAL, DOUBLE)
        factor = C.c_void_p(lib.cholmod_analyze(C.byref(matrix), common))
        if not factor.value:
            raise MicamError("CHOLMOD could not analyse the imputation system (out of memory?).")
        try:
            if not lib.cholmod_factorize(C.byref(matrix), factor, common):
                raise MicamError("CHOLMOD could not factorise the imputation system (out of memory?).")
            solution = lib.cholmod_solve(0, factor, C.byref(right), common)
            if not solution:
                raise MicamError("CHOLMOD could not solve the imputation system (out of memory?).")
        finally:
            lib.cholmod_free_factor(C.byref(factor), common)
        try:
            flat = np.ctypeslib.as_array(C.cast(solution.contents.x, C.POINTER(C.c_double)), shape=(rhs.shape[1], n))
            out = flat.T.copy()
        finally:
            lib.cholmod_free_dense(C.byref(solution), common)
        if not np.isfinite(out).all():
            raise MicamError("CHOLMOD's imputation is not finite: the system is not positive definite.")
        return out
