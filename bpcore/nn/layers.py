"""Dense layers and the activation registry.

A ``Dense`` layer describes its shape and activation; the ``Model`` it joins owns its
memory and binds the views ``W``, ``b`` (and ``c`` for scaled sigmoid units) into the
model's flat parameter buffer, and ``dW``, ``db`` (``dc``) into the flat gradient buffer.
"""
from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeAlias

import numpy as np

from .. import _validation

if TYPE_CHECKING:
    from .._typing import FloatArray, Model

#: an activation's name: the keys of ACTIVATIONS (change both together)
Activation: TypeAlias = Literal["identity", "sigmoid", "tanh", "relu", "leaky_relu",
                                "scaled_sigmoid"]

# name -> (kernel code, the activation enum of src/_kernels.h; initialisation scheme)
ACTIVATIONS: dict[str, tuple[int, str]] = {
    "identity": (0, "glorot"),
    "sigmoid": (1, "glorot"),
    "tanh": (2, "glorot"),
    "relu": (3, "he"),
    "leaky_relu": (4, "he"),
    # tutorial 000's node: c * sigmoid(w.x + b) with a learnable per-unit scale c
    "scaled_sigmoid": (5, "glorot"),
}


def _bound_view(name: str, buffer: str) -> Any:
    """The property of a layer's view ``name`` into its model's flat ``buffer``.

    Reading gives the view. Assigning copies into it (a float array of its shape,
    else TypeError/ValueError, nothing written): the kernels and the fused step point
    into these views, so they are never rebound (``Dense._bind`` binds them, once)."""
    slot = "_" + name

    def copy_in(layer: Dense, value: Any) -> None:
        view = getattr(layer, slot)
        if view is None:
            why = ("exists for scaled_sigmoid units only" if name in ("c", "dc") and
                   layer.model is not None else
                   "is bound when the layer joins a Model (a view into its "
                   f"{buffer}); this layer has not joined one")
            raise AttributeError(f"{name} {why}")
        _validation.copy_into(view, value, name)

    return property(attrgetter(slot), copy_in,
                    doc=f"This layer's ``{name}``: a view into the model's ``{buffer}`` "
                        "(None before the layer joins a model). Assigning copies in.")


