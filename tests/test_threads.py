"""BLAS thread settings (threadpoolctl as the oracle)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import bpcore as bp

threadpoolctl = pytest.importorskip("threadpoolctl")

# In a fresh interpreter with NumPy loaded: the BLAS libraries (threadpoolctl's file
# paths) that loading SciPy's BLAS, which bpcore's kernels call, adds; where SciPy
# shares a BLAS NumPy loaded already (nothing new), every BLAS loaded by then.
SCIPY_BLAS = """
import json, numpy, threadpoolctl

def blas():
    return {entry["filepath"] for entry in threadpoolctl.threadpool_info()
            if entry["user_api"] == "blas"}

before = blas()
import scipy.linalg.cython_blas
after = blas()
print(json.dumps(sorted(after - before or after)))
"""


def blas_libraries_of_scipy(folder):
    """The real paths of the BLAS libraries SciPy loads (SCIPY_BLAS), however their
    files are named."""
    result = subprocess.run([sys.executable, "-c", SCIPY_BLAS], cwd=folder,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return {os.path.realpath(path) for path in json.loads(result.stdout)}


def blas_threads_of(paths):
    return [entry["num_threads"] for entry in threadpoolctl.threadpool_info()
            if entry["user_api"] == "blas" and os.path.realpath(entry["filepath"]) in paths]


def test_set_blas_threads_limits_and_restores(tmp_path):
    scipy_blas = blas_libraries_of_scipy(tmp_path)
    assert scipy_blas                                   # threadpoolctl sees it
    before = bp.blas_threads()
    with bp.set_blas_threads(1):
        assert bp.blas_threads() == 1
        counts = blas_threads_of(scipy_blas)
        assert len(counts) == len(scipy_blas)           # loaded here too
        assert all(n == 1 for n in counts)              # the BLAS the kernels call
        model = bp.Model([bp.Dense(4, 8, "relu"), bp.Dense(8, 2)], seed=0)   # still works
        assert model.predict(np.ones((3, 4))).shape == (3, 2)
    assert bp.blas_threads() == before


def test_steps_plan_for_blas_threads_by_the_thread_count():
    """A fused step built while BLAS may run more than one thread plans for BLAS's
    threads (blas_parallel); under set_blas_threads(1) it does not. Whatever the
    machine allows: each expectation is read off the thread count set."""
    X, y = np.ones((8, 4)), np.zeros(8, dtype=np.int64)
    for n in (1, None, 2):                              # None: one thread per core
        with bp.set_blas_threads(n):
            model = bp.Model([bp.Dense(4, 8, "relu"), bp.Dense(8, 2)], seed=0)
            model.train_step(X, y, bp.CrossEntropyLoss(), bp.SGD(model, lr=0.1))
            assert model._fused.engine.blas_parallel == (bp.blas_threads() > 1), n
            if n == 1:
                assert not model._fused.engine.blas_parallel


def test_set_blas_threads_rejects_bad_counts():
    with pytest.raises(ValueError, match="n must be a positive integer; got 0"):
        bp.set_blas_threads(0)
    with pytest.raises(TypeError, match="n must be a positive integer; got float 2.5"):
        bp.set_blas_threads(2.5)
