"""The fit loop: mini-batches, validation, metrics, callbacks and progress, each
step under the divergence guard (inside the fused kernel, or bpcore.train.guard).

``fit`` is deterministic given ``seed``: epoch e shuffles with a generator seeded by
``(seed, e)`` and reseeds the dropout generator of a model with dropout the same way
(``(seed, e, 1)``), so a run
resumed at epoch N (same seed, restored parameters and optimizer state) continues
bit for bit like an uninterrupted one.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from .. import _flat, _validation
from ..nn import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss, PoissonLoss, fused
from ..nn.data import check_data as _check_data
from ..nn.data import check_length as _check_length
from ..nn.data import resolve_loss as _resolve_loss
from ..nn.data import rows as _rows
from ..nn.losses import LossFunction, LossLike
from ..nn.model import Model, register_convenience, training_call
from ..optim import Optimizer, optimizer_by_name
from . import labels as _labels
from . import parallel
from .callbacks import Callback, LambdaCallback
from .guard import NONFINITE, DivergenceGuard
from .metrics import (
                      METRICS,
                      MetricFunction,
                      MetricName,
                      accuracy,
                      on_predicted_values,
                      user_metric,
)
from .progress import ProgressBar

if TYPE_CHECKING:
    from .._typing import ClassWeight, FloatArray, Logs, LogsFunction, ValidationData


class History:
    """What ``fit`` returns: ``history[name]`` is the list of that log per epoch
    (``loss``, ``val_loss``, ``accuracy``, ``val_accuracy``, ``lr``, ...)."""

    def __init__(self, seed: int) -> None:
        #: log name -> its value per epoch
        self.history: dict[str, list[float]] = {}
        #: the epochs recorded
        self.epoch: list[int] = []
        #: the seed of the run (shuffling, dropout)
        self.seed = seed

    def append(self, epoch: int, logs: Logs) -> None:
        """Record one epoch's logs."""
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __getitem__(self, name: str) -> list[float]:
        return self.history[name]

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, logs={sorted(self.history)})"


def _resolve_optimizer(model: Model, optimizer: Optimizer | str) -> Optimizer:
    if isinstance(optimizer, str):
        return optimizer_by_name(model, optimizer)
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an Optimizer or its name; got "
                        f"{type(optimizer).__name__}")
    if optimizer.model is not model:
        raise ValueError("optimizer updates another model; build it with this model")
    return optimizer


def _resolve_metrics(metrics: Iterable[MetricName | MetricFunction], loss: object,
                     classes: npt.NDArray[Any] | None = None
                     ) -> dict[str, Callable[[Any, Any], Any]]:
    resolved: dict[str, Callable[[Any, Any], Any]] = {}
    for metric in metrics:
        if callable(metric):
            resolved[getattr(metric, "__name__", "metric")] = user_metric(metric, loss, classes)
        elif metric in METRICS:
            fn = METRICS[metric]
            if metric == "accuracy" and isinstance(loss, PoissonLoss):
                raise ValueError("metrics: 'accuracy' scores classes, but PoissonLoss "
                                 "predicts rates; use 'mse', 'mae' or 'r2' (on the rate "
                                 "exp(output))")
            if metric == "accuracy" and isinstance(loss, MSELoss):
                fn = lambda output, target: accuracy(output, target, threshold=0.5)  # noqa: E731
            resolved[metric] = on_predicted_values(fn, loss)
        else:
            raise ValueError(f"metrics must be names among {sorted(METRICS)} or callables "
                             f"metric(y_true, y_pred); got {metric!r}")
    return resolved


#: what ``fit(validation_order=...)`` accepts
VALIDATION_ORDERS = ("random", "last")


