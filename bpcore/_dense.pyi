# Stub of src/_dense.pyx: a dense layer's forward and backward kernels, dropout, and the
# product the kernels use. Every array is C-contiguous, float32 or float64, one dtype per
# call; an empty array stands for one that is not wanted (see src/_dense.pyx).
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

_Floats = npt.NDArray[np.floating[Any]]

#: the own loops' scratch entries (src/_blas.pxd)
SMALL_SCRATCH: int
#: the deepest product whose last columns fit the scratch transposed
SMALL_PRODUCT_DEPTH: int
#: the most rows of a skinny batch
SKINNY_ROWS: int
FUSED_PRODUCT_COLUMNS: int

def forward(X: _Floats, W: _Floats, b: _Floats, scale: _Floats, Z: _Floats, A: _Floats,
            D: _Floats, G: _Floats, kind: int, slope: float) -> None: ...
def activate(A: _Floats, b: _Floats, scale: _Floats, Z: _Floats, D: _Floats,
             G: _Floats, kind: int, slope: float) -> None: ...
def backward(X: _Floats, W: _Floats, upstream: _Floats, D: _Floats, G: _Floats,
             delta: _Floats, dW: _Floats, db: _Floats, dscale: _Floats,
             dX: _Floats) -> None: ...
def dropout(U: _Floats, A: _Floats, D: _Floats, G: _Floats, rate: float) -> None: ...
def matmul(A: _Floats, B: _Floats, C: _Floats, trans_a: bool = False, trans_b: bool = False,
           alpha: float = 1.0, beta: float = 0.0,
           path: Literal["auto", "blas", "own"] = "auto") -> None: ...
def small_product_limit() -> int: ...
def takes_own_loops(trans_a: bool, trans_b: bool, m: int, n: int, k: int) -> bool: ...
def fused_product_limit() -> int: ...
def takes_fused_loops(trans_b: bool, m: int, n: int, k: int) -> bool: ...
def layer_forward(X: _Floats, W: _Floats, b: _Floats, A: _Floats, D: _Floats, kind: int,
                  slope: float = 0.01,
                  path: Literal["auto", "blas", "own"] = "auto") -> None: ...
def layer_delta(delta: _Floats, W: _Floats, M: _Floats, out: _Floats, colsum: _Floats,
                relu_output: bool = False, dX: _Floats | None = None,
                Wt: _Floats | None = None,
                path: Literal["auto", "blas", "own"] = "auto") -> None: ...