class Dense:
    """A fully connected layer ``a = f(x.W + b)`` with ``W`` of shape (n_in, n_out).

    Parameters
    ----------
    n_in, n_out : int
        Number of input features and of units.
    activation : str
        One of ``identity``, ``sigmoid``, ``tanh``, ``relu``, ``leaky_relu`` or
        ``scaled_sigmoid`` (``c * sigmoid(z)`` with a learnable scale ``c`` per unit,
        initialised to 1). For classification keep the last layer ``identity``: the
        cross-entropy losses take logits.
    negative_slope : float
        Slope of ``leaky_relu`` for negative inputs (PyTorch's default 0.01).
    dropout : float in [0, 1)
        Rate of inverted dropout on this layer's output while training (``forward``
        and ``loss_and_grad`` in training mode); off in ``predict`` and eval mode.

    After the layer joins a ``Model``, ``W``, ``b``, ``c``, ``dW``, ``db``, ``dc`` are
    views into the model's flat ``params``/``grads`` buffers (``c``/``dc`` are None
    unless the activation is ``scaled_sigmoid``). They are never rebound: assigning
    one (``layer.W = array``) copies the array into the view, and refuses another
    shape or a non-float array.
    """

    # the views into the model's buffers: bound by the Model the layer joins (before
    # that, None); typed for a layer in a model, where they are used
    if TYPE_CHECKING:
        W: FloatArray
        b: FloatArray
        dW: FloatArray
        db: FloatArray
        #: the scale of scaled sigmoid units and its gradient (None for other activations)
        c: FloatArray | None
        dc: FloatArray | None
    else:
        W = _bound_view("W", "params")
        b = _bound_view("b", "params")
        c = _bound_view("c", "params")
        dW = _bound_view("dW", "grads")
        db = _bound_view("db", "grads")
        dc = _bound_view("dc", "grads")
    #: the Model the layer belongs to (None until it joins one; then fixed)
    model: Model | None

    def __init__(self, n_in: int, n_out: int, activation: Activation = "identity", *,
                 negative_slope: float = 0.01, dropout: float = 0.0) -> None:
        self.n_in = _validation.positive_int(n_in, "n_in")
        self.n_out = _validation.positive_int(n_out, "n_out")
        if self.n_in * self.n_out + 2 * self.n_out > _validation.MAX_PARAMETERS:
            raise ValueError(f"n_in * n_out must be at most {_validation.MAX_PARAMETERS} "
                             f"parameters, what this machine can address; got n_in="
                             f"{self.n_in} and n_out={self.n_out}")
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}; got {activation!r}"
            )
        self.model = None
        self._activation = activation
        self.negative_slope = negative_slope
        self.dropout = dropout
        # no buffers yet: the views a Model binds (_bind)
        self._W = self._b = self._c = None
        self._dW = self._db = self._dc = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "model" and getattr(self, "model", None) is not None and \
                value is not self.model:
            raise AttributeError("model is fixed once the layer joins one: a layer's "
                                 "tensors are views into that model's buffers; build a "
                                 "new Dense for another model")
        object.__setattr__(self, name, value)

    def _bind(self, attr: str, view: FloatArray) -> None:
        """Bind the view ``attr`` (``"W"``, ``"dW"``, ...) into the model's buffer:
        once, by the Model the layer joins."""
        object.__setattr__(self, "_" + attr, view)

    @property
    def activation(self) -> Activation:
        """The activation's name; fixed at construction (it decides the parameter
        layout: build a new Dense for another)."""
        return self._activation

    @activation.setter
    def activation(self, value: object) -> NoReturn:
        raise AttributeError(f"activation is fixed at construction (it is {self._activation!r});"
                             f" build a new Dense for activation {value!r}")

    @property
    def kind(self) -> int:
        """The activation's code in the kernels."""
        return ACTIVATIONS[self._activation][0]

    @property
    def init(self) -> str:
        """The initialisation scheme: ``'he'`` or ``'glorot'``."""
        return ACTIVATIONS[self._activation][1]

    @property
    def negative_slope(self) -> float:
        """Slope of ``leaky_relu`` for negative inputs; may be changed at any time
        (the model then drops its workspaces, so the last forward's caches too)."""
        return self._negative_slope

    @negative_slope.setter
    def negative_slope(self, value: float) -> None:
        self._negative_slope = _validation.real(value, "negative_slope", low=0.0)
        self._changed()

    @property
    def dropout(self) -> float:
        """Rate of inverted dropout on the output while training; may be changed at
        any time, e.g. switched off for fine-tuning (the model then drops its
        workspaces, so the last forward's caches too)."""
        return self._dropout

    @dropout.setter
    def dropout(self, value: float) -> None:
        self._dropout = _validation.real(value, "dropout", low=0.0, high=1.0,
                                         high_open=True)
        self._changed()

    def _changed(self) -> None:
        # the model's fused steps, predictors and workspaces were built for the old
        # value: drop them (the next call rebuilds them)
        if self.model is not None:
            self.model._reset_passes()

    @property
    def has_scale(self) -> bool:
        """True for scaled sigmoid units, which carry the learnable per-unit ``c``."""
        return self.activation == "scaled_sigmoid"

    @property
    def has_derivative_cache(self) -> bool:
        """True unless the derivative is 1 everywhere (identity without dropout)."""
        return self.activation != "identity" or self.dropout > 0

    def parameter_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """The (name, shape) of each parameter tensor, in flat-buffer order."""
        shapes: list[tuple[str, tuple[int, ...]]] = [("W", (self.n_in, self.n_out)),
                                                     ("b", (self.n_out,))]
        if self.has_scale:
            shapes.append(("c", (self.n_out,)))
        return shapes

    def initialize(self, rng: np.random.Generator) -> None:
        """Fill W (He normal for the ReLU family, Glorot uniform otherwise), b = 0, c = 1."""
        if self.init == "he":
            self.W[...] = rng.normal(0.0, np.sqrt(2.0 / self.n_in), size=self.W.shape)
        else:
            limit = np.sqrt(6.0 / (self.n_in + self.n_out))
            self.W[...] = rng.uniform(-limit, limit, size=self.W.shape)
        self.b[...] = 0
        if self.c is not None:          # scaled sigmoid units
            self.c[...] = 1

    # ------------------------------------------------------------------
    # Per-node views of the last step. Each is a read-only view into the model's
    # workspace (no copy), shape (n_samples, n_out): valid until the next forward
    # (or, for delta and grad_a, the next backward) with the same batch size.
    def _view(self, pick: Callable[..., Any],
              needs_backward: bool = False) -> FloatArray | None:
        # pick(model, workspace, layer index) -> the array: one the checks below
        # guarantee (Z kept by a forward, dL/doutput by a backward)
        model = self.model
        if model is None or model._cache is None:
            return None
        if needs_backward and model._grad_output is None:
            return None
        array = pick(model, model._cache, model.layers.index(self))
        view = array.view()
        view.flags.writeable = False
        return view

    @property
    def z(self) -> FloatArray | None:
        """Pre-activation ``z = x.W + b`` of the last forward (None before any)."""
        return self._view(lambda m, c, i: c.Z[i])

    @property
    def a(self) -> FloatArray | None:
        """Activation ``a = f(z)`` of the last forward (after dropout, if any)."""
        return self._view(lambda m, c, i: c.A[i])

    @property
    def derivative(self) -> FloatArray | None:
        """The cached local derivative ``f'(z)`` (``c*g*(1-g)`` for scaled units; times
        the dropout mask when dropout is on); all ones for the identity."""
        def pick(model, cache, i):
            if cache.D[i].size:
                return cache.D[i]
            return np.broadcast_to(np.ones(1, model.dtype), cache.A[i].shape)
        return self._view(pick)

    @property
    def grad_a(self) -> FloatArray | None:
        """dL/da of the last backward: for a hidden layer, the sum over the units it
        feeds of their delta times the connecting weight (None before a backward)."""
        def pick(model, cache, i):
            return model._grad_output if i == len(model.layers) - 1 else cache.dX[i + 1]
        return self._view(pick, needs_backward=True)

    @property
    def delta(self) -> FloatArray | None:
        """delta = dL/dz = dL/da * f'(z) of the last backward (None before a backward)."""
        def pick(model, cache, i):
            if cache.delta[i].size:
                return cache.delta[i]
            return model._grad_output if i == len(model.layers) - 1 else cache.dX[i + 1]
        return self._view(pick, needs_backward=True)

    def __repr__(self) -> str:
        extra = f", dropout={self.dropout}" if self.dropout else ""
        return f"Dense({self.n_in}, {self.n_out}, activation={self.activation!r}{extra})"
