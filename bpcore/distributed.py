"""Data-parallel training over MPI (mpi4py): the optional extra ``bpcore[mpi]``.

Every rank holds the whole model and a shard of the data. A training step computes
the gradient of the rank's own batch into ``model.grads``, averages it over the ranks
with one in-place ``Allreduce`` of that flat buffer, and applies the same update on
every rank, so the parameters stay identical everywhere::

    from bpcore import distributed as dist

    model = bp.Model([...], seed=dist.rank())       # any start: the broadcast fixes it
    dist.broadcast_parameters(model)
    opt = dist.DistributedOptimizer(bp.Adam(model, lr=1e-3))
    part = dist.shard(len(X))
    model.fit(X[part], y[part], loss="cross_entropy", optimizer=opt, epochs=10)

Run it with ``mpiexec -n 4 python -m mpi4py script.py`` (``-m mpi4py`` aborts every
rank when one raises, instead of leaving the others waiting). Every function takes
``comm=``, any mpi4py intracommunicator; the default is ``MPI.COMM_WORLD``. Importing
``bpcore`` or this module does not import mpi4py: the first call that needs MPI does.
See docs/distributed.md.
"""
from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from . import _validation
from .nn.model import Model
from .optim.optimizers import Optimizer

__all__ = ["DistributedOptimizer", "allgather", "allreduce", "broadcast_optimizer_state",
           "broadcast_parameters", "rank", "shard", "size"]

#: what ``allreduce(op=...)`` accepts
REDUCTIONS = ("sum", "mean", "min", "max")


def _mpi() -> Any:
    """mpi4py's ``MPI`` module, imported now (ImportError naming the extra if absent)."""
    try:
        return importlib.import_module("mpi4py.MPI")
    except ImportError as error:
        raise ImportError("bpcore.distributed needs mpi4py and an MPI library: pip install "
                          "'bpcore[mpi]' (or: pip install mpi4py mpich)") from error


def _comm(comm: object) -> Any:
    """``comm``, or ``MPI.COMM_WORLD`` for None; TypeError for anything that is not an
    mpi4py intracommunicator."""
    MPI = _mpi()
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py intracommunicator (MPI.Intracomm) or None; "
                        f"got {_validation.describe(comm)}")
    return comm


def rank(comm: object = None) -> int:
    """This process's rank in ``comm`` (0 .. size - 1)."""
    return int(_comm(comm).Get_rank())


def size(comm: object = None) -> int:
    """The number of processes in ``comm``."""
    return int(_comm(comm).Get_size())


def shard(n: int, comm: object = None) -> slice:
    """This rank's slice of ``n`` samples: contiguous, in rank order, the first
    ``n % size`` ranks one sample more (as ``np.array_split``). A rank may get an
    empty slice when ``n < size``."""
    n = _validation.count(n, "n", 2**62)
    c = _comm(comm)
    count, extra = divmod(n, c.Get_size())
    r = c.Get_rank()
    start = r * count + min(r, extra)
    return slice(start, start + count + (r < extra))


def _root(root: object, c: Any) -> int:
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) \
            or not 0 <= root < c.Get_size():
        raise ValueError(f"root must be a rank in [0, {c.Get_size() - 1}]; got {root!r}")
    return int(root)


def allgather(value: object, comm: object = None) -> list[Any]:
    """Every rank's ``value`` (any picklable object), in rank order, on every rank."""
    return list(_comm(comm).allgather(value))


def allreduce(array: npt.ArrayLike, op: str = "mean", comm: object = None) -> Any:
    """``array`` combined over the ranks by ``op`` ("sum", "mean", "min" or "max"),
    returned on every rank as a new array (a Python scalar for a scalar). Integers and
    bools are reduced as float64 for "mean". For user metrics: training itself
    reduces the gradient buffer in place (``DistributedOptimizer``)."""
    if op not in REDUCTIONS:
        raise ValueError(f"op must be one of {REDUCTIONS}; got {op!r}")
    c = _comm(comm)
    MPI = _mpi()
    values = np.asarray(array)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"array must hold real numbers or bools; got dtype {values.dtype}")
    if op == "mean" or values.dtype.kind == "b":
        values = values.astype(np.float64)
    send = np.ascontiguousarray(values)
    out = np.empty_like(send)
    mpi_op = {"sum": MPI.SUM, "mean": MPI.SUM, "min": MPI.MIN, "max": MPI.MAX}[op]
    c.Allreduce(send, out, op=mpi_op)
    if op == "mean":
        out /= c.Get_size()
    return out.item() if np.ndim(array) == 0 else out.reshape(values.shape)


