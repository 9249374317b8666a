"""The distributed side of ``fit`` (a ``bpcore.distributed.DistributedOptimizer``).

Every rank runs the same sequence of collective calls whatever its own data does, so
that no rank is left waiting in one that another never reaches:

- **the arguments**: each rank checks its own, then one allgather carries every
  rank's refusal (or none), its settings and the class labels of its shard. A refusal
  anywhere raises on every rank before anything changes; settings that differ raise
  too. Then the data is checked, and one more allgather agrees on it;
- **each epoch's start**: one allgather of every rank's step masses (its rows, or
  sample weight, per step), with any error of its ``on_epoch_begin`` callbacks;
- **each step**: the one ``Allreduce`` of the gradient;
- **each epoch's end**: one allgather of the step losses and the scores, and one of
  the callbacks' errors and stop requests.

The loop itself (bpcore.train.loop) calls these at those points.
"""
from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .. import _flat
from ..nn.data import rows as _rows
from .callbacks import Callback

if TYPE_CHECKING:
    from .._typing import FloatArray, Logs, Model
    from .progress import ProgressBar

# (a bpcore.train.loop.Trainer: typed loosely, as loop imports this module)
Trainer = Any


class Hold:
    """``with hold:`` keeps an Exception raised in the block in ``hold.error`` when
    there are ranks (it is raised on every rank at their next agreement, ``check``);
    without ranks it propagates as usual."""

    def __init__(self, ranks: Any) -> None:
        self.ranks = ranks
        self.error: Exception | None = None

    def __enter__(self) -> Hold:
        return self

    def __exit__(self, kind: object, value: BaseException | None, traceback: object) -> bool:
        if self.ranks is None or not isinstance(value, Exception):
            return False
        self.error = self.error or value
        return True


def ranks_of(optimizer: object) -> Any:
    """The collective side of fit (bpcore.distributed.FitRanks) for a
    DistributedOptimizer, else None (bpcore.distributed is never imported here: an
    optimizer can only be one when it is)."""
    distributed = sys.modules.get("bpcore.distributed")
    if distributed is None or not isinstance(optimizer, distributed.DistributedOptimizer):
        return None
    return distributed.FitRanks(optimizer)


