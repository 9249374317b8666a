"""bpcore.build_info(): which kernel path this build took, told truthfully.

CI builds the core twice, once as usual and once with BPCORE_PORTABLE=1, and says which
it built in BPCORE_EXPECT_PORTABLE (1 or 0); the test then holds build_info() to it.
"""
import os
import platform

import numpy as np
import pytest

import bpcore as bp
from bpcore import _dense


def test_build_info_describes_the_kernels():
    info = bp.build_info()
    assert set(info) == {"kernels", "target_clones", "compiler", "small_product_limit",
                         "fused_product_limit"}
    assert info["kernels"] in ("vector", "portable")
    assert isinstance(info["target_clones"], tuple)
    assert all(isinstance(name, str) and name for name in info["target_clones"])
    assert isinstance(info["compiler"], str) and info["compiler"]
    # the limit the products follow (the rule itself is tested in test_small_gemm.py)
    assert info["small_product_limit"] == _dense.small_product_limit()
    assert info["fused_product_limit"] == _dense.fused_product_limit()
    # a portable build has no clones: they are a vector-path feature of GCC on x86-64
    if info["kernels"] == "portable" or platform.machine() not in ("x86_64", "AMD64"):
        assert info["target_clones"] == ()


def test_build_info_returns_a_new_dict():
    first = bp.build_info()
    first["kernels"] = "changed"
    assert bp.build_info()["kernels"] in ("vector", "portable")


@pytest.mark.skipif(os.environ.get("BPCORE_EXPECT_PORTABLE") not in ("0", "1"),
                    reason="BPCORE_EXPECT_PORTABLE (1 or 0) is set by CI for its builds")
def test_the_build_took_the_path_it_was_asked_for():
    expected = "portable" if os.environ["BPCORE_EXPECT_PORTABLE"] == "1" else "vector"
    info = bp.build_info()
    assert info["kernels"] == expected, info
    if expected == "portable":
        assert info["target_clones"] == ()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_either_path_computes_a_small_product_as_numpy(dtype, rng):
    # whichever path this build took, its own loops agree with numpy's product (the
    # same tolerance the small-product tests state: a few ulps of the inner dimension)
    A = rng.standard_normal((5, 7)).astype(dtype)
    B = rng.standard_normal((7, 12)).astype(dtype)
    C = np.zeros((5, 12), dtype=dtype)
    _dense.matmul(A, B, C, False, False, 1.0, 0.0, "own")
    reference = A.astype(np.float64) @ B.astype(np.float64)
    eps = np.finfo(dtype).eps
    bound = 7 * eps * (np.abs(A).astype(np.float64) @ np.abs(B).astype(np.float64))
    assert np.all(np.abs(C - reference) <= bound)