def _agree(c: Any, what: str, value: object) -> None:
    """ValueError on every rank when the ranks' ``value`` differ (one allgather)."""
    values = c.allgather(value)
    differ = [r for r, v in enumerate(values) if v != values[0]]
    if differ:
        raise ValueError(f"{what} differs between ranks: rank 0 has {values[0]!r}, rank "
                         f"{differ[0]} has {values[differ[0]]!r}")


def _architecture(model: Model) -> tuple[Any, ...]:
    return (str(model.dtype), model.n_params,
            tuple((layer.n_in, layer.n_out, layer.activation, layer.negative_slope,
                   layer.dropout) for layer in model.layers))


def broadcast_parameters(model: Model, root: int = 0, comm: object = None) -> None:
    """Copy ``root``'s ``model.params`` into every rank's (in place, one ``Bcast``).

    Collective: every rank of ``comm`` calls it. Checks first that every rank holds a
    model of the same layers and dtype (ValueError on every rank, nothing changed)."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a bpcore Model; got {_validation.describe(model)}")
    c = _comm(comm)
    root = _root(root, c)
    _agree(c, "the model's (dtype, n_params, layers)", _architecture(model))
    c.Bcast(model.params, root=root)


def broadcast_optimizer_state(optimizer: Optimizer, root: int = 0,
                              comm: object = None) -> None:
    """Make every rank's ``optimizer`` equal ``root``'s: its hyper-parameters, step
    count and state buffers (the same buffers: those the root's next step needs,
    created on the root now if it has not made them yet; others are dropped).

    Collective. Every rank first checks the root's values against its own optimizer
    (the same class, a model of the same layers, hyper-parameters it accepts), and
    the ranks agree: on any refusal, ValueError on every rank and nothing changed."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a bpcore Optimizer; got "
                        f"{_validation.describe(optimizer)}")
    c = _comm(comm)
    root = _root(root, c)
    plain = optimizer.optimizer if isinstance(optimizer, DistributedOptimizer) else optimizer
    kind = (type(plain).__qualname__, _architecture(optimizer.model))
    header = None
    if c.Get_rank() == root:
        optimizer.buffers()                     # those its next step needs, made now
        names = list(optimizer.state)
        header = (kind, optimizer.hyperparameters, optimizer.steps, names)
    header = c.bcast(header, root=root)
    root_kind, hyper, steps, names = header
    error = None
    if root_kind != kind:
        error = f"the optimizer's class and model differ between ranks: rank {root} has " \
                f"{root_kind!r}, rank {c.Get_rank()} has {kind!r}"
    else:
        try:
            checks = type(plain)._hyper
            checked = {name: checks[name](value, name) for name, value in hyper.items()}
            plain._check_combination(checked)
        except (TypeError, ValueError, KeyError) as refused:
            error = f"rank {c.Get_rank()} refuses rank {root}'s hyper-parameters: {refused}"
    errors = [e for e in c.allgather(error) if e is not None]
    if errors:
        raise ValueError(errors[0])
    if c.Get_rank() != root:
        for name, value in checked.items():
            object.__setattr__(plain, name, value)
        plain._sync_scalars()
        plain.steps = steps
        state = plain.state
        for name in [name for name in state if name not in names]:
            del state[name]
        for name in names:
            if name not in state:
                dict.__setitem__(state, name, plain._new_buffer(name))
    for name in names:
        c.Bcast(optimizer.state[name], root=root)


