"""Loss objects: ``value, grad_output = loss(output, target)``.

Each loss validates its target, then calls one fused kernel (src/_losses.pyx) that
returns the value and writes dL/doutput into a buffer the loss owns and reuses for
every call with the same shape. Reductions follow PyTorch's defaults.

With ``sample_weight`` w, "mean" is the weighted mean of per-sample losses
(``sum_i w_i l_i / sum_i w_i``, with l_i averaged over the outputs of sample i for
MSE, BCE and Poisson) and "sum" is ``sum_i w_i l_i``; unit weights give PyTorch's
results.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, SupportsFloat, TypeAlias

import numpy as np
import numpy.typing as npt

from .. import _losses, _validation

if TYPE_CHECKING:
    from .._typing import FloatArray

#: a loss's reduction: one of REDUCTIONS
Reduction: TypeAlias = Literal["mean", "sum"]
REDUCTIONS: tuple[Reduction, ...] = ("mean", "sum")

#: a loss's name: the keys of LOSSES (change both together)
LossName: TypeAlias = Literal["mse", "cross_entropy", "bce", "poisson"]

#: a custom loss: ``loss(output, target) -> (value, grad_output)``; ``output`` is the
#: model's read-only output, ``target`` whatever was passed as the target
LossFunction: TypeAlias = Callable[[npt.NDArray[np.floating[Any]], Any],
                                   tuple[SupportsFloat, npt.ArrayLike]]


class Loss:
    """Base class: validation, the reusable gradient buffer and the reduction scale."""

    #: True when the per-sample loss is averaged over the outputs under "mean".
    mean_over_outputs: ClassVar[bool] = True

    #: The loss the fused training step computes in its own kernel for this class
    #: ("mse", "cross_entropy", "bce", "poisson"), or None. Read from the class's own body only
    #: (bpcore.nn.fused.declared_kind): a subclass that changes the math is not fused
    #: unless it declares the kind again, knowingly.
    fused_kind: ClassVar[str | None] = None

    reduction: Reduction

    def __init__(self, reduction: Reduction = "mean") -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
        self.reduction = reduction
        # each thread's reusable grad_output buffer (threads training different models
        # with one Loss object do not share one)
        self._local = threading.local()
        self._empty: dict[npt.DTypeLike, FloatArray] = {}

    # copies and pickles get buffers of their own (a threading.local does not copy)
    def __getstate__(self) -> dict[str, Any]:
        state = dict(vars(self))
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"

    def __call__(self, output: npt.ArrayLike, target: npt.ArrayLike,
                 sample_weight: npt.ArrayLike | None = None) -> tuple[float, FloatArray]:
        """Return ``(value, grad_output)`` for output (n_samples, n_outputs).

        ``grad_output`` is owned by the loss (one buffer per thread) and overwritten by
        its next call with the same shape on the same thread; copy it to keep it.
        """
        dtype: npt.DTypeLike
        if (isinstance(output, np.ndarray)
                and output.dtype.newbyteorder("=") in _validation.FLOAT_DTYPES):
            dtype = output.dtype.newbyteorder("=")      # the output's precision
        else:
            dtype = np.float64
        output = _validation.float_matrix(output, "output", dtype, column_word="outputs")
        return self.compute(output, *self.validate(target, output.shape, dtype, sample_weight))

    def validate(self, target: npt.ArrayLike, shape: tuple[int, int], dtype: npt.DTypeLike,
                 sample_weight: npt.ArrayLike | None = None, *, name: str = "target"
                 ) -> tuple[npt.NDArray[Any], FloatArray, float]:
        """Check target and sample_weight against an output of ``shape``.

        Returns ``(target, weight, scale)`` ready for ``compute``: both converted for
        the kernel (weight empty when None) and the reduction's scale factor. ``name``
        is what the caller calls the target (``fit``'s ``y``): the messages of
        ``_check_target``, which speak of ``target``, are told with that name.
        """
        try:
            target = self._check_target(_validation.as_array(target, "target"), shape, dtype)
        except (TypeError, ValueError) as error:
            if name == "target" or type(error) not in (TypeError, ValueError):
                raise
            text = str(error)
            renamed = re.sub(r"\btarget\b", name, text) if re.search(r"\btarget\b", text) \
                else f"{name}: {text}"
            raise type(error)(renamed) from None
        weight = _validation.sample_weight(sample_weight, shape[0], dtype)
        if weight is None:
            weight = self._empty.get(dtype)
            if weight is None:
                weight = self._empty[dtype] = np.empty(0, dtype=dtype)
            total: float = shape[0]
        else:
            with np.errstate(over="ignore"):
                total = float(weight.sum(dtype=np.float64))
            if not np.isfinite(total):
                raise ValueError("sample_weight sums to infinity (the weights are too large "
                                 "to add up); scale them down")
            if self.reduction == "mean" and total == 0:
                raise ValueError("sample_weight must have a positive sum for reduction='mean'; "
                                 "got weights whose total sums to zero")
        scale = 1.0
        if self.reduction == "mean":
            scale = 1.0 / (total * (shape[1] if self.mean_over_outputs else 1))
        return target, weight, scale

    def compute(self, output: FloatArray, target: npt.NDArray[Any], weight: FloatArray,
                scale: float) -> tuple[float, FloatArray]:
        """Run the kernel on arguments checked by ``validate``; return (value, grad)."""
        local = self._local
        grad = getattr(local, "grad", None)
        if grad is None or grad.shape != output.shape or grad.dtype != output.dtype:
            grad = local.grad = np.empty_like(output)
        value = self._kernel_for(target)(output, target, weight, grad, scale)
        return value, grad

    def value(self, output: FloatArray, target: npt.NDArray[Any], weight: FloatArray,
              scale: float) -> float:
        """The loss value alone, on arguments checked by ``validate``. Its gradient is
        written to a buffer of this call's own, not the loss's, so concurrent calls
        (``evaluate`` from several threads) do not share one."""
        return float(self._kernel_for(target)(output, target, weight,
                                              np.empty_like(output), scale))

    if TYPE_CHECKING:
        # what each subclass defines (declared for the type checker only: the base
        # class itself has neither)
        def _check_target(self, target: npt.NDArray[Any], shape: tuple[int, int],
                          dtype: npt.DTypeLike) -> npt.NDArray[Any]: ...

        def _kernel_for(self, target: npt.NDArray[Any]) -> Callable[..., float]: ...

    def _float_target(self, target: npt.NDArray[Any], shape: tuple[int, int],
                      dtype: npt.DTypeLike) -> FloatArray:
        if target.dtype.kind not in "biuf":
            raise TypeError(f"target must be a real numeric array; got dtype {target.dtype}")
        if target.ndim == 1 and shape[1] == 1 and target.shape[0] == shape[0]:
            target = target.reshape(-1, 1)
        if target.shape != tuple(shape):
            raise ValueError(f"target must have shape {tuple(shape)} like the output; "
                             f"got shape {target.shape}")
        return _validation.native_finite(target, dtype, "target")


class MSELoss(Loss):
    """Mean squared error ``(output - target)^2``, averaged over all elements
    ("mean", PyTorch's default) or summed ("sum"). A 1-D target is accepted for a
    single-output model."""

    fused_kind = "mse"

    def _check_target(self, target: npt.NDArray[Any], shape: tuple[int, int],
                      dtype: npt.DTypeLike) -> npt.NDArray[Any]:
        return self._float_target(target, shape, dtype)

    def _kernel_for(self, target: npt.NDArray[Any]) -> Callable[..., float]:
        return _losses.mse


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits (sigmoid fused in, stable for any logit).

    Targets are probabilities in [0, 1] of the output's shape (or 1-D for one
    output). "mean" averages over all elements, like PyTorch.
    """

    fused_kind = "bce"

    def _check_target(self, target: npt.NDArray[Any], shape: tuple[int, int],
                      dtype: npt.DTypeLike) -> npt.NDArray[Any]:
        target = self._float_target(target, shape, dtype)
        if target.size and (target.min() < 0 or target.max() > 1):
            raise ValueError("target of BCEWithLogitsLoss must lie in [0, 1]; got values "
                             f"in [{target.min()}, {target.max()}]")
        return target

    def _kernel_for(self, target: npt.NDArray[Any]) -> Callable[..., float]:
        return _losses.bce_with_logits


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits (log-sum-exp stable), PyTorch's rule.

    The target is either integer class labels of shape (n_samples,) in
    [0, n_classes), or class probabilities (non-negative floats) of the output's
    shape. "mean" averages over samples.
    """

    mean_over_outputs = False
    fused_kind = "cross_entropy"

    def _check_target(self, target: npt.NDArray[Any], shape: tuple[int, int],
                      dtype: npt.DTypeLike) -> npt.NDArray[Any]:
        n, k = shape
        if target.ndim == 1:
            if target.dtype.kind not in "iu":
                raise TypeError("target of CrossEntropyLoss must be integer class labels "
                                f"(1-D) or class probabilities (2-D); got a 1-D array of "
                                f"dtype {target.dtype}")
            if target.shape[0] != n:
                raise ValueError(f"target has {target.shape[0]} labels but the output has "
                                 f"{n} samples")
            low, high = target.min(), target.max()
            if low < 0 or high >= k:
                raise ValueError(f"target labels must lie in [0, {k - 1}] for {k} classes; "
                                 f"got labels in [{low}, {high}]")
            return _validation.native(target, np.int64)
        target = self._float_target(target, shape, dtype)
        if target.min() < 0:
            raise ValueError("target probabilities of CrossEntropyLoss must be "
                             f"non-negative; got a minimum of {target.min()}")
        return target

    def _kernel_for(self, target: npt.NDArray[Any]) -> Callable[..., float]:
        if target.ndim == 1:
            return _losses.cross_entropy_labels
        return _losses.cross_entropy_probs


class PoissonLoss(Loss):
    """Poisson negative log-likelihood of counts under a log link: the output z is the
    log of the rate, and each element's loss is ``exp(z) - target * z``, with
    gradient ``exp(z) - target`` (PyTorch's ``PoissonNLLLoss(log_input=True,
    full=False)``: the ``log(target!)`` term, constant in z, is left out). "mean"
    averages over all elements, like PyTorch; ``exp(model.predict(X))`` is the
    predicted rate.

    Targets are finite non-negative numbers (counts, integer or float) of the output's
    shape (or 1-D for one output). Where exp(z) overflows (z above about 88.7 in
    float32, 709.7 in float64) the loss and that element's gradient are +inf, as in
    PyTorch, never NaN; ``fit`` then stops (or skips the step) as for any non-finite
    loss.
    """

    fused_kind = "poisson"

    def _check_target(self, target: npt.NDArray[Any], shape: tuple[int, int],
                      dtype: npt.DTypeLike) -> npt.NDArray[Any]:
        target = self._float_target(target, shape, dtype)
        if target.size and target.min() < 0:
            raise ValueError("target of PoissonLoss must be non-negative counts; got a "
                             f"minimum of {target.min()}")
        return target

    def _kernel_for(self, target: npt.NDArray[Any]) -> Callable[..., float]:
        return _losses.poisson


#: names accepted wherever a loss is asked for (e.g. ``fit(loss="cross_entropy")``);
#: the names are also the type ``LossName`` (above): change both together
LOSSES: dict[str, type[Loss]] = {
    "mse": MSELoss,
    "cross_entropy": CrossEntropyLoss,
    "bce": BCEWithLogitsLoss,
    "poisson": PoissonLoss,
}

#: what ``fit``, ``evaluate`` and ``train_step`` take as a loss: a name of ``LOSSES``, a
#: bpcore ``Loss`` or a callable ``loss(output, target) -> (value, grad_output)``
LossLike: TypeAlias = LossName | Loss | LossFunction
