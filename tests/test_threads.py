"""BLAS thread settings (threadpoolctl as the oracle)."""
import numpy as np
import pytest

import bpcore as bp

threadpoolctl = pytest.importorskip("threadpoolctl")


def scipy_blas_threads():
    return [entry["num_threads"] for entry in threadpoolctl.threadpool_info()
            if entry["user_api"] == "blas" and "scipy_openblas" in entry["filepath"]
            and "64_" not in entry["filepath"].rsplit("/", 1)[-1]]


def test_set_blas_threads_limits_and_restores():
    before = bp.blas_threads()
    with bp.set_blas_threads(1):
        assert bp.blas_threads() == 1
        counts = scipy_blas_threads()
        assert counts and all(n == 1 for n in counts)     # the BLAS the kernels call
        model = bp.Model([bp.Dense(4, 8, "relu"), bp.Dense(8, 2)], seed=0)   # still works
        assert model.predict(np.ones((3, 4))).shape == (3, 2)
    assert bp.blas_threads() == before


def test_set_blas_threads_rejects_bad_counts():
    with pytest.raises(ValueError, match="n must be a positive integer; got 0"):
        bp.set_blas_threads(0)
    with pytest.raises(TypeError, match="n must be a positive integer; got float 2.5"):
        bp.set_blas_threads(2.5)
