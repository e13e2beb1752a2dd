"""A stand-in for ``spaces.GPU`` (ZeroGPU) that runs the function in another process, as ZeroGPU does.

Arguments and results are pickled across a real process boundary (a ``spawn`` worker: nothing is
inherited but what is pickled); a result holding tensors off the CPU is refused, as it could not
be used after the trip back. ``duration`` may be seconds or a callable taking the decorated
function's own arguments (ZeroGPU's documented dynamic duration); each call's value is recorded.
"""

from __future__ import annotations

import functools
import importlib
import multiprocessing
import pickle
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_POOL: ProcessPoolExecutor | None = None


def pool() -> ProcessPoolExecutor:
    """One spawned worker process, reused by every call (started on first use)."""
    global _POOL
    if _POOL is None:
        _POOL = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    return _POOL


def shutdown() -> None:
    global _POOL
    if _POOL is not None:
        _POOL.shutdown(wait=True, cancel_futures=True)
        _POOL = None


def GPU(fn: Callable | None = None, *, duration: float | Callable[..., float] = 60) -> Callable:  # noqa: N802
    """``@GPU``, ``@GPU(duration=120)`` or ``@GPU(duration=fn_of_the_same_arguments)``."""
    if fn is None:
        return functools.partial(GPU, duration=duration)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        seconds = duration(*args, **kwargs) if callable(duration) else duration
        if not isinstance(seconds, (int, float)) or seconds <= 0:
            raise ValueError(f"duration must be a positive number of seconds, got {seconds!r}")
        wrapper.durations.append(seconds)
        payload = pickle.dumps((fn.__module__, fn.__qualname__, args, kwargs))
        wrapper.sizes.append(len(payload))
        return pickle.loads(pool().submit(_run, payload).result())

    wrapper.durations = []
    wrapper.sizes = []
    wrapper._fake_spaces_gpu = True
    return wrapper


def _run(payload: bytes) -> bytes:
    """In the worker: find the function by name, call it, pickle the result (refusing device tensors)."""
    import sys

    from micam_core.gpu import device_tensors

    sys.modules.setdefault("spaces", sys.modules[__name__])  # `import spaces` in the worker finds this file
    module, qualname, args, kwargs = pickle.loads(payload)
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    if getattr(target, "_fake_spaces_gpu", False):
        target = target.__wrapped__
    result = target(*args, **kwargs)
    off_cpu = device_tensors(result)
    if off_cpu:
        raise TypeError("a GPU function returned tensors off the CPU: " + ", ".join(off_cpu))
    return pickle.dumps(result)
