# Stub of src/_losses.pyx: the loss kernels. output/logits, target and grad are 2-D and
# weight 1-D (empty: all ones), C-contiguous, float32 or float64, one dtype per call;
# labels are int64. Each returns the loss value and writes dL/doutput into grad.
from typing import Any

import numpy as np
import numpy.typing as npt

_Floats = npt.NDArray[np.floating[Any]]

def mse(output: _Floats, target: _Floats, weight: _Floats, grad: _Floats,
        scale: float) -> float: ...
def cross_entropy_labels(logits: _Floats, labels: npt.NDArray[np.int64], weight: _Floats,
                         grad: _Floats, scale: float) -> float: ...
def cross_entropy_probs(logits: _Floats, target: _Floats, weight: _Floats, grad: _Floats,
                        scale: float) -> float: ...
def bce_with_logits(logits: _Floats, target: _Floats, weight: _Floats, grad: _Floats,
                    scale: float) -> float: ...
def poisson(logrates: _Floats, target: _Floats, weight: _Floats, grad: _Floats,
            scale: float) -> float: ...
