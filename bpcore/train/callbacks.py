"""Callbacks for the fit loop: early stopping, checkpoints, learning-rate schedules,
and plain user functions that may stop training.

A callback overrides any of the hooks below; each receives the ``Trainer`` (with
``model``, ``optimizer``, ``history`` and a ``stop_training`` flag it may set).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from .. import _validation
from ..checkpoint import save

if TYPE_CHECKING:
    # (Trainer: loop.py imports this module, so it is named through the stub _typing)
    from .._typing import FloatArray, Logs, LogsFunction, Trainer


class Callback:
    """Base class: every hook does nothing."""

    def on_train_begin(self, trainer: Trainer) -> None:
        """Before the first epoch of ``fit`` (not called by ``partial_fit``)."""

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        """Before each epoch."""

    def on_batch_end(self, trainer: Trainer, batch: int, logs: Logs) -> None:
        """After each optimizer step; ``logs`` holds the batch ``loss``."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Logs) -> None:
        """After each epoch; ``logs`` holds the epoch's losses and metrics."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last epoch of ``fit``."""


def _mode_for(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max'; got {mode!r}")
    if mode == "auto":
        return "max" if monitor.endswith(("accuracy", "r2")) else "min"
    return mode


def _monitored(logs: Mapping[str, float], monitor: str, who: str) -> float:
    if monitor not in logs:
        raise ValueError(f"{who} monitors {monitor!r} but the epoch logs hold "
                         f"{sorted(logs)}; pass validation data or the metric to fit")
    return logs[monitor]


class _Monitor:
    """Tracks the best value of a monitored quantity."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a log name such as 'val_loss'; got {monitor!r}")
        self.monitor = monitor
        self.mode = _mode_for(monitor, mode)
        self.min_delta = _validation.real(min_delta, "min_delta", low=0.0)
        self.best: float | None = None

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs; with ``restore_best_weights`` the parameters of the best
    epoch are put back when training stops or ends.

    Works with ``fit`` and with repeated ``partial_fit`` calls (its state carries
    over between calls; ``fit`` resets it at the start). ``mode`` "auto" maximises
    names ending in accuracy or r2 and minimises everything else.
    """

    #: epochs since the last improvement
    wait: int
    best_epoch: int | None
    stopped_epoch: int | None
    #: a copy of the parameters of the best epoch (with ``restore_best_weights``)
    best_params: FloatArray | None

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: Literal["auto", "min", "max"] = "auto",
                 restore_best_weights: bool = True) -> None:
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.patience = _validation.positive_int(patience, "patience")
        self.restore_best_weights = _validation.flag(restore_best_weights,
                                                     "restore_best_weights")
        self.reset()

    @property
    def best(self) -> float | None:
        """The best monitored value so far (None before the first epoch)."""
        return self._monitor.best

    def reset(self) -> None:
        """Forget the history (``fit`` calls this before its first epoch)."""
        self._monitor.best = None
        self.wait = 0
        self.best_epoch = None
        self.stopped_epoch = None
        self.best_params = None

    def on_train_begin(self, trainer: Trainer) -> None:
        self.reset()

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Logs) -> None:
        value = _monitored(logs, self._monitor.monitor, "EarlyStopping")
        if self._monitor.improved(value):
            self._monitor.best = value
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best_weights:
                params = trainer.model.params
                if self.best_params is None:
                    self.best_params = np.empty_like(params)
                np.copyto(self.best_params, params)
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            trainer.stop_training = True
            self._restore(trainer)

    def on_train_end(self, trainer: Trainer) -> None:
        self._restore(trainer)

    def _restore(self, trainer: Trainer) -> None:
        if self.restore_best_weights and self.best_params is not None:
            np.copyto(trainer.model.params, self.best_params)


class ModelCheckpoint(Callback):
    """Save the model (and the optimizer's state and the training progress) to
    ``path`` after each epoch, atomically; with ``save_best_only`` only when
    ``monitor`` improved. Resume with ``bpcore.checkpoint.load_checkpoint(path)`` and
    ``fit(..., optimizer=checkpoint.optimizer, initial_epoch=progress['epoch'],
    seed=progress['seed'])``. In a distributed run only rank 0 writes (its
    ``trainer.is_root``): every rank holds the same parameters."""

    def __init__(self, path: str | os.PathLike[str], monitor: str = "val_loss",
                 save_best_only: bool = False, mode: Literal["auto", "min", "max"] = "auto",
                 save_optimizer: bool = True) -> None:
        self.path = path
        self._monitor = _Monitor(monitor, mode, 0.0)
        self.save_best_only = _validation.flag(save_best_only, "save_best_only")
        self.save_optimizer = _validation.flag(save_optimizer, "save_optimizer")

    def on_train_begin(self, trainer: Trainer) -> None:
        self._monitor.best = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Logs) -> None:
        if self.save_best_only:
            value = _monitored(logs, self._monitor.monitor, "ModelCheckpoint")
            if not self._monitor.improved(value):
                return
            self._monitor.best = value
        if not trainer.is_root:
            return
        save(self.path, trainer.model,
             optimizer=trainer.optimizer if self.save_optimizer else None,
             progress=trainer.progress(epoch))


class SupportsStep(Protocol):
    """A learning-rate schedule: ``step(metric)`` at the end of each epoch (as the
    schedules of ``bpcore.optim.schedules``)."""

    def step(self, metric: float | None = None) -> object: ...


class LearningRateScheduler(Callback):
    """Update the learning rate after every epoch.

    ``schedule`` is a schedule object from ``bpcore.optim.schedules`` (its ``step`` gets
    the epoch's ``monitor`` value, which reduce-on-plateau uses) or any callable
    ``epoch -> lr`` (called with the number of the next epoch, counting from 0).
    """

    def __init__(self, schedule: SupportsStep | Callable[[int], float],
                 monitor: str = "val_loss") -> None:
        if not (hasattr(schedule, "step") or callable(schedule)):
            raise TypeError("schedule must be a bpcore schedule or a callable epoch -> lr; "
                            f"got {type(schedule).__name__}")
        self.schedule = schedule
        self.monitor = monitor

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        if not hasattr(self.schedule, "step"):
            trainer.optimizer.lr = self.schedule(epoch)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Logs) -> None:
        if hasattr(self.schedule, "step"):
            self.schedule.step(logs.get(self.monitor))


class LambdaCallback(Callback):
    """Call ``on_epoch_end(epoch, logs)`` and/or ``on_batch_end(batch, logs)``; a
    truthy return value stops training. A plain callable in ``fit(callbacks=[...])``
    is wrapped as ``LambdaCallback(on_epoch_end=fn)``."""

    def __init__(self, on_epoch_end: LogsFunction | None = None,
                 on_batch_end: LogsFunction | None = None) -> None:
        for name, fn in (("on_epoch_end", on_epoch_end), ("on_batch_end", on_batch_end)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable; got {type(fn).__name__}")
        self._epoch_fn, self._batch_fn = on_epoch_end, on_batch_end

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Logs) -> None:
        if self._epoch_fn is not None and self._epoch_fn(epoch, logs):
            trainer.stop_training = True

    def on_batch_end(self, trainer: Trainer, batch: int, logs: Logs) -> None:
        if self._batch_fn is not None and self._batch_fn(batch, logs):
            trainer.stop_training = True