def split_indices(n: int, n_val: int, seed: int, labels: npt.ArrayLike | None = None
                  ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(train, validation) row indices: ``n_val`` of ``n`` rows drawn at random with a
    generator seeded by ``(seed, 2)``. With ``labels``, stratified: each class keeps
    its share of the validation rows (largest remainders round them to ``n_val``;
    equal remainders are ordered at random)."""
    rng = np.random.default_rng([seed, 2])
    order = rng.permutation(n)
    if labels is None:
        return order[n_val:], order[:n_val]
    labels = np.asarray(labels)[order]
    classes, counts = np.unique(labels, return_counts=True)
    quotas = n_val * counts / n
    take = np.floor(quotas).astype(np.intp)
    short = n_val - int(take.sum())
    shuffled = rng.permutation(classes.size)
    largest = shuffled[np.argsort((take - quotas)[shuffled], kind="stable")]
    take[largest[:short]] += 1
    held = np.zeros(n, dtype=bool)
    for label, count in zip(classes, take):
        held[np.flatnonzero(labels == label)[:count]] = True
    return order[~held], order[held]


def _class_labels(loss: object, y: Any) -> npt.NDArray[Any] | None:
    """The class label of each row for a classifier's loss and target, else None."""
    if isinstance(loss, CrossEntropyLoss):
        return y if y.ndim == 1 else y.argmax(axis=1)
    if isinstance(loss, BCEWithLogitsLoss) and y.shape[1] == 1 \
            and np.all((y == 0) | (y == 1)):
        return y[:, 0]                   # 0/1 labels; soft targets are not classes
    return None


def _class_weights(class_weight: object, y: Any, n_classes: int,
                   classes: npt.NDArray[Any] | None = None) -> FloatArray:
    """Per-sample weights from a {class: weight} dict or "balanced". ``y`` is the
    encoded target (codes); with ``classes`` the dict is keyed by the user's labels."""
    labels = np.asarray(y).reshape(-1) if np.ndim(y) <= 2 and np.size(y) == len(y) else None
    if labels is None or labels.dtype.kind not in "biuf" or not np.all(labels == np.round(labels)):
        raise ValueError("class_weight needs integer class labels (or 0/1 binary targets) as y")
    labels = labels.astype(np.int64)
    k = max(n_classes, int(labels.max()) + 1)
    codes: dict[Any, int] = {}
    if classes is not None:
        k = classes.size
        codes = {label: i for i, label in enumerate(classes.tolist())}
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be a dict or 'balanced'; got {class_weight!r}")
        counts = np.bincount(labels, minlength=k).astype(np.float64)
        per_class = labels.size / (np.count_nonzero(counts) * np.maximum(counts, 1))
        table = np.where(counts > 0, per_class, 0.0)
    elif isinstance(class_weight, dict):
        table = np.ones(k)
        for label, weight in class_weight.items():
            code: int | None
            if classes is not None:
                try:
                    code = codes.get(label)
                except TypeError:            # an unhashable key
                    code = None
                if code is None:
                    raise ValueError(f"class_weight has key {label!r}; keys must be class "
                                     f"labels among {_labels.short(classes)}")
            elif not isinstance(label, (int, np.integer)) or not 0 <= label < k:
                raise ValueError(f"class_weight has key {label!r}; keys must be class labels "
                                 f"in [0, {k - 1}]")
            else:
                code = int(label)
            table[code] = _validation.real(weight, f"class_weight[{label!r}]", low=0.0)
    else:
        raise TypeError(f"class_weight must be a dict or 'balanced'; got "
                        f"{type(class_weight).__name__}")
    return table[labels]


class Trainer:
    """The state of one training run, handed to callbacks."""

    def __init__(self, model: Model, optimizer: Optimizer, loss: Loss | LossFunction, *,
                 batch_size: int, shuffle: bool, seed: int,
                 metrics: dict[str, Callable[[Any, Any], Any]], callbacks: list[Callback],
                 verbose: int, l2: float, accumulate: int, on_nonfinite: str,
                 validation: tuple[FloatArray, Any, FloatArray | None] | None,
                 epochs: int) -> None:
        self.model, self.optimizer, self.loss = model, optimizer, loss
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.metrics, self.callbacks, self.verbose = metrics, callbacks, verbose
        self.l2, self.accumulate, self.on_nonfinite = l2, accumulate, on_nonfinite
        self.validation, self.epochs = validation, epochs
        #: the first epoch of fit (its ``initial_epoch``)
        self.initial_epoch = 0
        self.stop_training = False
        self.history = History(seed)
        self.guard = DivergenceGuard(model, optimizer, on_nonfinite)
        # the optimizer's step count and buffers as the run began (see _fused_step)
        self._start = (optimizer.steps, frozenset(optimizer.state))
        # (X, y, weight, their batches) of the last epoch without shuffling
        self._views: tuple[Any, Any, Any, list[Any]] | None = None
        #: with a DistributedOptimizer: the collective side of the run
        #: (bpcore.distributed.FitRanks), else None
        self.ranks: Any = None
        # with ranks: the steps of an epoch (the most any rank's rows need), and the
        # fused forward and backward (train_step with an optimizer that changes nothing)
        self._steps = 0
        self._no_update: Optimizer | None = None
        # with ranks: an error of on_train_begin, raised at the first epoch's start
        self._pending: Exception | None = None

    @property
    def is_root(self) -> bool:
        """Whether this process reports and writes files: always, except on the ranks
        other than 0 of a distributed run."""
        return self.ranks is None or self.ranks.rank == 0

    def distribute(self, ranks: Any, rows: list[int]) -> None:
        """Make this a data-parallel run over ``ranks`` (``rows``: each rank's training
        rows): every rank starts from rank 0's parameters and optimizer state."""
        from .. import distributed
        from ..optim.minimize import _NoUpdate
        self.ranks = ranks
        self._steps = max(math.ceil(n / self.batch_size) for n in rows)
        # (the optimizer's first: it checks everything, the layers included, on every
        # rank before it changes anything)
        distributed.broadcast_optimizer_state(self.optimizer, comm=ranks.comm)
        distributed.broadcast_parameters(self.model, comm=ranks.comm)
        self._start = (self.optimizer.steps, frozenset(self.optimizer.state))
        if isinstance(self.loss, Loss) and fused.loss_kind(self.loss, False) is not None \
                and not any(layer.dropout for layer in self.model.layers):
            self._no_update = _NoUpdate(self.model)

    def progress(self, epoch: int) -> dict[str, Any]:
        """What a checkpoint needs to resume after ``epoch``."""
        history = {k: [float(v) for v in vals] for k, vals in self.history.history.items()}
        return {"epoch": epoch + 1, "seed": self.seed, "history": history}

    def run_epoch(self, epoch: int, X: FloatArray, y: Any, weight: FloatArray | None) -> Logs:
        model, n, batch_size = self.model, X.shape[0], self.batch_size
        loss, optimizer, callbacks = self.loss, self.optimizer, self.callbacks
        ranks = self.ranks
        # (with ranks, an error here or in on_train_begin is raised on every rank at
        # the epoch's start)
        with parallel.Hold(ranks) as held:
            held.error, self._pending = self._pending, None
            for callback in callbacks:
                callback.on_epoch_begin(self, epoch)
        # (each generator is seeded only where it is drawn from: seeding costs as
        # much as several small steps)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) \
            if self.shuffle else None
        if any(layer.dropout for layer in model.layers):
            # (each rank its own masks, as one process draws for each of its rows)
            model.dropout_rng = np.random.default_rng(
                [self.seed, epoch, 1] if ranks is None else [self.seed, epoch, 1, ranks.rank])
        n_batches = math.ceil(n / batch_size) if ranks is None else self._steps
        bar = ProgressBar(self.epochs, n_batches, self.verbose)
        bar.start_epoch(epoch)
        logs: Logs = {}
        if hasattr(optimizer, "lr"):
            logs["lr"] = float(optimizer.lr)
        if ranks is not None:
            records = parallel.run_steps(self, epoch, X, y, weight, order, bar, held.error)
            return self._end_epoch(epoch, X, y, weight, logs, bar, records)
        total, mass, skipped = 0.0, 0.0, 0
        # the fused step under the guard, in the kernel (None: run the batch the
        # two-call way, see _fused_step)
        guarded = model._guarded_step if self._can_fuse(weight) else None
        group_value = 0.0   # the first non-finite loss of the accumulation group, or 0
        isfinite, live = math.isfinite, bar.live
        # the callbacks that act after a batch (the others are not called per batch)
        batch_callbacks = [c for c in callbacks
                           if type(c).on_batch_end is not Callback.on_batch_end]
        views = self._batch_views(X, y, weight) if order is None else None
        model.train()
        for batch in range(n_batches):
            if views is not None:
                Xb, yb, wb = views[batch]
            else:
                assert order is not None
                index = order[batch * batch_size:(batch + 1) * batch_size]
                Xb, yb = X[index], y[index]
                wb = None if weight is None else weight[index]
            if guarded is not None:
                value = guarded(Xb, yb, loss, optimizer)
                done = True
                if value is None:
                    done, value = self._fused_step(epoch, batch, n_batches, Xb, yb)
            else:
                done, value, group_value = self._two_call_step(
                    epoch, batch, n_batches, Xb, yb, wb, group_value)
            if not done:
                skipped += 1
                continue
            rows = Xb.shape[0]
            if isfinite(value):
                size = float(wb.sum()) if wb is not None else rows
                total += value * size
                mass += size
            if live:
                bar.update(batch, value, rows)
            else:
                bar.samples += rows
            for callback in batch_callbacks:
                callback.on_batch_end(self, batch, {"loss": value})
            if self.stop_training:
                break
        logs["loss"] = total / mass if mass else float("nan")
        if skipped:
            logs["skipped_steps"] = float(skipped)
        return self._end_epoch(epoch, X, y, weight, logs, bar)

    def _end_epoch(self, epoch: int, X: FloatArray, y: Any, weight: FloatArray | None,
                   logs: Logs, bar: ProgressBar,
                   records: npt.NDArray[np.float64] | None = None) -> Logs:
        """The metrics and validation scores, the history and the epoch's callbacks.
        With ranks, the logs are every rank's combined (``records``: the step losses
        of ``parallel.run_steps``), and the ranks agree whether to stop; an error on
        one rank raises on every rank (bpcore.train.parallel)."""
        model, ranks = self.model, self.ranks
        scores: Logs = {}
        val_scores: Logs = {}
        val_rows, val_mass = 0, 0.0
        with parallel.Hold(ranks) as scoring:
            if self.metrics:
                scores = evaluate(model, X, y, metrics=self.metrics.values(),
                                  _names=list(self.metrics), sample_weight=weight,
                                  _fit_loss=False, _encoded=True)
            if self.validation is not None:
                Xv, yv, wv = self.validation
                val_scores = evaluate(model, Xv, yv, loss=self.loss,
                                      metrics=self.metrics.values(),
                                      _names=list(self.metrics), sample_weight=wv,
                                      _encoded=True)
                val_rows = Xv.shape[0]
                val_mass = val_rows if wv is None else float(wv.sum(dtype=np.float64))
        if ranks is not None:
            assert records is not None
            logs.update(parallel.end_epoch(self, scoring.error, records, scores, X.shape[0],
                                           val_scores, val_rows, val_mass))
        else:
            logs.update(scores)
            logs.update({"val_" + k: v for k, v in val_scores.items()})
        self.history.append(epoch, logs)
        model.epochs_trained += 1
        with parallel.Hold(ranks) as calling:
            for callback in self.callbacks:
                callback.on_epoch_end(self, epoch, logs)
        if ranks is not None:
            # a request to stop on one rank (a callback that decides on something of
            # its own) stops every rank at this epoch's end
            self.stop_training = parallel.agree_to_stop(self, calling.error)
        bar.end_epoch(logs)
        return logs

    def begin(self) -> None:
        """The callbacks' ``on_train_begin`` (with ranks, an error waits for the first
        epoch's start, where every rank raises it)."""
        with parallel.Hold(self.ranks) as held:
            for callback in self.callbacks:
                callback.on_train_begin(self)
        self._pending = held.error

    def _batch_views(self, X: FloatArray, y: Any, weight: FloatArray | None
                     ) -> list[tuple[FloatArray, Any, FloatArray | None]]:
        """The batches of an epoch without shuffling, as views (rows in order), made
        once per training run for the same arrays: slicing them anew each epoch
        costs as much as a few small steps."""
        cached = self._views
        if cached is not None and cached[0] is X and cached[1] is y and cached[2] is weight:
            return cached[3]
        size = self.batch_size
        views = [(X[start:start + size], y[start:start + size],
                  None if weight is None else weight[start:start + size])
                 for start in range(0, X.shape[0], size)]
        self._views = (X, y, weight, views)
        return views

    def _two_call_step(self, epoch: int, batch: int, n_batches: int, X: FloatArray, y: Any,
                       weight: FloatArray | None,
                       group_value: float) -> tuple[bool, float, float]:
        """loss_and_grad (+ L2), accumulated over ``accumulate`` batches, then the
        guarded step. Returns (done, loss value, group_value): done is False when a
        non-finite step was skipped; group_value carries the first non-finite loss of
        the accumulation group (else 0) to the group's last batch."""
        model = self.model
        first = batch % self.accumulate == 0
        value, grads = model.loss_and_grad(X, y, self.loss, sample_weight=weight,
                                           accumulate=not first)
        if self.l2:
            for layer in model.layers:
                value += _flat.l2(layer.W.reshape(-1), layer.dW.reshape(-1), self.l2)
        if first or math.isfinite(group_value):
            # every batch of a group counts: a NaN loss on its first batch must stop
            # the step as surely as one on its last
            group_value = value if not math.isfinite(value) else 0.0
        if (batch + 1) % self.accumulate == 0 or batch == n_batches - 1:
            count = batch % self.accumulate + 1
            if count > 1:
                grads *= 1.0 / count
            checked = value if math.isfinite(group_value) else group_value
            if not self.guard.step(epoch, batch, checked):
                return False, value, group_value
        return True, value, group_value

    def _can_fuse(self, weight: FloatArray | None) -> bool:
        """Whether each batch can be one fused ``train_step``: a built-in loss and SGD
        or Adam (whose updates run inside the step, so nothing else runs before the
        guard), no sample weights, L2, accumulation or dropout."""
        return (fused.fuses_whole_step(self.loss, self.optimizer)
                and weight is None and not self.l2 and self.accumulate == 1
                and not any(layer.dropout for layer in self.model.layers))

    def _fused_step(self, epoch: int, batch: int, n_batches: int, X: FloatArray,
                    y: Any) -> tuple[bool, float]:
        """A batch whose fused step did not take its update. ``run_epoch`` runs each
        fused batch as ``Model._guarded_step``: ``train_step`` with the guard inside
        the kernel, which checks the loss and every gradient for NaN/inf and bounds the
        update before taking it, so nothing is copied or undone. When it did not take
        the update (None: nothing changed), the batch comes here and is run again by
        ``_two_call_step``, which raises or skips exactly as without fusion (and
        undoes an update that overflows). Returns ``(done, loss value)``."""
        optimizer = self.optimizer
        steps, names = self._start
        if optimizer.steps == steps:
            # no step taken yet: buffers that the fused step's plan made (zero, as
            # fresh ones) go, as the two-call path leaves none before a step
            for name in [name for name in optimizer.state if name not in names]:
                del optimizer.state[name]
        done, value, _ = self._two_call_step(epoch, batch, n_batches, X, y, None, 0.0)
        return done, value


def _fit_classes(model: Model, loss: Loss | LossFunction, classes: npt.ArrayLike | None,
                 keep: bool) -> npt.NDArray[Any] | None:
    """The classes that fix this fit's encoding, or None to find them from ``y``:
    ``classes=`` checked, or (``keep``, for ``partial_fit``) the model's own."""
    kept = model.classes if keep and _labels.compatible(model.classes, model, loss) else None
    if classes is None:
        return kept
    k = _labels.n_classes(model, loss)
    if k is None:
        raise ValueError("classes names the labels of a classifier: it needs loss "
                         "cross_entropy, or bce on a model with one output; got "
                         f"{_validation.describe(loss)} on a model with {model.n_out} outputs")
    what = ("a one-output bce model" if isinstance(loss, BCEWithLogitsLoss)
            else f"a model with {k} outputs")
    found = _labels.check_classes(classes, k, what)
    if kept is not None and not _labels.same_classes(found, kept):
        raise ValueError(f"classes {_labels.short(found)} differ from the classes "
                         f"{_labels.short(kept)} of the earlier fit (model.classes); "
                         "partial_fit keeps its encoding: call fit to start over")
    return found


def _prepare(model, X, y, *, loss, optimizer, batch_size, shuffle, seed, validation_data,
             validation_split, sample_weight, class_weight, metrics, callbacks, verbose,
             l2, accumulate, on_nonfinite, epochs, initial_epoch=0,
             validation_order="random", classes=None, keep_classes=False):
    """Every argument checked, the data converted: (trainer, X, y, weight). Nothing
    changes before all is checked. With a DistributedOptimizer the checks run in two
    phases, the arguments then the data, each ending in one agreement of the ranks
    (bpcore.train.parallel): a refusal on one rank raises on every rank."""
    ranks = parallel.ranks_of(optimizer)
    with parallel.Hold(ranks) as held:
        args = _arguments(model, y, loss=loss, optimizer=optimizer, batch_size=batch_size,
                          shuffle=shuffle, seed=seed, callbacks=callbacks, verbose=verbose,
                          l2=l2, accumulate=accumulate, on_nonfinite=on_nonfinite,
                          epochs=epochs, initial_epoch=initial_epoch, classes=classes,
                          keep_classes=keep_classes, class_weight=class_weight,
                          distributed=ranks is not None)
    error = held.error
    if ranks is not None:
        settings = None if error is not None else {
            "loss": parallel.named(args["loss"]), "optimizer": type(args["optimizer"]).__name__,
            "batch_size": args["batch_size"], "shuffle": args["shuffle"],
            "seed": None if seed is None else args["seed"], "epochs": args["epochs"],
            "initial_epoch": args["initial_epoch"], "epochs_trained": model.epochs_trained,
            "l2": args["l2"], "on_nonfinite": args["on_nonfinite"],
            "callbacks": parallel.named([type(c) for c in args["callbacks"]]),
            "classes": parallel.named(args["classes"]),
            "metrics": parallel.named(list(metrics) if metrics is not None else None),
            "validation_data": validation_data is not None,
            "validation_split": parallel.named(validation_split),
            "validation_order": parallel.named(validation_order),
            "sample_weight": sample_weight is not None,
            "class_weight": parallel.named(class_weight)}
        local = None if error is not None else (args["labels"], args["seed"])
        every = ranks.check(error, "fit's arguments", settings, local)
        args["seed"] = every[0][1]           # with seed=None: rank 0's draw
        if args["classes"] is None:
            args["classes"] = parallel.union_classes(model, args["loss"],
                                                     [found for found, _ in every])
    loss, optimizer = args["loss"], args["optimizer"]
    with parallel.Hold(ranks) as held:
        trainer, X, y, weight, classes = _prepare_data(
            model, X, y, loss=loss, optimizer=optimizer, batch_size=args["batch_size"],
            shuffle=args["shuffle"], seed=args["seed"], validation_data=validation_data,
            validation_split=validation_split, sample_weight=sample_weight,
            class_weight=class_weight, metrics=metrics, callbacks=args["callbacks"],
            verbose=args["verbose"] if ranks is None or ranks.rank == 0 else 0,
            l2=args["l2"], accumulate=args["accumulate"],
            on_nonfinite=args["on_nonfinite"], epochs=args["epochs"],
            validation_order=validation_order, classes=args["classes"])
    error = held.error
    if ranks is not None:
        settings = None if error is not None else {
            "classes": parallel.named(classes), "validation": trainer.validation is not None,
            "sample_weight": weight is not None, "metrics": list(trainer.metrics)}
        rows = ranks.check(error, "fit's data", settings,
                           None if error is not None else X.shape[0])
        trainer.distribute(ranks, rows)
    trainer.initial_epoch = args["initial_epoch"]
    model.fit_loss = loss
    if not keep_classes or classes is not None:
        model.classes = classes          # fit starts over; partial_fit keeps them
    return trainer, X, y, weight


def _arguments(model, y, *, loss, optimizer, batch_size, shuffle, seed, callbacks, verbose,
               l2, accumulate, on_nonfinite, epochs, initial_epoch, classes, keep_classes,
               class_weight, distributed):
    """fit's arguments checked (not the data): a dict of them resolved, with ``labels``
    (this rank's distinct class labels, for the ranks' classes) when ``distributed``."""
    epochs = _validation.positive_int(epochs, "epochs")
    if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, (int, np.integer)) \
            or not 0 <= initial_epoch <= epochs:
        raise ValueError(f"initial_epoch must be an integer in [0, epochs={epochs}]; "
                         f"got {initial_epoch!r}")
    loss = _resolve_loss(loss)
    optimizer = _resolve_optimizer(model, optimizer)
    shuffle = _validation.flag(shuffle, "shuffle")
    batch_size = _validation.positive_int(batch_size, "batch_size")
    accumulate = _validation.positive_int(accumulate, "accumulate")
    l2 = _validation.real(l2, "l2", low=0.0)
    if on_nonfinite not in NONFINITE:
        raise ValueError(f"on_nonfinite must be one of {NONFINITE}; got {on_nonfinite!r}")
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2; got {verbose!r}")
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None; got {seed!r}")
    callbacks = [c if isinstance(c, Callback) else _wrap_callable(c) for c in callbacks]
    if distributed:
        if accumulate != 1:
            raise ValueError(f"accumulate must be 1 with a DistributedOptimizer (the ranks' "
                             f"batches already add up to one step); got {accumulate}")
        if isinstance(class_weight, str):
            raise ValueError("class_weight='balanced' counts this rank's classes only; with "
                             "a DistributedOptimizer pass a dict of weights")
    # class labels of any kind become codes; the classes are recorded at the end
    classes = _fit_classes(model, loss, classes, keep_classes)
    labels = parallel.labels_of(model, loss, y) if distributed and classes is None else None
    return {"loss": loss, "optimizer": optimizer, "shuffle": shuffle,
            "batch_size": batch_size, "accumulate": accumulate, "l2": l2,
            "on_nonfinite": on_nonfinite, "verbose": verbose, "seed": int(seed),
            "callbacks": callbacks, "epochs": epochs, "initial_epoch": int(initial_epoch),
            "classes": classes, "labels": labels}


