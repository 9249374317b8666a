"""Central-difference check of a model's backpropagated gradients."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from . import _validation

if TYPE_CHECKING:
    from ._typing import FloatArray
from .nn import Loss, Model


@dataclass
class GradCheckResult:
    """Outcome of ``gradcheck``.

    ``errors`` maps each parameter tensor's name (``'layers.0.W'``...) to the
    norm-relative error ``|a - n| / (|a| + |n|)`` between the backpropagated (a) and
    the central-difference (n) gradients; ``analytic`` and ``numerical`` are the two
    flat gradients.
    """

    errors: dict[str, float]
    analytic: FloatArray
    numerical: FloatArray

    @property
    def max_error(self) -> float:
        """The largest per-tensor error."""
        return max(self.errors.values())

    def ok(self, tol: float = 1e-7) -> bool:
        """True when every tensor's error is below ``tol``."""
        return self.max_error < tol


def gradcheck(model: Model, X: npt.ArrayLike, target: npt.ArrayLike, loss: Loss, *,
              sample_weight: npt.ArrayLike | None = None, eps: float = 1e-6) -> GradCheckResult:
    """Compare ``model.loss_and_grad`` with central differences of the loss.

    Needs a float64 model; dropout is switched off while checking. Evaluates the loss
    twice per parameter, so keep the model and batch small. The model's parameters and
    gradients are restored afterwards.
    Returns a ``GradCheckResult``.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a bpcore Model; got {type(model).__name__}")
    if model.dtype != np.float64:
        raise TypeError(f"gradcheck needs a float64 model for meaningful central "
                        f"differences; got a {model.dtype} model")
    if not isinstance(loss, Loss):
        raise TypeError(f"loss must be a bpcore Loss; got {type(loss).__name__}")
    eps = _validation.real(eps, "eps", low=0.0, low_open=True)
    saved_params, saved_grads = model.params.copy(), model.grads.copy()
    training = model.training
    model.eval()            # dropout off: central differences need a deterministic loss
    try:
        _, grads = model.loss_and_grad(X, target, loss, sample_weight=sample_weight)
        analytic = grads.copy()
        numerical = np.empty_like(analytic)
        params = model.params

        def value() -> float:
            return loss(model.predict(X), target, sample_weight)[0]

        for i in range(params.size):
            original = params[i]
            params[i] = original + eps
            plus = value()
            params[i] = original - eps
            minus = value()
            params[i] = original
            numerical[i] = (plus - minus) / (2 * eps)
    finally:
        model.train(training)
        model.params[...] = saved_params
        model.grads[...] = saved_grads
    errors: dict[str, float] = {}
    for name, _, _, shape, offset in model.parameter_table:
        part = slice(offset, offset + int(np.prod(shape)))
        a, n = analytic[part], numerical[part]
        scale = np.linalg.norm(a) + np.linalg.norm(n)
        errors[name] = float(np.linalg.norm(a - n) / scale) if scale > 0 else 0.0
    return GradCheckResult(errors, analytic, numerical)
