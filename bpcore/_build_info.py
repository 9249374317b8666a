"""How this installation's compiled core was built (``bpcore.build_info``)."""
from __future__ import annotations

from typing import Any

from . import _kernels


def build_info() -> dict[str, Any]:
    """How bpcore's C kernels were built, as a dict:

    - ``"kernels"``: ``"vector"`` (GCC or clang on x86-64 or aarch64: register-blocked
      products in GNU vector extensions) or ``"portable"`` (plain C99 loops: any other
      compiler, such as MSVC, or a build with ``BPCORE_PORTABLE=1``). Both compute the
      same results up to the order of rounding.
    - ``"target_clones"``: the instruction sets each kernel was compiled for, one
      picked at import by the CPU (``("x86-64-v4", "x86-64-v3", "default")`` with GCC
      on x86-64; ``()`` elsewhere).
    - ``"compiler"``: the compiler that built them, e.g. ``"gcc 12.2.0"``.
    - ``"small_product_limit"``: the most multiply-adds of a matrix product that
      bpcore's own loops compute instead of BLAS on this CPU.
    - ``"fused_product_limit"``: the most multiply-adds of a layer's product whose
      store also applies the bias and activation (forward) or the derivative of the
      layer below (backward) that the own loops compute, for products of 16, 24 or 32
      columns (backward: above 8 rows): 262144 on CPUs with AVX-512, and 0 elsewhere,
      where ``small_product_limit`` alone decides.

    >>> sorted(build_info())
    ['compiler', 'fused_product_limit', 'kernels', 'small_product_limit', 'target_clones']
    """
    info = _kernels.build_info()
    clones = info["target_clones"]
    return {
        "kernels": info["kernels"],
        "target_clones": tuple(clones.split(",")) if clones else (),
        "compiler": info["compiler"].strip(),
        "small_product_limit": info["small_product_limit"],
        "fused_product_limit": info["fused_product_limit"],
    }