def _prepare_data(model, X, y, *, loss, optimizer, batch_size, shuffle, seed,
                  validation_data, validation_split, sample_weight, class_weight, metrics,
                  callbacks, verbose, l2, accumulate, on_nonfinite, epochs,
                  validation_order, classes):
    """The data checked and converted, and the Trainer (nothing of the model changed)."""
    y, classes = _labels.encode_target(model, loss, y, classes)
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (X_val, y_val) or (X_val, y_val, "
                             "sample_weight_val)")
        if classes is not None:
            validation_data = list(validation_data)
            validation_data[1], _ = _labels.encode_target(model, loss, validation_data[1],
                                                          classes, "validation_data y")
    metrics = _resolve_metrics(metrics, loss, classes)

    if class_weight is not None:
        weights = _class_weights(class_weight, y, model.n_out, classes)
        if sample_weight is not None:
            given = _validation.sample_weight(sample_weight, len(weights), np.float64)
            with np.errstate(over="ignore"):
                weights = weights * given
            if not np.isfinite(weights).all():
                raise ValueError("class_weight times sample_weight overflows float64 for "
                                 "some samples; scale the weights down")
        sample_weight = weights
    validation_split = _validation.real(validation_split, "validation_split", low=0.0,
                                        high=1.0, high_open=True)
    if validation_split and validation_data is not None:
        raise ValueError("give validation_data or validation_split, not both")
    X, y, weight = _check_data(model, X, y, loss, sample_weight)
    validation = None
    if validation_order not in VALIDATION_ORDERS:
        raise ValueError(f"validation_order must be one of {VALIDATION_ORDERS}; got "
                         f"{validation_order!r}")
    if validation_split:
        n_val = int(math.floor(X.shape[0] * validation_split))
        if n_val < 1 or n_val >= X.shape[0]:
            raise ValueError(f"validation_split={validation_split} leaves {n_val} validation "
                             f"samples of {X.shape[0]}; each side needs at least one")
        if validation_order == "last":
            train = np.arange(X.shape[0] - n_val)      # the last samples, as given
            held = np.arange(X.shape[0] - n_val, X.shape[0])
        else:
            train, held = split_indices(X.shape[0], n_val, int(seed), _class_labels(loss, y))
        validation = (X[held], _rows(y, held), None if weight is None else weight[held])
        X, y = X[train], _rows(y, train)
        weight = None if weight is None else weight[train]
    elif validation_data is not None:
        Xv, yv, *wv = validation_data
        validation = _check_data(model, Xv, yv, loss, wv[0] if wv else None,
                                 "validation_data X", "validation_data y")
    trainer = Trainer(model, optimizer, loss, batch_size=batch_size, shuffle=shuffle,
                      seed=int(seed), metrics=metrics, callbacks=callbacks,
                      verbose=verbose,
                      l2=l2, accumulate=accumulate, on_nonfinite=on_nonfinite,
                      validation=validation, epochs=epochs)
    return trainer, X, y, weight, classes


