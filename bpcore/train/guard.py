"""The divergence guard: a step whose loss or gradient is NaN or infinite is not
taken, or a step that makes a parameter NaN or infinite is undone; then it is raised
(``TrainingDiverged``) or skipped.

``fit``'s fused steps are guarded inside the kernel (``Model._guarded_step``): it
checks the loss and the gradients and bounds the update before taking it, so nothing
needs copying. Only a step the kernel does not take, and every step of the two-call
path (``loss_and_grad`` then ``optimizer.step()``), comes through ``step`` here, which
copies what the optimizer's step changes (the parameters, its step count and state
buffers) into backups it reuses, so that a step that makes a parameter non-finite can
be undone in place and the model and optimizer keep their last finite values.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .. import _flat
from ..optim import TrainingDiverged

if TYPE_CHECKING:
    from .._typing import FloatArray, Model, Optimizer

#: what ``fit(on_nonfinite=...)`` accepts
NONFINITE = ("raise", "skip")


class DivergenceGuard:
    """Keeps ``model`` and ``optimizer`` at their last finite state across steps."""

    def __init__(self, model: Model, optimizer: Optimizer, on_nonfinite: str) -> None:
        self.model, self.optimizer, self.on_nonfinite = model, optimizer, on_nonfinite
        # the backup of the parameters (allocated by the first save)
        self._params: FloatArray | None = None
        # reused backups of the optimizer's state buffers
        self._state: dict[str, FloatArray] = {}
        # (steps, {name: backup}) of the last save
        self._saved: tuple[int, dict[str, FloatArray]] | None = None

    def step(self, epoch: int, batch: int, value: float) -> bool:
        """The optimizer's step, guarded: False when a non-finite loss ``value`` or
        gradient made it skip (``on_nonfinite="skip"``); raises TrainingDiverged
        otherwise, and when the step itself made a parameter non-finite (undone)."""
        model = self.model
        if not (math.isfinite(value) and _flat.all_finite(model.grads)):
            return self.nonfinite(epoch, batch, value)
        self.save()
        self.optimizer.step()
        if not _flat.all_finite(model.params):
            self.undo()
            raise TrainingDiverged(
                f"epoch {epoch}, batch {batch}: the optimizer step made a parameter "
                "non-finite; the parameters and the optimizer state were restored to the "
                "last finite state")
        return True

    def nonfinite(self, epoch: int, batch: int, value: float) -> bool:
        """A non-finite loss or gradient, no step taken (or undone): False to skip
        it (gradients zeroed), or raise TrainingDiverged."""
        what = f"the loss is {value}" if not math.isfinite(value) else "a gradient is not finite"
        if self.on_nonfinite == "skip":
            self.model.zero_grad()
            return False
        raise TrainingDiverged(
            f"epoch {epoch}, batch {batch}: {what}; the parameters are left at the last "
            "finite state (lower the learning rate, clip gradients, or pass "
            "on_nonfinite='skip')")

    def save(self) -> None:
        """Back up what a step changes: parameters, step count, state buffers."""
        params = self.model.params
        if self._params is None or self._params.shape != params.shape \
                or self._params.dtype != params.dtype:
            self._params = np.empty_like(params)
        np.copyto(self._params, params)
        saved = {}
        for name, buf in self.optimizer.state.items():
            backup = self._state.get(name)
            if backup is None or backup.shape != buf.shape or backup.dtype != buf.dtype:
                backup = self._state[name] = np.empty_like(buf)
            np.copyto(backup, buf)
            saved[name] = backup
        self._saved = (self.optimizer.steps, saved)

    def undo(self) -> None:
        """Restore the last ``save`` in place: the parameters, the step count and every
        state buffer; buffers the undone step created are dropped."""
        assert self._saved is not None and self._params is not None, "undo before save"
        steps, saved = self._saved
        optimizer = self.optimizer
        np.copyto(self.model.params, self._params)
        for name in list(optimizer.state):
            if name in saved:
                np.copyto(optimizer.state[name], saved[name])
            else:
                del optimizer.state[name]
        optimizer.steps = steps
