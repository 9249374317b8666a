"""Learning-rate schedules: each sets ``optimizer.lr`` once per epoch.

Building a schedule sets the learning rate of epoch 0; ``step(metric=None)``, called
at the end of every epoch (the ``LearningRateScheduler`` callback does it), sets the
next epoch's. ``last_lr`` is the rate last set, ``epoch`` the number of ``step()``
calls so far.

``StepLR``, ``ExponentialLR``, ``CosineLR`` and ``LambdaLR`` are closed-form
functions of ``epoch`` and ``base_lr`` (the optimizer's ``lr`` when the schedule was
built): they overwrite whatever rate the optimizer had, so they do not chain.
``ReduceLROnPlateau`` instead scales the optimizer's current rate when the metric
stops improving.

``state_dict()`` is a plain dict of str, int, float, bool and None (it survives
``json.dumps(..., allow_nan=False)``, so it fits a checkpoint's JSON header);
``load_state_dict()`` checks it completely, then restores it and sets the
optimizer's ``lr`` to its ``last_lr``.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

from .. import _validation
from .optimizers import Check, Hyperparameters, Optimizer


def _positive_int(value: object, name: str) -> int:
    return _validation.positive_int(value, name)


def _non_negative_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative integer; got "
                        f"{_validation.describe(value)}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer; got {value}")
    return int(value)


def _positive(value: object, name: str) -> float:
    return _validation.real(value, name, low=0.0, low_open=True)


def _non_negative(value: object, name: str) -> float:
    return _validation.real(value, name, low=0.0)


def _factor(value: object, name: str) -> float:
    return _validation.real(value, name, low=0.0, high=1.0, low_open=True, high_open=True)


def _mode(value: object, name: str) -> str:
    if not isinstance(value, str) or value not in ("min", "max"):
        raise ValueError(f"{name} must be 'min' or 'max'; got {_validation.describe(value)}")
    return value


class Schedule(Hyperparameters):
    """Base class. Subclasses name their hyper-parameters in ``_hyper`` (each with its
    check) and implement ``lr_at(epoch)``, or override ``step``."""

    _hyper: ClassVar[dict[str, Check]] = {}
    # further state_dict entries: name -> check (see ReduceLROnPlateau)
    _state: ClassVar[dict[str, Check]] = {}

    optimizer: Optimizer
    #: the optimizer's ``lr`` when the schedule was built
    base_lr: float
    #: the number of ``step()`` calls so far
    epoch: int
    #: the learning rate last set
    last_lr: float

    def __init__(self, optimizer: Optimizer, **hyper: Any) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a bpcore Optimizer; got "
                            f"{type(optimizer).__name__}")
        if "lr" not in type(optimizer)._hyper:
            raise TypeError(f"optimizer must have a learning rate 'lr'; "
                            f"{type(optimizer).__name__} has none")
        checked = {name: self._hyper[name](value, name) for name, value in hyper.items()}
        base_lr = optimizer.lr
        self._check_combination(checked, base_lr)
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.__dict__.update(checked)
        self.epoch = 0
        self._begin()

    def _check_combination(self, hyper: Mapping[str, Any], base_lr: float) -> None:
        """Raise ValueError when hyper-parameters that are valid alone clash together."""

    def _begin(self) -> None:
        self._set(self.lr_at(0))

    def lr_at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (0 is the epoch before the first ``step()``)."""
        raise NotImplementedError

    def step(self, metric: float | None = None) -> None:
        """End of an epoch: set the next epoch's learning rate (``metric`` is ignored)."""
        self.epoch += 1
        self._set(self.lr_at(self.epoch))

    def _set(self, lr: float) -> None:
        self.optimizer.lr = lr
        self.last_lr = self.optimizer.lr

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, as plain JSON-serializable values."""
        state = {"schedule": type(self).__name__, "hyperparameters": self.hyperparameters,
                 "base_lr": float(self.base_lr), "epoch": int(self.epoch),
                 "last_lr": float(self.last_lr)}
        state.update({name: getattr(self, name) for name in self._state})
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a ``state_dict()``; checked completely before anything changes."""
        keys = {"schedule", "hyperparameters", "base_lr", "epoch", "last_lr", *self._state}
        hyper = _validation.state_dict_hyperparameters(state_dict, "schedule", self,
                                                       self._hyper, keys, exact=True)
        base_lr = _non_negative(state_dict["base_lr"], "state_dict['base_lr']")
        epoch = _non_negative_int(state_dict["epoch"], "state_dict['epoch']")
        last_lr = _non_negative(state_dict["last_lr"], "state_dict['last_lr']")
        extra = {name: check(state_dict[name], f"state_dict[{name!r}]")
                 for name, check in self._state.items()}
        self._check_combination(hyper, base_lr)
        # everything checked: now write
        self.__dict__.update(hyper)
        self.__dict__.update(extra)
        self.base_lr, self.epoch = base_lr, epoch
        self._set(last_lr)


class StepLR(Schedule):
    """``lr = base_lr * gamma ** (epoch // step_size)``: decay by ``gamma`` every
    ``step_size`` epochs (as ``torch.optim.lr_scheduler.StepLR``)."""

    _hyper = {"step_size": _positive_int, "gamma": _positive}

    step_size: int
    gamma: float

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        super().__init__(optimizer, step_size=step_size, gamma=gamma)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(Schedule):
    """``lr = base_lr * gamma ** epoch`` (as ``torch.optim.lr_scheduler.ExponentialLR``)."""

    _hyper = {"gamma": _positive}

    gamma: float

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        super().__init__(optimizer, gamma=gamma)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** epoch


