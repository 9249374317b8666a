"""scikit-learn's objective and stochastic solvers, on bpcore's kernels.

scikit-learn's MLP minimises, over each batch of total sample weight ``s``::

    data(batch) + alpha / (2 s) * sum of squared weights (biases not penalised)

and its gradient step on the weight matrices adds ``alpha / s * W``. ``data`` is the
weighted mean over samples of a per-sample loss summed over outputs (log loss,
logistic loss), or for regression the mean over outputs of half the squared error
(half the Poisson deviance). The losses below are bpcore's fused losses with the
reduction scale changed to those sums, so ``Model.train_step`` keeps its one-kernel
forward, loss and backward. For regression with several outputs the gradient is the
true gradient of that reported loss (scikit-learn's own steps are ``n_outputs``
times larger there; with one output the two agree).

The optimizers are bpcore's SGD and Adam kernels driven with scikit-learn's update
rules, exactly (to rounding): the L2 term is added to the weights' gradients first.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .. import _flat
from ..nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, PoissonLoss
from ..optim import SGD, Adam

if TYPE_CHECKING:
    from .._typing import FloatArray, Model


class HalfSquaredError(MSELoss):
    """``0.5 * mean((output - target)**2)``: scikit-learn's ``squared_error``."""

    fused_kind = "mse"

    def validate(self, target: npt.ArrayLike, shape: tuple[int, int], dtype: npt.DTypeLike,
                 sample_weight: npt.ArrayLike | None = None, *, name: str = "target"
                 ) -> tuple[npt.NDArray[Any], FloatArray, float]:
        target, weight, scale = super().validate(target, shape, dtype, sample_weight, name=name)
        return target, weight, 0.5 * scale


class SummedLogisticLoss(BCEWithLogitsLoss):
    """Binary cross-entropy on logits summed over outputs, averaged over samples:
    scikit-learn's ``binary_log_loss`` for binary and multi-label targets."""

    fused_kind = "bce"

    def validate(self, target: npt.ArrayLike, shape: tuple[int, int], dtype: npt.DTypeLike,
                 sample_weight: npt.ArrayLike | None = None, *, name: str = "target"
                 ) -> tuple[npt.NDArray[Any], FloatArray, float]:
        target, weight, scale = super().validate(target, shape, dtype, sample_weight, name=name)
        return target, weight, scale * shape[1]


class SummedPoissonLoss(PoissonLoss):
    """bpcore's Poisson loss on the log of the mean (``exp(z) - y z``) summed over
    outputs, averaged over samples: scikit-learn's half Poisson deviance up to the
    term ``y log y - y``, which does not depend on the output (the estimator adds it
    to what it reports, and to L-BFGS's objective)."""

    fused_kind = "poisson"

    def validate(self, target: npt.ArrayLike, shape: tuple[int, int], dtype: npt.DTypeLike,
                 sample_weight: npt.ArrayLike | None = None, *, name: str = "target"
                 ) -> tuple[npt.NDArray[Any], FloatArray, float]:
        target, weight, scale = super().validate(target, shape, dtype, sample_weight, name=name)
        return target, weight, scale * shape[1]


def log_loss() -> CrossEntropyLoss:
    """scikit-learn's multi-class ``log_loss``: bpcore's mean cross-entropy itself."""
    return CrossEntropyLoss()


class _Penalised:
    """The L2 term on the weight matrices, added to their gradients before the update.

    ``strength`` is ``alpha / s`` for the coming step (the estimator sets it per batch);
    ``penalty`` is the term's value at the weights the step started from.
    """

    strength: float
    penalty: float
    model: Model

    def _add_penalty(self) -> None:
        total = 0.0
        strength = self.strength
        if strength:
            views = self.__dict__.get("_weight_views")
            if views is None:      # the flat views of every W and dW, made once
                views = [(layer.W.reshape(-1), layer.dW.reshape(-1))
                         for layer in self.model.layers]
                object.__setattr__(self, "_weight_views", views)
            for W, dW in views:
                total += _flat.l2(W, dW, strength)
        object.__setattr__(self, "penalty", total)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()      # type: ignore[misc]
        state.pop("_weight_views", None)    # views of this model: a copy makes its own
        return state


class SklearnSGD(_Penalised, SGD):
    """scikit-learn's SGD: ``v = momentum * v - lr * g``; ``p += v`` (or, Nesterov,
    ``p += momentum * v - lr * g``), run by bpcore's SGD kernel.

    The kernel keeps PyTorch's buffer ``buf = -v / lr``; the two rules agree while
    the learning rate stays, and ``set_learning_rate`` rescales the buffer when it
    changes so that they keep agreeing.
    """

    def __init__(self, model: Model, lr: float, momentum: float, nesterov: bool,
                 schedule: str = "constant", power_t: float = 0.5) -> None:
        super().__init__(model, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
        self.strength = 0.0
        self.penalty = 0.0
        #: the schedule as it was when the optimizer was made (scikit-learn's keeps
        #: it across partial_fit calls, whatever set_params does in between)
        self.schedule, self.lr_init, self.power_t = schedule, lr, power_t

    def set_learning_rate(self, lr: float) -> None:
        """Change the learning rate, keeping scikit-learn's velocity ``v`` as it is."""
        buffer = self.state.get("momentum_buffer")
        if buffer is not None and lr != self.lr:
            buffer *= self.lr / lr
        self.lr = lr

    def _update(self) -> None:
        self._add_penalty()
        super()._update()


class SklearnAdam(_Penalised, Adam):
    """scikit-learn's Adam: ``p -= lr * sqrt(1 - beta2**t) / (1 - beta1**t) * m /
    (sqrt(v) + eps)`` (``eps`` outside the bias correction, unlike PyTorch's)."""

    def __init__(self, model: Model, lr: float, beta_1: float, beta_2: float,
                 epsilon: float) -> None:
        super().__init__(model, lr=lr, betas=(beta_1, beta_2), eps=epsilon)
        self.strength = 0.0
        self.penalty = 0.0

    def _update(self) -> None:
        self._add_penalty()
        beta1, beta2 = self.betas
        t = self.steps
        model = self.model
        _flat.adam(model.params, model.grads, self.state["exp_avg"], self.state["exp_avg_sq"],
                   self.lr * math.sqrt(1.0 - beta2 ** t), beta1, beta2, self.eps, 0.0,
                   1.0 - beta1 ** t, 1.0)


def penalty_value(model: Model, strength: float) -> float:
    """``strength / 2 * sum of squared weights`` (no gradient written)."""
    if not strength:
        return 0.0
    total = sum(float(np.dot(layer.W.reshape(-1), layer.W.reshape(-1)))
                for layer in model.layers)
    return 0.5 * strength * total
