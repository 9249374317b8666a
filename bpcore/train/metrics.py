"""Metrics on a model's raw output: accuracy, MSE, MAE, R².

Each takes ``(output, target)`` as numpy arrays — the model's output (logits for
classifiers) and the target in any form the losses accept — and returns a float.
``METRICS`` maps the names the fit loop accepts to these functions.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, SupportsFloat, TypeAlias

import numpy as np
import numpy.typing as npt

#: a metric's name: the keys of METRICS (change both together)
MetricName: TypeAlias = Literal["accuracy", "mse", "mae", "r2"]

#: a metric of your own: ``metric(output, target) -> number``
MetricFunction: TypeAlias = Callable[[npt.NDArray[np.floating[Any]], Any], SupportsFloat]


def _as_columns(target: npt.ArrayLike, output: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    target = np.asarray(target, dtype=np.float64)
    return target.reshape(output.shape) if target.ndim == 1 else target


def accuracy(output: npt.ArrayLike, target: npt.ArrayLike, threshold: float = 0.0) -> float:
    """Fraction of samples classified right.

    Several outputs: the arg-max is the predicted class; the target is integer labels
    or one row of probabilities per sample (its arg-max). One output: the prediction
    is ``output > threshold`` (0 for logits; use 0.5 for a regression-style output)
    against ``target > 0.5``.
    """
    output = np.asarray(output)
    target = np.asarray(target)
    if output.shape[1] > 1:
        predicted = output.argmax(axis=1)
        truth = target if target.ndim == 1 else target.argmax(axis=1)
    else:
        predicted = output[:, 0] > threshold
        truth = target.reshape(-1) > 0.5
    return float(np.mean(predicted == truth))


def mean_squared_error(output: npt.ArrayLike, target: npt.ArrayLike) -> float:
    """Mean of (output - target)² over all elements."""
    output = np.asarray(output, dtype=np.float64)
    return float(np.mean((output - _as_columns(target, output)) ** 2))


def mean_absolute_error(output: npt.ArrayLike, target: npt.ArrayLike) -> float:
    """Mean of |output - target| over all elements."""
    output = np.asarray(output, dtype=np.float64)
    return float(np.mean(np.abs(output - _as_columns(target, output))))


def r2_score(output: npt.ArrayLike, target: npt.ArrayLike) -> float:
    """Coefficient of determination, averaged uniformly over outputs (scikit-learn's
    default); an output whose target is constant scores 1 if predicted exactly, else 0."""
    output = np.asarray(output, dtype=np.float64)
    target = _as_columns(target, output)
    residual = ((target - output) ** 2).sum(axis=0)
    total = ((target - target.mean(axis=0)) ** 2).sum(axis=0)
    scores = np.where(total > 0, 1 - residual / np.where(total > 0, total, 1),
                      np.where(residual == 0, 1.0, 0.0))
    return float(scores.mean())


#: the names are also the type ``MetricName`` (above): change both together
METRICS: dict[str, Callable[[Any, Any], float]] = {
    "accuracy": accuracy,
    "mse": mean_squared_error,
    "mae": mean_absolute_error,
    "r2": r2_score,
}
