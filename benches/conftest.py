"""Session set-up for the benches: BLAS threads pinned, BLAS libraries named.

BLAS threads are pinned for the whole session (one by default; set
BPCORE_BENCH_THREADS to change it) when threadpoolctl is installed, and the header of
the run (shown without -q) names every loaded BLAS, its kernel and its thread count:
bpcore calls SciPy's OpenBLAS, the NumPy step NumPy's.
"""
import os

import pytest

import bpcore  # noqa: F401  (loads SciPy's BLAS, so that it is pinned and listed too)

try:
    import threadpoolctl
except ImportError:      # optional: the smoke run in CI does not need it
    threadpoolctl = None

BENCH_THREADS = int(os.environ.get("BPCORE_BENCH_THREADS", "1"))
_limits = None


def blas_description():
    """One line per loaded BLAS: library, version, kernel (architecture), threads."""
    if threadpoolctl is None:
        return ["BLAS: threadpoolctl not installed, threads not pinned"]
    lines = []
    for info in threadpoolctl.threadpool_info():
        if info.get("user_api") != "blas":
            continue
        lines.append(f"BLAS: {info.get('internal_api')} {info.get('version')} "
                     f"kernel={info.get('architecture')} threads={info.get('num_threads')} "
                     f"({os.path.basename(info.get('filepath', ''))})")
    return lines or ["BLAS: none loaded"]


def pytest_configure(config):
    global _limits
    if threadpoolctl is not None:
        _limits = threadpoolctl.threadpool_limits(limits=BENCH_THREADS, user_api="blas")


def pytest_unconfigure(config):
    if _limits is not None:
        _limits.restore_original_limits()


def pytest_report_header(config):
    return blas_description()


@pytest.fixture(scope="session")
def blas_threads():
    """The BLAS thread count the session pinned (None when threadpoolctl is absent)."""
    return BENCH_THREADS if threadpoolctl is not None else None