def _wrap_callable(fn: object) -> LambdaCallback:
    if not callable(fn):
        raise TypeError(f"callbacks must be Callback objects or callables; got "
                        f"{type(fn).__name__}")
    return LambdaCallback(on_epoch_end=fn)


@training_call("fit")
def fit(model: Model, X: npt.ArrayLike, y: npt.ArrayLike, *, loss: LossLike,
        optimizer: Optimizer | str = "adam", epochs: int = 1, batch_size: int = 32,
        shuffle: bool = True, seed: int | np.integer[Any] | None = None,
        validation_data: ValidationData | None = None, validation_split: float = 0.0,
        sample_weight: npt.ArrayLike | None = None, class_weight: ClassWeight | None = None,
        metrics: Iterable[MetricName | MetricFunction] = (),
        callbacks: Iterable[Callback | LogsFunction] = (), verbose: int = 1, l2: float = 0.0,
        accumulate: int = 1, on_nonfinite: Literal["raise", "skip"] = "raise",
        initial_epoch: int = 0,
        validation_order: Literal["random", "last"] = "random",
        classes: npt.ArrayLike | None = None) -> History:
    """Train ``model`` on (X, y) with mini-batches; return a ``History``.

    Parameters
    ----------
    y : the target. For a classifier's loss (cross_entropy; bce on a one-output
        model), 1-D class labels of any one kind: strings, integers (0..K-1 are
        column indices, as the loss takes them; other integers such as 1..K are
        encoded), integer-valued floats, bools. The classes, sorted, are recorded as
        ``model.classes`` (label ``classes[i]`` is output column ``i``; for bce,
        ``classes[1]`` is the positive class), and ``predict_labels``, metrics,
        ``class_weight`` and ``validation_data`` speak in these labels. Non-integer
        floats, NaN, None and mixed kinds are refused; so are more classes than the
        loss reads off the outputs (K outputs for cross_entropy, 2 for bce), and
        fewer, unless ``classes`` names them all.
    loss : "mse", "cross_entropy", "bce", "poisson", a bpcore Loss, or a callable
        ``loss(output, target) -> (value, grad_output)`` on numpy arrays.
    optimizer : Optimizer bound to ``model``, or a name ("sgd", "adam", ...) for
        one with default hyper-parameters.
    epochs, initial_epoch : train epochs ``initial_epoch .. epochs - 1``.
    batch_size : samples per step (the last batch may be smaller).
    shuffle, seed : reshuffle each epoch; ``seed`` (drawn when None, recorded in
        ``History.seed``) makes shuffling and dropout reproducible.
    validation_data : (X_val, y_val[, sample_weight_val]); or ``validation_split``,
        the fraction of samples held out for validation.
    validation_order : how ``validation_split`` picks its samples: "random" (drawn
        with ``seed``, stratified by class for a classifier's loss with label targets;
        the CLI draws its split the same way) or "last" (the last samples of X, as
        given).
    sample_weight, class_weight : per-sample weights, and per-class weights (a dict
        {label: weight} keyed by the labels of ``y``, or "balanced"); they multiply.
    metrics : names ("accuracy", "mse", "mae", "r2") or callables ``metric(y_true,
        y_pred)`` as scikit-learn's (for a classifier's loss both are labels, the
        user's own as in ``y``; for a Poisson loss the target and the rate
        exp(output); else the target and the output; see ``bpcore.train.metrics``),
        computed after each epoch on the training (and
        validation) data.
    callbacks : Callback objects, or callables ``fn(epoch, logs)`` returning True to stop.
    verbose : 0 silent; 1 a progress bar on a terminal; 2 one line per epoch.
    l2 : adds ``l2/2 * sum(W**2)`` over weight matrices (not biases) to the loss.
    accumulate : batches whose gradients are averaged before each optimizer step.
    on_nonfinite : "raise" (``TrainingDiverged``) or "skip" the step, when the loss
        or a gradient is NaN/inf; either way the parameters (and the optimizer's
        state) keep their last finite values.
    classes : every class label, fixing the encoding (needed when ``y`` lacks some
        labels that are not column indices); sorted as ``model.classes``. A ``fit``
        finds the classes anew; a fit whose target is not labels (probabilities, a
        regression) records ``classes`` or None.

    With a built-in loss (MSELoss, CrossEntropyLoss, BCEWithLogitsLoss, PoissonLoss),
    SGD or Adam, and no sample weights, L2, accumulation or dropout, each batch is one
    fused ``model.train_step``; otherwise ``loss_and_grad`` then ``optimizer.step()``.
    The two give the same numbers (to rounding). The fused step checks the loss and
    every gradient, and bounds its update, before it updates anything; a batch whose
    update it does not take (a NaN/inf, or an update that might overflow) is run
    again the other way, which raises or skips (and undoes an update that made a
    parameter non-finite). After ``fit``, ``model.grads`` holds the last batch's
    gradient (zeros when that batch was skipped).

    With a ``bpcore.distributed.DistributedOptimizer``, each MPI rank passes its own
    shard (any number of rows but zero) and every rank calls ``fit`` with the same
    settings: every rank starts from rank 0's parameters and optimizer state, each
    step's gradient is the mean over the rows of every rank's batch (one reduction),
    the logs are combined over the ranks, only rank 0 prints and writes checkpoints,
    and a refusal on one rank raises on every rank (bpcore.train.parallel); see
    docs/distributed.md.
    """
    trainer, X, y, weight = _prepare(
        model, X, y, loss=loss, optimizer=optimizer, batch_size=batch_size, shuffle=shuffle,
        seed=seed, validation_data=validation_data, validation_split=validation_split,
        sample_weight=sample_weight, class_weight=class_weight, metrics=metrics,
        callbacks=callbacks, verbose=verbose, l2=l2, accumulate=accumulate,
        on_nonfinite=on_nonfinite, epochs=epochs, initial_epoch=initial_epoch,
        validation_order=validation_order, classes=classes)
    trainer.begin()
    for epoch in range(trainer.initial_epoch, trainer.epochs):
        trainer.run_epoch(epoch, X, y, weight)
        if trainer.stop_training:
            break
    for callback in trainer.callbacks:
        callback.on_train_end(trainer)
    return trainer.history


