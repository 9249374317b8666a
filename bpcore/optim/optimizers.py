"""Optimizers over the model's flat buffers (SGD, Adam, AdamW, RMSprop, Rprop) and
their one name registry (``OPTIMIZERS``).

An optimizer owns only its state buffers (created lazily, with the parameters'
length and dtype, at the first step that needs them: only the buffers the current
options use exist) and updates ``model.params`` in place with one
fused kernel pass (src/_flat.pyx). It never zeroes gradients behind the caller's
back: call ``zero_grad()``.

The kernels and the fused step point into the state buffers, so they are never
replaced by an assignment: ``optimizer.state[name] = array`` copies into the buffer
(or a new one), and refuses a name the optimizer does not keep, another shape or a
non-float array; ``optimizer.state = mapping`` does the same for every entry. Each
step checks the buffers it uses against the parameters all the same, and an
optimizer's ``model`` is fixed at construction.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeGuard

import numpy as np

from .. import _aligned, _engine, _flat, _validation
from ..nn import Model

if TYPE_CHECKING:
    from .._typing import FloatArray

#: a hyper-parameter's check: ``check(value, name)`` returns the value to keep or raises
Check = Callable[[Any, str], Any]


class TrainingDiverged(FloatingPointError):
    """The loss, the gradients or the parameters became NaN or infinite (raised by
    ``fit`` and ``bpcore.optim.minimize``, which leave the parameters finite)."""


class StateBuffers(dict[str, Any]):
    """An optimizer's ``state``: its buffers by name, as a dict.

    Reading is a dict's. Assigning an entry copies the array into the buffer of that
    name (a new aligned buffer the first time): a float array of the parameters'
    shape, under a name the optimizer keeps (``Optimizer._buffers``), else
    TypeError/ValueError with nothing changed. ``update``, ``setdefault`` and ``|=``
    assign the same way. Deleting an entry is allowed: the next step that needs the
    buffer starts it afresh (zeros, or Rprop's ``lr``)."""

    __slots__ = ("_optimizer",)

    def __init__(self, optimizer: Optimizer) -> None:
        super().__init__()
        self._optimizer = optimizer

    def __setitem__(self, name: str, value: Any) -> None:
        buffers = type(self._optimizer)._buffers
        if name not in buffers:
            raise ValueError(f"state keys must be among {list(buffers)} (the buffers "
                             f"{type(self._optimizer).__name__} keeps); got {name!r}")
        params = self._optimizer.model.params
        current = self.get(name)
        if _valid_buffer(current, params):
            _validation.copy_into(current, value, f"state[{name!r}]")
        else:   # none yet (or one put in by dict.__setitem__): a new buffer
            fresh = _aligned.empty(params.shape, params.dtype)
            _validation.copy_into(fresh, value, f"state[{name!r}]")
            super().__setitem__(name, fresh)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Assign each entry as ``state[name] = array`` does (checked one by one)."""
        for name, value in dict(*args, **kwargs).items():
            self[name] = value

    def setdefault(self, name: str, default: Any = None) -> Any:
        """``state[name]``, assigned ``default`` first when missing."""
        if name not in self:
            self[name] = default
        return self[name]

    def __ior__(self, other: Any) -> StateBuffers:  # type: ignore[override,misc]
        self.update(other)
        return self

    def copy(self) -> dict[str, Any]:
        """A plain dict of the same buffers (not copies)."""
        return dict(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))      # pickled as a plain dict (Optimizer rebuilds)


def _valid_buffer(buf: object, params: np.ndarray) -> TypeGuard[np.ndarray]:
    """Whether ``buf`` is what the kernels take as a state buffer of ``params``."""
    return (isinstance(buf, np.ndarray) and buf.shape == params.shape
            and buf.dtype == params.dtype and buf.flags.c_contiguous
            and buf.flags.aligned and buf.flags.writeable)


class Hyperparameters:
    """Mixin for objects described by the checked values named in ``_hyper``."""

    _hyper: ClassVar[dict[str, Check]] = {}

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The hyper-parameters as a dict (e.g. ``{'lr': 0.01, 'momentum': 0.9}``)."""
        return {name: getattr(self, name) for name in self._hyper}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({args})"


class Optimizer(Hyperparameters):
    """Base class: ``step()``, ``zero_grad()``, ``state_dict()``, ``load_state_dict()``.

    Subclasses name their hyper-parameters in ``_hyper`` (each with its check) and
    their state buffers in ``_buffers``, and implement ``_update()``.
    """

    _hyper: ClassVar[dict[str, Check]] = {}
    _buffers: ClassVar[tuple[str, ...]] = ()

    #: The update the fused training step runs inside its kernel for this class
    #: ("sgd", "adam"), or None (the step calls ``step()`` after the kernel). Read
    #: from the class's own body only (bpcore.nn.fused.declared_kind): a subclass
    #: that changes the update is not fused unless it declares the kind again.
    fused_kind: ClassVar[str | None] = None

    # The learning rate, which schedules and ``fit``'s logs read: every built-in
    # optimizer has one (``_hyper``); a custom optimizer need not.
    lr: float
    model: Model
    _scalars: _engine.Scalars
    #: the state buffers by name (``state_names()``), created at the first step;
    #: assigning an entry copies into it (``StateBuffers``)
    state: dict[str, FloatArray]

    def __init__(self, model: Model, **hyper: Any) -> None:
        if not isinstance(model, Model):
            raise TypeError(f"model must be a bpcore Model; got {type(model).__name__}")
        # the step count and the scalars the fused step reads (Model.train_step),
        # as C fields: kept current by __setattr__ and load_state_dict
        object.__setattr__(self, "_scalars", _engine.Scalars())
        self.model = model
        self.state = {}
        checked = {name: type(self)._hyper[name](value, name) for name, value in hyper.items()}
        self._check_combination(checked)
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        self._sync_scalars()

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "state":
            value = self._state_from(value)
        elif name == "model" and "model" in self.__dict__:
            raise AttributeError("model is fixed at construction: the optimizer's state "
                                 "buffers are shaped by its parameters; build a new "
                                 "optimizer for another model")
        check = type(self)._hyper.get(name)
        if check is not None:
            value = check(value, name)
            if all(other in self.__dict__ for other in self._hyper):
                self._check_combination({**self.hyperparameters, name: value})
        object.__setattr__(self, name, value)
        if check is not None:
            self._sync_scalars()

    def _state_from(self, mapping: object) -> StateBuffers:
        """``state = mapping``: every entry checked and copied into a new buffer
        (StateBuffers), before the state changes."""
        if not isinstance(mapping, Mapping):
            raise TypeError(f"state must be a mapping of buffer names to arrays; got "
                            f"{_validation.describe(mapping)}")
        state = StateBuffers(self)
        for name, value in mapping.items():
            state[name] = value
        return state

    @property
    def steps(self) -> int:
        """The number of steps taken (``step()`` and ``Model.train_step`` each add
        one); Adam's bias correction reads it. Settable to a non-negative integer."""
        return self._scalars.steps

    @steps.setter
    def steps(self, value: int) -> None:
        self._scalars.steps = _validation.count(value, "steps", _validation.MAX_STEPS)

    # A copy (pickle, copy.deepcopy) holds its own state buffers (aligned afresh) and
    # its own Scalars. Its ``model`` is copied the way the caller copies: deepcopy of
    # (model, optimizer) in one call, or one pickle of both, binds the copy to the
    # copied model (the memo sees the same model); an optimizer copied alone brings
    # a copy of its model with it.
    def __getstate__(self) -> dict[str, Any]:
        state = {name: value for name, value in vars(self).items() if name != "_scalars"}
        state["state"] = dict(self.state)
        state["steps"] = self.steps
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        steps = state.pop("steps")
        object.__setattr__(self, "_scalars", _engine.Scalars())
        for name, value in state.items():
            object.__setattr__(self, name, value)
        # (the buffers' own shape and dtype: the model may not be restored yet when it
        # refers back to this optimizer)
        buffers = StateBuffers(self)
        for name, buf in self.state.items():
            copied = _aligned.empty(buf.shape, buf.dtype)
            copied[...] = buf
            dict.__setitem__(buffers, name, copied)
        object.__setattr__(self, "state", buffers)
        self._sync_scalars()
        self.steps = steps

    @property
    def fused_scalars(self) -> _engine.Scalars:
        """The ``bpcore._engine.Scalars`` this optimizer keeps current for the fused
        training step: its step count and the hyper-parameters the kernel reads
        (see ``bpcore.nn.fused``). One object for the optimizer's whole life."""
        return self._scalars

    def _sync_scalars(self) -> None:
        """Copy the hyper-parameters the fused step reads into ``fused_scalars`` (SGD
        and Adam override this; the others' updates are not fused)."""

    def _check_combination(self, hyper: Mapping[str, Any]) -> None:
        """Raise ValueError when hyper-parameters that are valid alone clash together."""

    def zero_grad(self) -> None:
        """Zero the model's gradients (one fill of its flat gradient buffer)."""
        self.model.zero_grad()

    def _buffers_for(self, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        """The state buffers a step with the hyper-parameters ``hyper`` (a mapping) needs."""
        return self._buffers

    def state_names(self) -> tuple[str, ...]:
        """The names of the state buffers the next step needs, in ``buffers()`` order
        (created lazily by ``_new_buffer``)."""
        return self._buffers_for(vars(self))

    def _new_buffer(self, name: str) -> FloatArray:
        """A fresh state buffer: zeros of the parameters' length and dtype."""
        return _aligned.zeros(self.model.params.shape, self.model.params.dtype)

    def buffers(self) -> tuple[FloatArray, ...]:
        """The state buffers the next step uses, in ``state_names()`` order, created
        now if missing (the first step, or an option switched on since). Each is
        checked against the parameters (ValueError, nothing changed, for one that is
        not a C-contiguous array of their shape and dtype, which only going around
        ``state``'s assignment can put there)."""
        names = self.state_names()
        state, params = self.state, self.model.params
        for name in names:
            buf = state.get(name)
            if buf is not None and not _valid_buffer(buf, params):
                raise ValueError(
                    f"optimizer state[{name!r}] must be a C-contiguous, writeable "
                    f"{params.dtype} array of shape {params.shape}, as model.params; got "
                    f"{_validation.describe(buf)}: assign to it (state[{name!r}] = array "
                    "copies in) instead of replacing the buffer")
        for name in names:
            if name not in state:
                dict.__setitem__(state, name, self._new_buffer(name))
        return tuple(state[name] for name in names)

    if TYPE_CHECKING:
        # what each subclass defines (declared for the type checker only)
        def _update(self) -> None: ...

    def step(self) -> None:
        """Update ``model.params`` in place from ``model.grads``. A training call of
        the model (RuntimeError while another thread trains it or predicts with it)."""
        with self.model._busy.training("optimizer.step"):
            self.buffers()
            self.steps += 1
            try:
                self._update()
            except BaseException:
                self.steps -= 1
                raise

    def state_dict(self) -> dict[str, Any]:
        """A copy of everything needed to resume: type, hyper-parameters, step count, buffers."""
        return {
            "optimizer": type(self).__name__,
            "hyperparameters": self.hyperparameters,
            "steps": self.steps,
            "state": {name: buf.copy() for name, buf in self.state.items()},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a ``state_dict()``; checked completely before anything changes."""
        hyper = _validation.state_dict_hyperparameters(
            state_dict, "optimizer", self, self._hyper,
            ("optimizer", "hyperparameters", "steps", "state"), exact=False)
        self._check_combination(hyper)
        steps = state_dict["steps"]
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0 \
                or steps > _validation.MAX_STEPS:
            raise ValueError(f"state_dict['steps'] must be a non-negative integer at most "
                             f"{_validation.MAX_STEPS}; got {steps!r}")
        buffers = state_dict["state"]
        needed = list(self._buffers_for(hyper))
        if not isinstance(buffers, dict) or not set(buffers) <= set(self._buffers) or \
                (buffers and not set(needed) <= set(buffers)):
            came = (f"keys {sorted(map(repr, buffers))}" if isinstance(buffers, dict)
                    else _validation.describe(buffers))
            others = "" if set(needed) == set(self._buffers) else \
                f" and no names outside {list(self._buffers)}"
            raise ValueError(f"state_dict['state'] must be empty or hold {needed}{others}; "
                             f"got {came}")
        params = self.model.params
        for name, buf in buffers.items():
            buf = np.asarray(buf)
            if buf.shape != params.shape or buf.dtype.kind != "f":
                raise ValueError(f"state_dict['state'][{name!r}] must be a float array of "
                                 f"shape {params.shape}; got {_validation.describe(buf)}")
            _validation.check_finite(buf, f"state_dict['state'][{name!r}]")
        # everything checked: now write
        for name, value in hyper.items():
            object.__setattr__(self, name, value)
        self._sync_scalars()
        self.steps = int(steps)
        state = StateBuffers(self)
        for name, buf in buffers.items():
            copied = _aligned.empty(params.shape, params.dtype)   # a copy, aligned
            copied[...] = buf
            dict.__setitem__(state, name, copied)
        object.__setattr__(self, "state", state)


def _learning_rate(value: object, name: str) -> float:
    return _validation.real(value, name, low=0.0)


def _non_negative(value: object, name: str) -> float:
    return _validation.real(value, name, low=0.0)


def _unit_interval(value: object, name: str) -> float:
    return _validation.real(value, name, low=0.0, high=1.0, high_open=True)


def _positive(value: object, name: str) -> float:
    return _validation.real(value, name, low=0.0, low_open=True)


def _flag(value: object, name: str) -> bool:
    return _validation.flag(value, name)


def _betas(value: object, name: str) -> tuple[float, ...]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair (beta1, beta2); got {value!r}")
    return tuple(_unit_interval(v, f"{name}[{i}]") for i, v in enumerate(value))


def _pair(value: object, name: str, what: str) -> tuple[Any, Any] | list[Any]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair {what}; got {_validation.describe(value)}")
    return value


def _etas(value: object, name: str) -> tuple[float, float]:
    eta_minus, eta_plus = _pair(value, name, "(eta_minus, eta_plus)")
    return (_validation.real(eta_minus, f"{name}[0]", low=0.0, high=1.0,
                             low_open=True, high_open=True),
            _validation.real(eta_plus, f"{name}[1]", low=1.0, low_open=True))


def _step_sizes(value: object, name: str) -> tuple[float, float]:
    low, high = _pair(value, name, "(step_min, step_max)")
    low = _validation.real(low, f"{name}[0]", low=0.0)
    high = _validation.real(high, f"{name}[1]", low=0.0)
    if high < low:
        raise ValueError(f"{name} must be (step_min, step_max) with step_min <= step_max; "
                         f"got ({low!r}, {high!r})")
    return low, high


class SGD(Optimizer):
    """Stochastic gradient descent with PyTorch's rule (dampening 0).

    ``g = grad + weight_decay * p``; with momentum ``buf = momentum * buf + g`` and
    ``g = buf`` (or ``g + momentum * buf`` when ``nesterov``); ``p -= lr * g``.
    """

    _hyper = {"lr": _learning_rate, "momentum": _unit_interval,
              "nesterov": _flag, "weight_decay": _non_negative}
    _buffers = ("momentum_buffer",)
    fused_kind = "sgd"

    momentum: float
    nesterov: bool
    weight_decay: float

    def __init__(self, model: Model, lr: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(model, lr=lr, momentum=momentum, nesterov=nesterov,
                         weight_decay=weight_decay)

    def _check_combination(self, hyper: Mapping[str, Any]) -> None:
        if hyper["nesterov"] and hyper["momentum"] == 0:
            raise ValueError("nesterov=True needs a momentum > 0; got momentum=0.0")

    def _buffers_for(self, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        return self._buffers if hyper["momentum"] else ()   # plain SGD keeps no buffer

    def _sync_scalars(self) -> None:
        s = self._scalars
        s.lr, s.momentum, s.weight_decay, s.nesterov = (self.lr, self.momentum,
                                                        self.weight_decay, self.nesterov)

    def _update(self) -> None:
        model = self.model
        velocity = self.state.get("momentum_buffer", model._empty1)
        _flat.sgd(model.params, model.grads, velocity, self.lr, self.momentum,
                   self.weight_decay, self.nesterov)


class Adam(Optimizer):
    """Adam with PyTorch's rule; ``weight_decay`` adds ``weight_decay * p`` to the
    gradient (L2), it is not AdamW's decoupled decay."""

    _hyper = {"lr": _learning_rate, "betas": _betas, "eps": _positive,
              "weight_decay": _non_negative}
    _buffers = ("exp_avg", "exp_avg_sq")
    fused_kind = "adam"
    #: the pass over the flat buffers (AdamW: the decoupled-decay variant)
    _kernel = staticmethod(_flat.adam)

    betas: tuple[float, float]
    eps: float
    weight_decay: float

    def __init__(self, model: Model, lr: float = 0.001,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(model, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _sync_scalars(self) -> None:
        s = self._scalars
        s.lr, (s.beta1, s.beta2), s.eps, s.weight_decay = (self.lr, self.betas, self.eps,
                                                           self.weight_decay)

    def _update(self) -> None:
        beta1, beta2 = self.betas
        model = self.model
        type(self)._kernel(model.params, model.grads, self.state["exp_avg"],
                           self.state["exp_avg_sq"], self.lr, beta1, beta2, self.eps,
                           self.weight_decay, 1.0 - beta1 ** self.steps,
                           1.0 - beta2 ** self.steps)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), PyTorch's AdamW rule.

    Each step first shrinks the parameters, ``p *= 1 - lr * weight_decay``, then takes
    an Adam step on the plain gradient (no decay term in the moments).
    """

    def __init__(self, model: Model, lr: float = 0.001,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(model, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    _kernel = staticmethod(_flat.adamw)


class RMSprop(Optimizer):
    """RMSprop with PyTorch's rule (no bias correction).

    ``g = grad + weight_decay * p``; ``v = alpha * v + (1 - alpha) * g**2``. When
    ``centered``, ``c = alpha * c + (1 - alpha) * g`` and ``v - c**2`` replaces ``v``
    below, clamped at 0 (rounding can make it negative; torch then gives NaN).
    ``d = sqrt(v) + eps``; with momentum
    ``buf = momentum * buf + g / d`` and ``p -= lr * buf``, else ``p -= lr * g / d``.
    Only the buffers the options need are kept.
    """

    _hyper = {"lr": _learning_rate, "alpha": _unit_interval, "eps": _positive,
              "weight_decay": _non_negative, "momentum": _unit_interval, "centered": _flag}
    _buffers = ("square_avg", "momentum_buffer", "grad_avg")

    alpha: float
    eps: float
    weight_decay: float
    momentum: float
    centered: bool

    def __init__(self, model: Model, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False) -> None:
        super().__init__(model, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         momentum=momentum, centered=centered)

    def _buffers_for(self, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        return (("square_avg",) + (("momentum_buffer",) if hyper["momentum"] else ())
                + (("grad_avg",) if hyper["centered"] else ()))

    def _update(self) -> None:
        model, state = self.model, self.state
        _flat.rmsprop(model.params, model.grads, state["square_avg"],
                       state.get("grad_avg", model._empty1),
                       state.get("momentum_buffer", model._empty1), self.lr, self.alpha,
                       self.eps, self.weight_decay, self.momentum, self.centered)


class Rprop(Optimizer):
    """iRPROP- (Igel & Huesken 2000; FANN's default full-batch method), PyTorch's Rprop.

    Every weight has its own step size, started at ``lr``. Where the gradient keeps
    its sign the step grows by ``etas[1]``, where it flips the step shrinks by
    ``etas[0]`` and that weight rests this step (its remembered gradient is set to 0,
    so the next step neither grows nor shrinks it); every step size is clamped to
    ``step_sizes``. Each weight then moves by its step against the gradient's sign.
    Only signs count: meant for full-batch training.

    Same rule as ``torch.optim.Rprop``'s code, which clamps every step size to both
    bounds each step (the papers and torch's documented algorithm only clamp the
    grown or shrunk ones; the two differ only when ``lr`` lies outside
    ``step_sizes``). ``lr`` matters only when the step sizes are created (the first
    step): changing it later, e.g. by a schedule, does nothing. ``model.grads`` is
    read, never written.
    """

    _hyper = {"lr": _learning_rate, "etas": _etas, "step_sizes": _step_sizes}
    _buffers = ("prev", "step_size")

    etas: tuple[float, float]
    step_sizes: tuple[float, float]

    def __init__(self, model: Model, lr: float = 0.01, etas: tuple[float, float] = (0.5, 1.2),
                 step_sizes: tuple[float, float] = (1e-6, 50.0)) -> None:
        super().__init__(model, lr=lr, etas=etas, step_sizes=step_sizes)

    def _new_buffer(self, name: str) -> FloatArray:
        if name == "step_size":
            return _aligned.full_like(self.model.params, self.lr)
        return super()._new_buffer(name)

    def _update(self) -> None:
        eta_minus, eta_plus = self.etas
        step_min, step_max = self.step_sizes
        model = self.model
        _flat.rprop(model.params, model.grads, self.state["prev"], self.state["step_size"],
                     eta_minus, eta_plus, step_min, step_max)


#: The optimizers ``fit(optimizer=...)`` builds by name, and the only place their
#: names live. Add your own with ``register_optimizer``.
OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW,
                                          "rmsprop": RMSprop, "rprop": Rprop}


def register_optimizer(name: str, cls: type[Optimizer]) -> None:
    """Make ``fit(optimizer=name)`` build ``cls(model)``; ``name`` must be new.

    Subclassing alone never changes what a name means: a user's ``class Adam(bp.Adam)``
    is used only where it is passed or registered under a name of its own.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be an identifier string; got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise TypeError(f"cls must be an Optimizer subclass; got {_validation.describe(cls)}")
    key = name.lower()
    if key in OPTIMIZERS:
        raise ValueError(f"optimizer name {name!r} is taken (by {OPTIMIZERS[key].__name__}); "
                         "choose another")
    OPTIMIZERS[key] = cls


def optimizer_by_name(model: Model, name: str) -> Optimizer:
    """A new optimizer of the registered ``name`` (any case) for ``model``, with its
    default hyper-parameters."""
    cls = OPTIMIZERS.get(name.lower())
    if cls is None:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)} or an Optimizer; "
                         f"got {name!r}")
    return cls(model)