class CosineLR(Schedule):
    """Linear warm-up, then half a cosine from ``base_lr`` down to ``min_lr``.

    With ``W = warmup_epochs`` and ``T = total_epochs``:

    - epochs ``e < W`` climb linearly, ``lr = base_lr * (e + 1) / W``: the first epoch
      runs at ``base_lr / W``, the last warm-up epoch at the full ``base_lr``;
    - epochs ``W <= e <= T`` follow
      ``lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * (e - W) / (T - W))) / 2``,
      which starts at ``base_lr`` again (the peak lasts two epochs) and reaches
      ``min_lr`` at epoch ``T`` (so the last of ``T`` trained epochs, ``T - 1``, runs
      just above it, as torch's convention);
    - after ``T`` the rate stays at ``min_lr`` (torch's ``CosineAnnealingLR`` would
      climb back up).

    Without warm-up this equals ``CosineAnnealingLR(T_max=T, eta_min=min_lr)`` for
    ``e <= T``; with it, torch's ``SequentialLR`` of ``LinearLR(start_factor=1/W,
    total_iters=W-1)`` and ``CosineAnnealingLR(T_max=T-W)`` with milestone ``W``.
    """

    _hyper = {"total_epochs": _positive_int, "warmup_epochs": _non_negative_int,
              "min_lr": _non_negative}

    total_epochs: int
    warmup_epochs: int
    min_lr: float

    def __init__(self, optimizer: Optimizer, total_epochs: int, warmup_epochs: int = 0,
                 min_lr: float = 0.0) -> None:
        super().__init__(optimizer, total_epochs=total_epochs, warmup_epochs=warmup_epochs,
                         min_lr=min_lr)

    def _check_combination(self, hyper: Mapping[str, Any], base_lr: float) -> None:
        if hyper["warmup_epochs"] >= hyper["total_epochs"]:
            raise ValueError(f"warmup_epochs must be below total_epochs="
                             f"{hyper['total_epochs']}; got {hyper['warmup_epochs']}")
        if hyper["min_lr"] > base_lr:
            raise ValueError(f"min_lr must be at most the optimizer's lr {base_lr!r}; "
                             f"got {hyper['min_lr']!r}")

    def lr_at(self, epoch: int) -> float:
        warmup, total = self.warmup_epochs, self.total_epochs
        if epoch < warmup:
            return self.base_lr * (epoch + 1) / warmup
        progress = min(epoch - warmup, total - warmup) / (total - warmup)
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2


class LambdaLR(Schedule):
    """``lr = base_lr * fn(epoch)`` for any callable ``fn`` of the epoch (as
    ``torch.optim.lr_scheduler.LambdaLR``). ``fn`` must return a finite number >= 0.
    ``state_dict()`` cannot hold ``fn``: build the schedule with it again to resume.
    """

    def __init__(self, optimizer: Optimizer, fn: Callable[[int], float]) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be a callable epoch -> factor; got {type(fn).__name__}")
        self.fn = fn
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * _non_negative(self.fn(epoch), f"fn({epoch})")


def _best(value: object, name: str) -> float | None:
    if value is None:
        return None
    return _validation.real(value, name)


class ReduceLROnPlateau(Schedule):
    """Multiply the rate by ``factor`` when the metric has not improved for more than
    ``patience`` epochs (PyTorch's ``ReduceLROnPlateau``, relative threshold mode).

    In ``mode="min"`` a metric improves on the best so far when it is below
    ``best * (1 - threshold)`` (``"max"``: above ``best * (1 + threshold)``). After a
    reduction, ``cooldown`` epochs pass before bad epochs count again. The rate never
    goes below ``min_lr``, and a reduction smaller than ``eps`` is skipped.
    ``step(metric)`` needs the metric; NaN and infinite values count as no
    improvement (torch would take -inf as a new best in ``"min"`` mode).
    """

    _hyper = {"mode": _mode, "factor": _factor, "patience": _non_negative_int,
              "threshold": _non_negative, "cooldown": _non_negative_int,
              "min_lr": _non_negative, "eps": _non_negative}
    _state = {"best": _best, "num_bad_epochs": _non_negative_int,
              "cooldown_counter": _non_negative_int}

    mode: Literal["min", "max"]
    factor: float
    patience: int
    threshold: float
    cooldown: int
    min_lr: float
    eps: float
    #: the best finite metric so far (None before the first)
    best: float | None
    num_bad_epochs: int
    cooldown_counter: int

    def __init__(self, optimizer: Optimizer, mode: Literal["min", "max"] = "min",
                 factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0, eps: float = 1e-8) -> None:
        super().__init__(optimizer, mode=mode, factor=factor, patience=patience,
                         threshold=threshold, cooldown=cooldown, min_lr=min_lr, eps=eps)

    def _begin(self) -> None:
        self.best = None           # no finite metric seen yet
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_lr = self.optimizer.lr

    def _improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best * (1 - self.threshold)
        return value > self.best * (1 + self.threshold)

    def step(self, metric: float | None = None) -> None:
        """End of an epoch with its monitored ``metric`` (e.g. the validation loss)."""
        if metric is None:
            raise TypeError("ReduceLROnPlateau.step needs the monitored metric, "
                            "e.g. step(val_loss); got None")
        if isinstance(metric, bool) or not isinstance(metric, numbers.Real):
            raise TypeError(f"metric must be a real number; got {_validation.describe(metric)}")
        value = float(metric)
        self.epoch += 1
        if self._improves(value):
            self.best, self.num_bad_epochs = value, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            old = self.optimizer.lr
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                self.optimizer.lr = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self.last_lr = self.optimizer.lr