class DistributedOptimizer(Optimizer):
    """``optimizer`` whose ``step()`` first averages ``model.grads`` over the ranks
    (one in-place ``Allreduce`` of the flat buffer), then runs its update.

    ``DistributedOptimizer(Adam(model))`` returns an instance of a subclass of both
    this class and ``Adam`` that shares the wrapped optimizer's attributes: it is the
    same optimizer in every other respect (hyper-parameters, ``lr`` schedules,
    ``state``, ``steps``, ``state_dict``, checkpoints; ``isinstance(opt, Adam)``), and
    setting a hyper-parameter on either object sets it on both.

    Use it where the optimizer goes: ``opt.step()`` after ``loss_and_grad``,
    ``model.train_step(X, y, loss, opt)`` (the fused forward and backward, the
    reduction, then the update) or ``model.fit(X_shard, y_shard, optimizer=opt)``.
    To clip or inspect the averaged gradient before the update, call
    ``synchronize()`` yourself, then step inside ``skip_synchronize()`` (as
    Horovod's): ``step()`` outside it always reduces.
    """

    __slots__ = ("_wrapped", "_comm", "_skip", "_sum", "_in_place", "_inverse_size")
    #: never fused into the training kernel: the reduction sits between the
    #: backward pass and the update (read from the class's own body)
    fused_kind: ClassVar[str | None] = None
    _classes: ClassVar[dict[type, type]] = {}

    _wrapped: Optimizer
    _comm: Any
    _skip: bool
    _sum: Any            # MPI.SUM and MPI.IN_PLACE, looked up once
    _in_place: Any
    _inverse_size: float  # 1 / the communicator's size

    def __new__(cls, optimizer: Optimizer, comm: object = None) -> DistributedOptimizer:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a bpcore Optimizer; got "
                            f"{_validation.describe(optimizer)}")
        if isinstance(optimizer, DistributedOptimizer):
            raise TypeError("optimizer is already a DistributedOptimizer; wrap the plain "
                            "optimizer once")
        base = type(optimizer)
        sub = DistributedOptimizer._classes.get(base)
        if sub is None:
            sub = type(f"Distributed{base.__name__}", (DistributedOptimizer, base),
                       {"__slots__": (), "__module__": __name__,
                        "__qualname__": f"Distributed{base.__qualname__}",
                        "__doc__": f"{base.__name__} averaged over MPI ranks "
                                   "(bpcore.distributed.DistributedOptimizer)."})
            DistributedOptimizer._classes[base] = sub
        return object.__new__(sub)

    def __init__(self, optimizer: Optimizer, comm: object = None) -> None:
        c = _comm(comm)
        # the wrapped optimizer's own attribute dict, shared: one state, two views
        object.__setattr__(self, "__dict__", optimizer.__dict__)
        object.__setattr__(self, "_wrapped", optimizer)
        object.__setattr__(self, "_comm", c)
        object.__setattr__(self, "_skip", False)
        MPI = _mpi()
        object.__setattr__(self, "_sum", MPI.SUM)
        object.__setattr__(self, "_in_place", MPI.IN_PLACE)
        object.__setattr__(self, "_inverse_size", 1.0 / c.Get_size())

    @property
    def optimizer(self) -> Optimizer:
        """The wrapped optimizer (the same state: it steps without reducing)."""
        return self._wrapped

    @property
    def comm(self) -> Any:
        """The mpi4py communicator the gradients are averaged over."""
        return self._comm

    def synchronize(self, weight: float | None = None) -> None:
        """Average ``model.grads`` over the ranks now, in place (one ``Allreduce``).
        Collective. To update with the averaged (say, clipped) gradient without
        reducing it again, step inside ``skip_synchronize()``.

        ``weight``: this rank's share of the average, for ranks whose batches differ
        in size (for example its rows over the rows of every rank's batch; the shares
        must sum to 1 over the ranks). Default: ``1 / size`` for every rank."""
        grads = self.model.grads
        c = self._comm
        if weight is not None:
            share = _validation.real(weight, "weight", low=0.0)
            if share != 1.0:
                grads *= share
        c.Allreduce(self._in_place, grads, op=self._sum)
        if weight is None:
            size = c.Get_size()
            if size > 1:
                grads *= 1.0 / size

    @contextlib.contextmanager
    def skip_synchronize(self) -> Iterator[None]:
        """``with opt.skip_synchronize(): opt.step()``: the update alone, for
        gradients that ``synchronize()`` already averaged (as Horovod's)."""
        if self._skip:
            raise RuntimeError("skip_synchronize() is already active")
        object.__setattr__(self, "_skip", True)
        try:
            yield
        finally:
            object.__setattr__(self, "_skip", False)

    def step(self) -> None:
        """Average the gradients over the ranks, then the wrapped optimizer's update
        (inside ``skip_synchronize()``: the update alone). Collective."""
        if not self._skip:
            self.synchronize()
        super().step()

    # train_step's kernel folds the average's weight into the gradients it writes
    # (bpcore.nn.fused.prescales): it asks _fused_factor() for the weight, then
    # calls _step_prescaled() instead of step(). Together they are step(), without
    # the pass that scales model.grads after the reduction. The pair holds for
    # classes whose step is this one (a subclass overriding step gets step()).
    _prescaled_step_pair = step

    def _fused_factor(self) -> float:
        """The weight a fused kernel gives this rank's gradients: 1/size, or 1 inside
        ``skip_synchronize()`` (the gradients are then this rank's own)."""
        return 1.0 if self._skip else self._inverse_size

    def _step_prescaled(self) -> None:
        """``step()`` for gradients a fused kernel weighted by ``_fused_factor()``
        (!= 1): their sum over the ranks is the average; then the update. Collective."""
        self._comm.Allreduce(self._in_place, self.model.grads, op=self._sum)
        super().step()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The wrapped optimizer's ``load_state_dict`` (this rank only: to give every
        rank one rank's state, ``broadcast_optimizer_state``)."""
        self._wrapped.load_state_dict(state_dict)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimizer's ``state_dict()`` (loads into a plain one)."""
        return self._wrapped.state_dict()

    def __repr__(self) -> str:
        return f"DistributedOptimizer({self._wrapped!r}, size={self._comm.Get_size()})"

    def __reduce__(self) -> Any:
        raise TypeError("a DistributedOptimizer holds an MPI communicator and does not "
                        "pickle or copy; save or copy its .optimizer (the same state)")