@training_call("partial_fit")
def partial_fit(model: Model, X: npt.ArrayLike, y: npt.ArrayLike, *, loss: LossLike,
                optimizer: Optimizer | str, batch_size: int = 32, shuffle: bool = True,
                seed: int | np.integer[Any] | None = 0,
                validation_data: ValidationData | None = None,
                sample_weight: npt.ArrayLike | None = None,
                class_weight: ClassWeight | None = None,
                metrics: Iterable[MetricName | MetricFunction] = (),
                callbacks: Iterable[Callback | LogsFunction] = (), verbose: int = 0,
                l2: float = 0.0, accumulate: int = 1,
                on_nonfinite: Literal["raise", "skip"] = "raise",
                classes: npt.ArrayLike | None = None) -> Logs:
    """One pass over (X, y): the data given is one epoch. Returns that epoch's logs,
    with ``logs["stop_training"]`` True when a callback (e.g. ``EarlyStopping`` on
    ``validation_data``) asks to stop. Callback state carries over between calls;
    epochs are counted in ``model.epochs_trained``.

    Class labels are encoded as in ``fit``, but the encoding is kept: the first call
    that sees labels records ``model.classes``, and later calls use them (a label
    outside them is a ValueError naming it). A batch may lack classes, so labels
    that are not column indices need ``classes=`` (every label) on the first call;
    given again, it must name the same classes.
    """
    trainer, X, y, weight = _prepare(
        model, X, y, loss=loss, optimizer=optimizer, batch_size=batch_size, shuffle=shuffle,
        seed=seed, validation_data=validation_data, validation_split=0.0,
        sample_weight=sample_weight, class_weight=class_weight, metrics=metrics,
        callbacks=callbacks, verbose=verbose, l2=l2, accumulate=accumulate,
        on_nonfinite=on_nonfinite, epochs=model.epochs_trained + 1, classes=classes,
        keep_classes=True)
    logs = trainer.run_epoch(model.epochs_trained, X, y, weight)
    return dict(logs, stop_training=trainer.stop_training)


