"""How many threads the BLAS under bpcore's matrix products may use.

bpcore's kernels run without the GIL, so independent models can train in parallel
Python threads; each BLAS call may itself start threads. The default is the BLAS
library's own (one thread per core). When k Python threads train at once, give the
BLAS ``cores // k`` threads so that threads never outnumber cores.

bpcore itself starts one thread (on Linux), and only where BLAS may run more
than one: a helper that shares the fused training step's Adam update with the
calling thread (each entry computed as on one thread: the same bits). It sleeps
between steps and serves one model's step at a time (another thread's model then
runs its update alone). Whether a step uses it is decided with SGD's choice below,
when the step is built for a batch size: under ``set_blas_threads(1)`` (or with
one core, without threadpoolctl) steps built from then on do not.

Needs the optional ``threads`` extra (threadpoolctl), imported only when called.
"""
from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import _validation

if TYPE_CHECKING:
    from threadpoolctl import threadpool_limits


def _threadpoolctl() -> ModuleType:
    try:
        import threadpoolctl
    except ImportError:
        raise ImportError("setting BLAS threads needs threadpoolctl: "
                          "pip install 'bpcore[threads]'") from None
    return threadpoolctl


def _load_blas() -> None:
    import scipy.linalg.cython_blas  # noqa: F401

    from . import _dense  # noqa: F401  (loads SciPy's BLAS, which the kernels link)


def blas_threads() -> int:
    """The largest thread count among the loaded BLAS libraries."""
    _load_blas()
    info = _threadpoolctl().threadpool_info()
    return max((entry["num_threads"] for entry in info if entry["user_api"] == "blas"),
               default=1)


# threadpoolctl's handles on the loaded BLAS libraries
_blas_controllers: list[Any] | None = None


def _blas_parallel() -> bool:
    """Whether the BLAS under bpcore may run more than one thread: the largest thread
    count of the loaded BLAS libraries where threadpoolctl is installed (found once,
    then asked directly: a few microseconds), else whether the machine has more than
    one core (BLAS's default). Read when a fused training step is built for a batch
    size (``Model.train_step``), which then hands SGD's momentum update to BLAS's
    threads and shares Adam's with bpcore's helper thread; a step built before the
    thread count changes keeps its choice, which changes the speed (and for SGD the
    rounding), not the math."""
    global _blas_controllers
    try:
        import threadpoolctl
    except ImportError:
        return (os.cpu_count() or 1) > 1
    if _blas_controllers is None:
        _load_blas()
        _blas_controllers = [lib for lib in threadpoolctl.ThreadpoolController().lib_controllers
                             if lib.user_api == "blas"]
    return max((lib.num_threads for lib in _blas_controllers), default=1) > 1


def set_blas_threads(n: int | None) -> threadpool_limits:
    """Limit every loaded BLAS library to ``n`` threads (an integer >= 1, or None for
    the number of cores); return a limiter that restores the previous setting when
    used as a context manager (``with bp.set_blas_threads(1): ...``)."""
    if n is None:
        n = os.cpu_count() or 1
    n = _validation.positive_int(n, "n")
    _load_blas()
    return _threadpoolctl().threadpool_limits(limits=n, user_api="blas")
