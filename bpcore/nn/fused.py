"""The one place that decides what the fused training step takes, and builds it.

``Model.train_step`` runs forward, loss, backward and the optimizer's update as one
kernel (src/_engine.pyx) when the loss declares a ``fused_kind`` the engine computes
("mse", "cross_entropy", "bce", "poisson") and the model has no dropout active. When the
optimizer also declares one ("sgd", "adam"), its update runs inside the kernel;
otherwise the optimizer's own ``step()`` follows the kernel.

A declaration counts only in the class's own body, never inherited: a subclass of
``Adam`` that changes the update, or of ``MSELoss`` that changes ``compute``, takes
the general path (``loss_and_grad`` then ``step()``) unless it declares the kind
again, knowingly. The same rule tells ``fit`` whether its batches can be fused.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import _aligned, _engine
from .. import threads as _threads
from .plan import LayerPlan, StepPlan

if TYPE_CHECKING:
    from .._typing import Loss, Model, Optimizer


def declared_kind(obj: object) -> str | None:
    """The ``fused_kind`` that ``obj``'s own class declares (None: not declared)."""
    return vars(type(obj)).get("fused_kind")


def loss_kind(loss: object, labels: bool) -> str | None:
    """The engine's name for ``loss`` (with integer ``labels`` as targets or not), or
    None when the engine does not compute it."""
    kind = declared_kind(loss)
    if kind == "cross_entropy":
        kind = "cross_entropy_labels" if labels else "cross_entropy_probs"
    return kind if kind in _engine.LOSS_KINDS else None


def optimizer_kind(optimizer: object) -> str | None:
    """The engine's name for ``optimizer``'s update, or None (its ``step()`` runs)."""
    kind = declared_kind(optimizer)
    return kind if kind in _engine.OPTIMIZER_KINDS else None


def fuses_whole_step(loss: object, optimizer: object) -> bool:
    """Whether a step of ``loss`` and ``optimizer`` (no dropout active) is one kernel
    with the update inside: nothing of the optimizer runs outside it."""
    return loss_kind(loss, False) is not None and optimizer_kind(optimizer) is not None


def prescales(optimizer: object) -> bool:
    """Whether ``optimizer`` steps after the kernel on gradients the kernel weighted:
    its class pairs ``step`` with ``_step_prescaled`` and ``_fused_factor`` (a
    DistributedOptimizer: the kernel folds the average's 1/size into dL/doutput, and
    ``_step_prescaled()`` sums over the ranks without scaling). A subclass that
    overrides ``step`` (to clip between the reduction and the update, say) loses
    the pairing and gets ``step()`` on unweighted gradients."""
    cls = type(optimizer)
    paired = getattr(cls, "_prescaled_step_pair", None)
    return (paired is not None and getattr(cls, "step", None) is paired
            and callable(getattr(cls, "_fused_factor", None))
            and callable(getattr(cls, "_step_prescaled", None)))


def build(model: Model, layers: Sequence[LayerPlan], batch_size: int, loss: Loss,
          labels: bool, scale: float, optimizer: Optimizer,
          has_dropout: bool) -> _engine.FusedStep:
    """A FusedStep (src/_train_step.pxi) for ``model``: the engine of a StepPlan over
    ``layers`` (LayerPlans of the workspace of ``batch_size`` rows) with ``loss``
    (``labels``: integer targets; ``scale``: its reduction factor) and ``optimizer``."""
    kind = optimizer_kind(optimizer)
    names = tuple(optimizer.state_names()) if kind else ()
    state = optimizer.buffers() if kind else ()
    plan = StepPlan(
        layers=tuple(layers), params=model.params, grads=model.grads,
        grad_output=_aligned.empty((batch_size, model.n_out), model.dtype),
        batch_size=batch_size, loss_kind=loss_kind(loss, labels), scale=scale,
        optimizer_kind=kind, state=state,
        scalars=optimizer.fused_scalars if kind else None,
        blas_parallel=_threads._blas_parallel())
    return _engine.FusedStep(_engine.Engine(plan), loss, optimizer, names, has_dropout,
                             model._busy, kind is None and prescales(optimizer))