class FitRanks:
    """The collective side of ``fit`` with a ``DistributedOptimizer`` (bpcore.train.loop):
    every method is called by every rank in the same order, so no rank waits alone."""

    def __init__(self, optimizer: DistributedOptimizer) -> None:
        self.comm = optimizer.comm
        self.rank, self.size = int(self.comm.Get_rank()), int(self.comm.Get_size())

    def check(self, error: BaseException | None, what: str, settings: object = None,
              local: object = None) -> list[Any]:
        """One allgather of (error, settings, local): re-raise this rank's error, or
        raise a ValueError naming another rank's, on every rank; then a ValueError when
        the ranks' ``settings`` differ. Returns every rank's ``local``, in rank order.
        So an argument refused on one rank stops every rank."""
        gathered = self.comm.allgather((None if error is None else
                                        f"{type(error).__name__}: {error}", settings, local))
        if error is not None:
            raise error
        failed = [(r, message) for r, (message, _, _) in enumerate(gathered) if message]
        if failed:
            r, message = failed[0]
            raise ValueError(f"rank {r} refused {what} ({message}); every rank stops")
        first = gathered[0][1]
        for r, (_, other, _) in enumerate(gathered):
            if other != first:
                keys = [k for k in first if first[k] != other.get(k)] \
                    if isinstance(first, dict) and isinstance(other, dict) else []
                detail = (f"{keys[0]}: rank 0 has {first[keys[0]]!r}, rank {r} has "
                          f"{other[keys[0]]!r}") if keys else f"rank {r} differs from rank 0"
                raise ValueError(f"{what} differ between ranks ({detail}); every rank "
                                 "must call it with the same settings")
        return [value for _, _, value in gathered]