def evaluate(model: Model, X: npt.ArrayLike, y: npt.ArrayLike, *,
             loss: LossLike | None = None,
             metrics: Iterable[MetricName | MetricFunction] = (),
             sample_weight: npt.ArrayLike | None = None, batch_size: int | None = None,
             _names: Sequence[str] | None = None, _fit_loss: bool = True,
             _encoded: bool = False) -> Logs:
    """Return ``{"loss": ..., metric: ...}`` for (X, y) without training (no dropout).

    ``loss`` and ``metrics`` as in ``fit``; without ``loss``, the loss of the model's
    last ``fit``/``partial_fit`` (``model.fit_loss``), if any. After a fit on class
    labels, ``y`` holds labels of ``model.classes`` (encoded as ``fit`` does; others
    are a ValueError naming them). ``batch_size`` bounds memory (default: all samples
    at once).
    """
    if loss is None and _fit_loss:
        loss = model.fit_loss
    X = _validation.float_matrix(X, "X", model.dtype, model.n_in)
    n = X.shape[0]
    _check_length(y, n)
    if loss is not None:
        loss = _resolve_loss(loss)
    classes = model.classes if _labels.compatible(model.classes, model, loss) else None
    if classes is not None and not _encoded:
        y, _ = _labels.encode_target(model, loss, y, classes)
    if batch_size is None:
        output = model.predict(X)
    else:
        batch_size = _validation.positive_int(batch_size, "batch_size")
        output = np.concatenate([model.predict(X[i:i + batch_size])
                                 for i in range(0, n, batch_size)])
    logs = {}
    if isinstance(loss, Loss):
        logs["loss"] = loss.value(output, *loss.validate(
            y, output.shape, output.dtype, sample_weight, name="y"))
    elif loss is not None:
        logs["loss"] = float(loss(output, y)[0])
    names: Sequence[str]
    functions: list[Any]     # (given _names: the resolved metrics of fit's Trainer)
    if _names is None:
        metrics = list(metrics)
        resolved = _resolve_metrics(metrics, loss, classes)
        names, functions = list(resolved), list(resolved.values())
        if not isinstance(loss, Loss):
            builtin = [m for m in metrics if isinstance(m, str)]
            if builtin:
                _check_metric_target(y, n, model.n_out, builtin)
    else:
        names, functions = _names, list(metrics)
    for name, fn in zip(names, functions):
        logs[name] = float(fn(output, y))
    return logs


