"""Gradient clipping over the model's flat gradient buffer (by value, by norm),
PyTorch's rules."""
from __future__ import annotations

import math

from .. import _flat, _validation
from ..nn import Model


def clip_grad_value(model: Model, clip_value: float) -> None:
    """Clamp every gradient into ``[-clip_value, clip_value]`` in place (PyTorch's
    ``clip_grad_value_``; NaN stays NaN)."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a bpcore Model; got {type(model).__name__}")
    clip_value = _validation.real(clip_value, "clip_value", low=0.0, low_open=True)
    _flat.clip_value(model.grads, clip_value)


def clip_grad_norm(model: Model, max_norm: float, *, error_if_nonfinite: bool = False) -> float:
    """Scale ``model.grads`` in place so that their 2-norm is at most ``max_norm``.

    PyTorch's rule: with ``total`` the norm of all gradients, every gradient is
    multiplied by ``max_norm / (total + 1e-6)`` when that factor is below 1.
    Returns ``total`` (before clipping). With ``error_if_nonfinite`` a NaN/inf norm
    raises ValueError and leaves the gradients unchanged.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a bpcore Model; got {type(model).__name__}")
    max_norm = _validation.real(max_norm, "max_norm", low=0.0, low_open=True)
    error_if_nonfinite = _validation.flag(error_if_nonfinite, "error_if_nonfinite")
    total = math.sqrt(_flat.squared_norm(model.grads))
    if not math.isfinite(total) and error_if_nonfinite:
        raise ValueError(f"the total gradient norm is {total}; gradients left unchanged")
    coefficient = max_norm / (total + 1e-6)
    if coefficient < 1:
        model.grads *= coefficient
    return total
