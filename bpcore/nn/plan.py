"""The plans the engine (src/_engine.pyx) runs: named fields, no behaviour.

A ``LayerPlan`` is one layer's part of a pass: its shape and activation, its views
into the flat parameter and gradient buffers, and the workspace buffers of one batch
size. A ``StepPlan`` is a whole fused training step. The engine reads these fields
once, when it is built, and keeps the plan so that its raw pointers stay valid.
An array that is empty (size 0) or None is absent (no scale ``c`` on a plain layer,
no derivative cache ``D`` on an identity layer, ...).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from .._engine import Scalars


class LayerPlan(NamedTuple):
    """One layer of a pass (see bpcore/nn/layers.py and the Model's workspaces)."""

    n_in: int
    n_out: int
    activation: int          # the kernel code of ``bpcore.nn.layers.ACTIVATIONS``
    negative_slope: float    # leaky ReLU's slope
    W: np.ndarray            # (n_in, n_out) weights, a view into ``params``
    b: np.ndarray            # (n_out,) biases
    c: np.ndarray | None     # (n_out,) scale of scaled-sigmoid units, or None
    dW: np.ndarray           # gradients: views into ``grads``
    db: np.ndarray
    dc: np.ndarray | None
    A: np.ndarray            # (n, n_out) activations
    D: np.ndarray            # (n, n_out) derivative cache f'(z), or empty
    G: np.ndarray            # (n, n_out) sigmoid(z) of scaled units, or empty
    delta: np.ndarray        # (n, n_out) dL/dz, or empty (identity layers reuse dL/da)
    dX: np.ndarray           # (n, n_in) dL/d(input), or empty (the first layer)


class StepPlan(NamedTuple):
    """One fused training step for one batch size, loss and optimizer."""

    layers: tuple[LayerPlan, ...]   # a LayerPlan per layer
    params: np.ndarray       # the model's flat buffers
    grads: np.ndarray
    grad_output: np.ndarray  # (batch_size, n_out) dL/doutput, written by the step
    batch_size: int
    loss_kind: str | None    # a key of bpcore._engine.LOSS_KINDS (the engine refuses others)
    scale: float             # the loss reduction's factor (1/n for "mean", ...)
    optimizer_kind: str | None   # a key of bpcore._engine.OPTIMIZER_KINDS, or None
    state: tuple[np.ndarray, ...]   # the optimizer's state buffers the update writes
    scalars: Scalars | None  # the optimizer's bpcore._engine.Scalars (None: not fused)
    blas_parallel: bool      # BLAS had more than one thread when planned
