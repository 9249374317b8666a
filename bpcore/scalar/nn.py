"""A small neural-network library on scalar ``Value``s that mirrors bpcore's Model.

``Neuron`` computes ``f(w . x + b)`` — or tutorial 000's ``c * sigmoid(w . x + b)`` with a
learnable ``c`` — with the activation names of ``bpcore.nn.layers.ACTIVATIONS``. ``Layer``
and ``MLP`` stack them; ``MLP.from_model(model)`` copies a Cython ``Model``'s weights
and ``MLP.parameters()`` lists the Values in the order of ``model.params``, so the two
engines can be compared number for number. The losses take logits (Poisson's:
log-rates) and follow ``bpcore.nn.losses``' reductions; the classifiers' losses in forms
that never overflow. Plain Python: no numpy.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, cast

from .engine import Value

#: an activation's name: the keys of ACTIVATIONS (bpcore.nn.layers.Activation's names;
#: the scalar engine imports nothing of the rest of bpcore)
Activation = Literal["identity", "sigmoid", "tanh", "relu", "leaky_relu", "scaled_sigmoid"]

# name -> f(z, neuron); the same names and conventions as bpcore's kernels
ACTIVATIONS: dict[str, Callable[[Value, Any], Value]] = {
    "identity": lambda z, unit: z,
    "sigmoid": lambda z, unit: z.sigmoid(),
    "tanh": lambda z, unit: z.tanh(),
    "relu": lambda z, unit: z.relu(),
    "leaky_relu": lambda z, unit: z.leaky_relu(unit.negative_slope),
    "scaled_sigmoid": lambda z, unit: unit.c * z.sigmoid(),     # tutorial 000's node
}


class Neuron:
    """One unit: ``w`` (n_in Values), ``b`` and, for ``scaled_sigmoid``, ``c``.

    Initialised like bpcore's Dense: He normal for the ReLU family, Glorot uniform
    otherwise (with ``n_out`` the width of the unit's layer), b = 0, c = 1.
    """

    def __init__(self, n_in: int, activation: Activation = "identity", *,
                 negative_slope: float = 0.01, n_out: int = 1,
                 rng: random.Random | int | None = None) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}; "
                             f"got {activation!r}")
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        if activation in ("relu", "leaky_relu"):
            self.w = [Value(rng.gauss(0.0, math.sqrt(2.0 / n_in))) for _ in range(n_in)]
        else:
            limit = math.sqrt(6.0 / (n_in + n_out))
            self.w = [Value(rng.uniform(-limit, limit)) for _ in range(n_in)]
        self.b = Value(0.0)
        self.c = Value(1.0) if activation == "scaled_sigmoid" else None
        self.activation = activation
        self.negative_slope = float(negative_slope)

    def __call__(self, x: Sequence[Value | float]) -> Value:
        """Return the unit's output Value for one sample ``x`` (numbers or Values)."""
        z = sum((wi * xi for wi, xi in zip(self.w, x)), Value(0.0)) + self.b
        return ACTIVATIONS[self.activation](z, self)

    def parameters(self) -> list[Value]:
        return self.w + [self.b] + ([self.c] if self.c is not None else [])


class Layer:
    """``n_out`` neurons reading the same ``n_in`` inputs (bpcore's ``Dense``)."""

    def __init__(self, n_in: int, n_out: int, activation: Activation = "identity", *,
                 negative_slope: float = 0.01, seed: int | None = None) -> None:
        rng = random.Random(seed)
        self.n_in, self.n_out, self.activation = n_in, n_out, activation
        self.neurons = [Neuron(n_in, activation, negative_slope=negative_slope,
                               n_out=n_out, rng=rng) for _ in range(n_out)]

    def __call__(self, x: Sequence[Value | float]) -> list[Value]:
        return [unit(x) for unit in self.neurons]

    def parameters(self) -> list[Value]:
        """W row by row (W[i][j] is input i's weight in unit j), then b, then c."""
        units = self.neurons
        params = [unit.w[i] for i in range(self.n_in) for unit in units]
        params += [unit.b for unit in units]
        if units[0].c is not None:
            params += [unit.c for unit in units if unit.c is not None]
        return params

    def load(self, W: Sequence[Sequence[float]], b: Sequence[float],
             c: Sequence[float] | None = None) -> None:
        """Write weights into the existing Values: W as n_in rows of n_out numbers."""
        for j, unit in enumerate(self.neurons):
            for i in range(self.n_in):
                unit.w[i].data = float(W[i][j])
            unit.b.data = float(b[j])
            if unit.c is not None:          # a scaled unit: c must be given
                unit.c.data = float(cast("Sequence[float]", c)[j])


class MLP:
    """A stack of ``Layer``s; ``mlp(x)`` runs one sample, ``mlp.forward(rows)`` a batch."""

    def __init__(self, layers: Iterable[Layer]) -> None:
        self.layers = list(layers)
        for i in range(len(self.layers) - 1):
            if self.layers[i].n_out != self.layers[i + 1].n_in:
                raise ValueError(f"layers[{i}] has n_out={self.layers[i].n_out} but "
                                 f"layers[{i + 1}] has n_in={self.layers[i + 1].n_in}")

    @classmethod
    def from_model(cls, model: Any) -> MLP:
        """An MLP with the weights, activations and slopes of a bpcore ``Model``."""
        layers = []
        for i, dense in enumerate(model.layers):
            if dense.dropout:
                raise ValueError(f"layers[{i}] has dropout={dense.dropout}; the scalar "
                                 "MLP mirrors networks without dropout only")
            layer = Layer(dense.n_in, dense.n_out, dense.activation,
                          negative_slope=dense.negative_slope)
            layer.load(dense.W.tolist(), dense.b.tolist(),
                       None if dense.c is None else dense.c.tolist())
            layers.append(layer)
        return cls(layers)

    def __call__(self, x: Sequence[Value | float]) -> list[Value]:
        for layer in self.layers:
            x = layer(x)
        # (an MLP without layers hands x back as it came)
        return cast("list[Value]", x)

    def forward(self, rows: Iterable[Sequence[Value | float]]) -> list[list[Value]]:
        """The outputs (a list of lists of Values) for a batch of samples."""
        return [self(x) for x in rows]

    def parameters(self) -> list[Value]:
        """Every parameter Value, in the order of a bpcore Model's ``params``."""
        return [p for layer in self.layers for p in layer.parameters()]

    def zero_grad(self) -> None:
        """Set every parameter's grad to 0 (do it before each training step's backward)."""
        for p in self.parameters():
            p.grad = 0.0


# ------------------------------------------------------------------ losses
# outputs: a list of rows of Values (one row per sample), as MLP.forward returns.
REDUCTIONS = ("mean", "sum")
Reduction = Literal["mean", "sum"]
#: targets, per sample: a row of numbers (one per output), or one number (one output)
Targets = Sequence[float | list[float] | tuple[float, ...]]


def _reduce(total: Value, count: int, reduction: str) -> Value:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
    return total / count if reduction == "mean" else total


def _target_rows(targets: Targets) -> list[Sequence[float]]:
    """Accept one number per sample for single-output networks, as bpcore does."""
    return [row if isinstance(row, (list, tuple)) else [row] for row in targets]


def mse(outputs: Sequence[Sequence[Value]], targets: Targets,
        reduction: Reduction = "mean") -> Value:
    """Squared error, averaged over all elements ("mean") or summed ("sum")."""
    total, count = Value(0.0), 0
    for row, target_row in zip(outputs, _target_rows(targets)):
        for out, t in zip(row, target_row):
            r = out - t
            total = total + r * r
            count += 1
    return _reduce(total, count, reduction)


def cross_entropy(logits: Sequence[Sequence[Value]], labels: Sequence[int],
                  reduction: Reduction = "mean") -> Value:
    """Softmax cross-entropy from logits and integer labels, averaged over samples.

    log-sum-exp with the row maximum m taken out as a constant (it cancels in the
    gradient, which is softmax(z) - onehot(label)), so exp never overflows.
    """
    total = Value(0.0)
    for row, label in zip(logits, labels):
        m = max(z.data for z in row)
        log_sum_exp = sum(((z - m).exp() for z in row), Value(0.0)).log() + m
        total = total + (log_sum_exp - row[int(label)])
    return _reduce(total, len(logits), reduction)


def _softplus(z: Value) -> Value:
    # log(1 + exp(z)) by the sign of z, so exp's argument is never positive
    if z.data >= 0:
        return z + (-z).exp().log1p()
    return z.exp().log1p()


def bce_with_logits(logits: Sequence[Sequence[Value]], targets: Targets,
                    reduction: Reduction = "mean") -> Value:
    """Binary cross-entropy of sigmoid(logit) against targets in [0, 1], averaged over
    all elements: softplus(z) - z t, whose derivative is sigmoid(z) - t."""
    total, count = Value(0.0), 0
    for row, target_row in zip(logits, _target_rows(targets)):
        for z, t in zip(row, target_row):
            total = total + (_softplus(z) - z * t)
            count += 1
    return _reduce(total, count, reduction)


def poisson(log_rates: Sequence[Sequence[Value]], targets: Targets,
            reduction: Reduction = "mean") -> Value:
    """Poisson negative log-likelihood of counts from log-rates z, averaged over all
    elements: exp(z) - z t, whose derivative is exp(z) - t (no bounded form: exp
    overflows for z above about 709)."""
    total, count = Value(0.0), 0
    for row, target_row in zip(log_rates, _target_rows(targets)):
        for z, t in zip(row, target_row):
            total = total + (z.exp() - z * t)
            count += 1
    return _reduce(total, count, reduction)


#: the same keys as bpcore.losses.LOSSES
LOSSES: dict[str, Callable[..., Value]] = {"mse": mse, "cross_entropy": cross_entropy,
                                           "bce": bce_with_logits, "poisson": poisson}