def _check_metric_target(y: Any, n: int, n_out: int, names: Sequence[str]) -> None:
    """``y`` checked for the built-in metrics ``names`` when no bpcore Loss checked
    it: numbers, finite, one row per sample; labels within the outputs for accuracy."""
    array = _validation.as_array(y, "y")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"y must be a real numeric array for the metrics {names}; got "
                        f"dtype {array.dtype}")
    if array.ndim == 0 or len(array) != n:
        raise ValueError(f"y must hold one target per sample of X ({n}); got "
                         f"{_validation.describe(array)}")
    _validation.native_finite(array, np.float64, "y")
    labels = "accuracy" in names and n_out > 1 and array.ndim == 1
    if labels:
        if not np.all(array == np.round(array)) or array.min() < 0 or array.max() >= n_out:
            raise ValueError(f"y labels must be integers in [0, {n_out - 1}] for the "
                             f"{n_out} outputs that accuracy reads; got values in "
                             f"[{array.min()}, {array.max()}]")
    elif array.shape[1:] not in ((), (n_out,)) or (array.ndim == 1 and n_out > 1):
        raise ValueError(f"y must have shape ({n}, {n_out}) like the output"
                         f"{f' or ({n},)' if n_out == 1 else ''} for the metrics {names}; "
                         f"got shape {array.shape}")


register_convenience("fit", fit)
register_convenience("partial_fit", partial_fit)
register_convenience("evaluate", evaluate)
