"""Metrics: the built-in ones on a model's raw output, and the adapter for yours.

The built-ins (accuracy, MSE, MAE, R²) take ``(output, target)`` as numpy arrays —
the model's output (logits for classifiers) and the target in any form the losses
accept — and return a float. ``METRICS`` maps the names the fit loop accepts to them.

A metric of your own is called the way scikit-learn and Keras call theirs,
``metric(y_true, y_pred)``, so ``sklearn.metrics.r2_score`` or ``f1_score`` can be
passed as they are (``user_metric``). For a classifier, ``y_true`` and ``y_pred``
are labels: the user's own (``model.classes``: strings, 1..K, ...) after a fit on
them, else column indices or 0/1. For probabilities, compute them from the model's logits yourself
(``scipy.special.softmax(model.predict(X), axis=1)``, or ``scipy.special.expit`` for
one BCE output). Under a ``PoissonLoss`` the output is a log-rate, so the regression
metrics (built-in and yours, e.g. ``sklearn.metrics.mean_poisson_deviance``) compare
the target with the predicted rate ``exp(output)`` (``predicted_values``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, SupportsFloat, TypeAlias

import numpy as np
import numpy.typing as npt

from ..nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, PoissonLoss

#: a metric's name: the keys of METRICS (change both together)
MetricName: TypeAlias = Literal["accuracy", "mse", "mae", "r2"]

#: a metric of your own, called as scikit-learn's and Keras's are:
#: ``metric(y_true, y_pred) -> number`` (see ``user_metric``)
MetricFunction: TypeAlias = Callable[[Any, Any], SupportsFloat]


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


def predicted_labels(output: npt.ArrayLike, loss: object) -> npt.NDArray[Any] | None:
    """The class labels a classifier's ``loss`` reads off its logits ``output`` (the
    arg-max for cross-entropy; ``output > 0`` per column for BCE), or None when the
    loss is not a classifier's (MSE, Poisson, a custom loss)."""
    output = np.asarray(output)
    if isinstance(loss, CrossEntropyLoss):
        return output.argmax(axis=1)
    if isinstance(loss, BCEWithLogitsLoss):
        labels = (output > 0).astype(np.int64)
        return labels[:, 0] if labels.shape[1] == 1 else labels
    return None


def predicted_values(output: npt.ArrayLike, loss: object) -> npt.NDArray[Any]:
    """What a regression metric compares with the target: the predicted rate
    ``exp(output)`` under a ``PoissonLoss`` (whose output is the log-rate; +inf where
    exp overflows), else the output itself."""
    output = np.asarray(output)
    if isinstance(loss, PoissonLoss):
        with np.errstate(over="ignore"):
            return np.exp(output)
    return output


def on_predicted_values(metric: Callable[[Any, Any], float],
                        loss: object) -> Callable[[Any, Any], float]:
    """A built-in regression metric ``metric(output, target)`` applied to
    ``predicted_values(output, loss)`` (the metric itself for any loss but Poisson)."""
    if not isinstance(loss, PoissonLoss):
        return metric

    def on_rates(output: Any, target: Any) -> float:
        return metric(predicted_values(output, loss), target)

    on_rates.__name__ = getattr(metric, "__name__", "metric")
    return on_rates


def user_metric(metric: MetricFunction, loss: object,
                classes: npt.NDArray[Any] | None = None) -> Callable[[Any, Any], SupportsFloat]:
    """``metric(y_true, y_pred)`` as the fit loop calls its metrics, ``(output,
    target)``: ``y_true`` is the target (a single column as a 1-D array), ``y_pred``
    the predicted labels for a classifier's loss (``predicted_labels``), the
    predicted rate for a Poisson loss and the output otherwise
    (``predicted_values``; a single column as a 1-D array when the target is 1-D).

    ``classes`` (``model.classes``, the user's labels in code order) decodes both:
    the target's codes and the predicted codes become the user's labels, so
    ``sklearn.metrics.f1_score(..., pos_label="yes")`` sees what was fitted. Without
    them, labels are the codes themselves (column indices, 0/1)."""
    def adapted(output: Any, target: Any) -> SupportsFloat:
        y_true = np.asarray(target)
        if y_true.ndim == 2 and y_true.shape[1] == 1:
            y_true = y_true[:, 0]
        labels = predicted_labels(output, loss)
        if labels is not None:
            if y_true.ndim == 2 and labels.ndim == 1:      # class probabilities
                y_true = y_true.argmax(axis=1)
            elif y_true.dtype.kind in "fb" and np.all(y_true == np.round(y_true)):
                y_true = y_true.astype(np.int64)           # 0/1 BCE targets as labels
            if classes is not None and labels.ndim == 1 and y_true.dtype.kind in "iu":
                y_true, labels = classes[y_true], classes[labels]
            return metric(y_true, labels)
        y_pred = predicted_values(output, loss)
        if y_true.ndim == 1 and y_pred.ndim == 2 and y_pred.shape[1] == 1:
            y_pred = y_pred[:, 0]
        return metric(y_true, y_pred)

    adapted.__name__ = getattr(metric, "__name__", "metric")
    return adapted