def named(value: object) -> object:
    """A setting as the ranks compare it: a function or an object by its class and
    name (never an address), numbers and strings as they are."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [named(item) for item in value]
    if isinstance(value, dict):
        return sorted((repr(key), named(item)) for key, item in value.items())
    if isinstance(value, np.ndarray):
        return value.tolist()
    reduction = getattr(value, "reduction", None)
    name = getattr(value, "__qualname__", None) or type(value).__qualname__
    return f"{name}(reduction={reduction})" if reduction is not None else name


def labels_of(model: Model, loss: object, y: Any) -> npt.NDArray[Any] | None:
    """The distinct class labels in this rank's ``y`` when ``loss`` reads classes and
    ``y`` is 1-D labels, else None (this rank's own encode refuses what is wrong)."""
    from . import labels as _labels
    if _labels.n_classes(model, loss) is None:
        return None
    try:
        array = y if isinstance(y, np.ndarray) else np.asarray(y)
        if array.ndim != 1 or not array.size:
            return None
        return np.unique(_labels.label_array(y, "y"))
    except (TypeError, ValueError):
        return None


def union_classes(model: Model, loss: object,
                  found: list[npt.NDArray[Any] | None]) -> npt.NDArray[Any] | None:
    """The classes that one process would find in every rank's labels together (a
    shard may lack some), or None when some rank's target is not labels."""
    from . import labels as _labels
    arrays = [values for values in found if values is not None]
    if not found or len(arrays) != len(found):
        return None
    try:
        union: npt.NDArray[Any] = np.unique(np.concatenate(arrays))
        _, classes = _labels.encode_target(model, loss, union, None)
    except (TypeError, ValueError):
        return None          # labels of different kinds: each rank's encode says so
    return classes


def start_epoch(trainer: Trainer, error: Exception | None, X: FloatArray,
                weight: FloatArray | None, order: npt.NDArray[np.intp] | None
                ) -> tuple[list[tuple[npt.NDArray[np.intp], FloatArray | None]],
                           npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """This rank's batches of the epoch (row indices, weights), their masses (rows or
    sample weight), and every rank's masses summed per step; ``error`` (of this rank's
    ``on_epoch_begin`` callbacks) raises on every rank."""
    size, n = trainer.batch_size, X.shape[0]
    batches = []
    for step in range(trainer._steps):
        index = (order[step * size:(step + 1) * size] if order is not None
                 else np.arange(min(step * size, n), min((step + 1) * size, n)))
        batches.append((index, None if weight is None else weight[index]))
    masses = np.array([index.size if w is None else float(w.sum(dtype=np.float64))
                       for index, w in batches], dtype=np.float64)
    every = trainer.ranks.check(error, "the epoch's start", None, masses)
    totals = np.zeros_like(masses)
    for rank_masses in every:         # in rank order: the same sums on every rank
        totals += rank_masses
    return batches, masses, totals


def run_steps(trainer: Trainer, epoch: int, X: FloatArray, y: Any,
              weight: FloatArray | None, order: npt.NDArray[np.intp] | None,
              bar: ProgressBar, error: Exception | None) -> npt.NDArray[np.float64]:
    """An epoch's steps on this rank. Returns, per step, (this rank's loss or NaN, its
    mass, the L2 penalty, 1 taken / -1 skipped by the guard / 0 no rank had a
    sample): ``end_epoch`` combines the ranks' losses.

    Every rank takes the same number of steps; a rank whose rows run out first takes
    the rest with empty batches. Each step's gradient is the mean over the rows of
    every rank's batch together: this rank's mean gradient is weighted by its share
    of the step's rows (or sample weight) in the one reduction (for
    ``reduction="sum"``, the ranks' sums add up). The L2 term is added after the
    reduction (the same on every rank, so counted once)."""
    model, loss, optimizer = trainer.model, trainer.loss, trainer.optimizer
    batches, masses, totals = start_epoch(trainer, error, X, weight, order)
    summed = getattr(loss, "reduction", "mean") == "sum"
    records = np.zeros((len(batches), 4))
    batch_callbacks = [c for c in trainer.callbacks
                       if type(c).on_batch_end is not Callback.on_batch_end]
    dist: Any = optimizer              # a DistributedOptimizer
    model.train()
    for step, (index, w) in enumerate(batches):
        mass = masses[step]
        if totals[step] == 0:
            continue                   # no rank has a sample (of positive weight)
        share = 0.0 if mass == 0 else 1.0 if summed else mass / totals[step]
        value = math.nan
        if mass > 0:
            value = local_gradient(trainer, X[index], _rows(y, index), w)
        else:
            model.zero_grad()
        dist.synchronize(weight=share)
        penalty = 0.0
        if trainer.l2:
            for layer in model.layers:
                penalty += _flat.l2(layer.W.reshape(-1), layer.dW.reshape(-1), trainer.l2)
        # the reduced gradient decides for every rank (a non-finite loss on a rank
        # made it NaN), and so does the penalty (the same weights everywhere)
        checked = penalty if not math.isfinite(penalty) else \
            value if mass > 0 and not math.isfinite(value) else 0.0
        with dist.skip_synchronize():
            done = trainer.guard.step(epoch, step, checked)
        records[step] = (value, mass, penalty, 1.0 if done else -1.0)
        if not done:
            continue
        shown = value + penalty
        bar.update(step, shown if math.isfinite(shown) else 0.0, index.size)
        for callback in batch_callbacks:
            callback.on_batch_end(trainer, step, {"loss": shown})
    return records


def local_gradient(trainer: Trainer, X: FloatArray, y: Any,
                   weight: FloatArray | None) -> float:
    """This rank's batch loss, its gradient in ``model.grads``; a non-finite loss
    makes the gradient NaN, so that the reduction carries it to every rank."""
    model = trainer.model
    if trainer._no_update is not None and weight is None:
        value = model.train_step(X, y, trainer.loss, trainer._no_update, keep_grads=True)
    else:
        value, _ = model.loss_and_grad(X, y, trainer.loss, sample_weight=weight)
    if not math.isfinite(value):
        model.grads.fill(math.nan)
    return float(value)


def end_epoch(trainer: Trainer, error: Exception | None, records: npt.NDArray[np.float64],
              scores: Logs, rows: int, val_scores: Logs, val_rows: int,
              val_mass: float) -> Logs:
    """The epoch's logs from every rank's (one allgather): the training loss as one
    process on the union of each step's batches would log it, ``skipped_steps``, and
    the scores averaged (the losses weighted by each rank's sample weight or summed
    for ``reduction="sum"``, the metrics by its samples). ``error`` (this rank's, while
    scoring) raises on every rank."""
    summed = getattr(trainer.loss, "reduction", "mean") == "sum"
    every = trainer.ranks.check(error, "the epoch's scores", None,
                                (records, scores, rows, val_scores, val_rows, val_mass))
    logs: Logs = {}
    total = mass = 0.0
    skipped = 0
    for step in range(records.shape[0]):
        if records[step, 3] != 1:      # (the same on every rank)
            skipped += records[step, 3] == -1
            continue
        values = [(r[0][step, 0], r[0][step, 1]) for r in every if r[0][step, 1] > 0]
        step_mass = sum(m for _, m in values)
        if summed:
            value = sum(v for v, _ in values)
        else:
            value = sum(v * m for v, m in values) / step_mass
        value += records[step, 2]
        if math.isfinite(value):
            total += value * step_mass
            mass += step_mass
    logs["loss"] = total / mass if mass else float("nan")
    if skipped:
        logs["skipped_steps"] = float(skipped)
    logs.update(_averaged(every, 1, 2, None, summed))
    logs.update({"val_" + k: v for k, v in _averaged(every, 3, 4, 5, summed).items()})
    return logs


def _averaged(every: list[Any], at: int, rows_at: int, mass_at: int | None,
              summed: bool) -> Logs:
    """The scores at ``every[r][at]`` averaged over the ranks: a loss weighted by each
    rank's mass (or summed for ``reduction="sum"``), a metric by its rows."""
    names = list(every[0][at])
    out: Logs = {}
    for name in names:
        if name == "loss":
            if summed:
                out[name] = float(sum(r[at][name] for r in every))
                continue
            weights = [r[mass_at if mass_at is not None else rows_at] for r in every]
        else:
            weights = [r[rows_at] for r in every]
        out[name] = float(sum(r[at][name] * w for r, w in zip(every, weights))
                          / sum(weights))
    return out


def agree_to_stop(trainer: Trainer, error: Exception | None) -> bool:
    """Whether any rank's callbacks asked to stop (one allgather); ``error`` (of this
    rank's callbacks) raises on every rank."""
    return any(trainer.ranks.check(error, "the epoch's callbacks", None,
                                   trainer.stop_training))
