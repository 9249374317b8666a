"""The Model: one flat parameter buffer, one flat gradient buffer, layers as views.

Data flows one way: X -> forward (activations and derivative caches written into
per-batch-size workspaces) -> loss (grad_output written) -> backward (parameter
gradients accumulated, dL/dX returned) -> optimizer (one pass over the flat buffers).

``params`` and ``grads`` are created once and never rebound: optimizers, gradient
clipping and user code (scipy.optimize, MPI all-reduce) write into them in place, and
assigning one (``model.params = x``) copies into it. Every buffer a kernel points into
is fixed the same way (see docs/reliability.md).
"""
from __future__ import annotations

import copy
import functools
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeGuard, TypeVar

import numpy as np
import numpy.typing as npt
from scipy import special

from .. import _aligned, _dense, _engine, _validation, inspection
from . import fused
from .layers import Dense
from .losses import LOSSES, BCEWithLogitsLoss, CrossEntropyLoss, Loss, LossFunction, LossLike
from .plan import LayerPlan

if TYPE_CHECKING:
    # (Optimizer, Callback and History live in layers above nn: named through the
    # stub _typing, never imported)
    from .._typing import (
        Callback,
        ClassWeight,
        FloatArray,
        History,
        Logs,
        LogsFunction,
        MetricFunction,
        MetricName,
        Optimizer,
        Seed,
        ValidationData,
    )

_P = ParamSpec("_P")
_R = TypeVar("_R")


def training_call(what: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Make a function whose first argument is a Model (a Model method, ``fit``) a
    training call named ``what``: it claims the model for this thread while it runs
    (``Model._busy``, src/_engine.pyx), so that another thread's training or predict
    call meanwhile is refused with RuntimeError, and so is this one while another
    thread trains the model. Re-entrant on one thread. (A first argument that is not
    a Model is left to the function's own checks.)"""
    def wrap(function: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(function)
        def claimed(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            busy = getattr(args[0] if args else kwargs.get("model"), "_busy", None)
            if not isinstance(busy, _engine.Busy):
                return function(*args, **kwargs)
            with busy.training(what):
                return function(*args, **kwargs)
        return claimed
    return wrap


# Workspaces are kept for this many distinct batch sizes (e.g. the full batches and
# the smaller last batch of an epoch, plus an evaluation size).
_WORKSPACE_SIZES = 4


def _read_only(array: FloatArray) -> FloatArray:
    """A read-only view of ``array`` (no copy)."""
    view = array.view()
    view.flags.writeable = False
    return view


class _Workspace:
    """Buffers for one batch size: activations, derivative caches, deltas, dL/dinput.

    The pre-activations Z (kept for the per-node views) and dL/dX of the input are
    allocated on first use: the fused train_step needs neither, so its memory stays
    parameters + gradients + optimizer state + activations and their caches.
    """

    A: list[FloatArray]
    Z: list[FloatArray] | None       # None until keep_preactivations (training only)
    D: list[FloatArray]
    G: list[FloatArray]
    delta: list[FloatArray]
    dX: list[FloatArray]
    U: list[FloatArray | None]

    def __init__(self, layers: list[Dense], n: int, dtype: np.dtype[Any],
                 training: bool) -> None:
        empty = np.empty((0, 0), dtype=dtype)
        self._shape = (n, layers[0].n_in)
        self.A = [_aligned.empty((n, layer.n_out), dtype) for layer in layers]
        if not training:
            self.Z = self.D = self.G = self.delta = self.dX = [empty] * len(layers)
            self.U = [None] * len(layers)
            return
        self.Z = None
        self._layers = layers
        self.D = [_aligned.empty((n, l.n_out), dtype) if l.has_derivative_cache else empty
                  for l in layers]
        self.G = [_aligned.empty((n, l.n_out), dtype) if l.has_scale else empty
                  for l in layers]
        self.delta = [_aligned.empty((n, l.n_out), dtype) if l.has_derivative_cache
                      else empty for l in layers]
        self.dX = [empty] + [_aligned.empty((n, l.n_in), dtype) for l in layers[1:]]
        # dropout masks (uniform draws, then the mask) of layers with dropout
        self.U = [_aligned.empty((n, l.n_out), dtype) if l.dropout > 0 else None
                  for l in layers]

    def keep_preactivations(self) -> None:
        """Allocate Z (once) so that forward writes the pre-activations."""
        if self.Z is None:
            dtype, n = self.A[0].dtype, self._shape[0]
            self.Z = [_aligned.empty((n, l.n_out), dtype) for l in self._layers]

    def overlaps(self, array: object) -> bool:
        """True when ``array`` shares memory with a buffer of this workspace (say, a
        forward output fed back as input or target), which a pass would overwrite."""
        if not isinstance(array, np.ndarray):
            return False
        groups = (self.A, self.Z or (), self.D, self.G, self.delta, self.dX, self.U)
        return any(buf is not None and buf.size and np.may_share_memory(array, buf)
                   for group in groups for buf in group)

    def input_grad(self) -> FloatArray:
        """The buffer for dL/dX of the input (allocated once)."""
        if self.dX[0].size == 0:
            self.dX[0] = _aligned.empty(self._shape, self.A[0].dtype)
        return self.dX[0]


class Model:
    """A feed-forward stack of ``Dense`` layers trained by exact backpropagation.

    Parameters
    ----------
    layers : sequence of Dense
        Consecutive layers must agree: ``layers[i].n_out == layers[i + 1].n_in``.
        A layer belongs to one model only.
    dtype : float32 or float64
        Precision of parameters, gradients and all computation.
    seed : int, numpy Generator or None
        Seeds the weight initialisation.

    Attributes
    ----------
    params, grads : 1-D ndarray
        The flat parameter and gradient buffers; every layer's ``W``, ``b``, ``dW``,
        ``db`` is a view into them. They are never rebound: write into them in
        place; assigning one (``model.params = x``) copies ``x`` in, and refuses
        another shape or a non-float array.
    layers : list of Dense
    classes : 1-D ndarray or None
        The class labels of the last classifier fit, sorted: output column ``i``
        (for a one-output BCE model, the output's sign: 0 negative, 1 positive)
        means label ``classes[i]``. ``fit``/``partial_fit`` record them from the
        labels they are given (strings, 1..K, ...; integer labels 0..K-1 give
        ``0..K-1``); ``predict_labels`` and the metrics read them; checkpoints and
        copies keep them. None before a classifier fit on labels.
    fit_loss : Loss, callable or None
        The loss of the last ``fit``/``partial_fit``: ``evaluate``'s and
        ``predict_proba``'s default.
    """

    def __init__(self, layers: Dense | Iterable[Dense], *,
                 dtype: npt.DTypeLike = np.float64, seed: Seed = None) -> None:
        layers = list(layers) if not isinstance(layers, Dense) else [layers]
        if not layers:
            raise ValueError("layers must hold at least one Dense layer; got none")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Dense):
                raise TypeError(f"layers[{i}] must be a Dense layer; got {type(layer).__name__}")
            if layer.model is not None:
                raise ValueError(f"layers[{i}] already belongs to another Model; a layer must "
                                 "belong to one model only: build a new Dense for this one")
        for i in range(len(layers) - 1):
            if layers[i].n_out != layers[i + 1].n_in:
                raise ValueError(
                    f"layers[{i}] has n_out={layers[i].n_out} but layers[{i + 1}] has "
                    f"n_in={layers[i + 1].n_in}; consecutive layers must agree"
                )
        for i, layer in enumerate(layers):
            first = next(j for j, other in enumerate(layers) if other is layer)
            if first != i:
                raise ValueError(f"layers must not repeat the same Dense object; got "
                                 f"layers[{i}] is layers[{first}]")
        self.dtype = _validation.check_dtype(dtype)
        rng = _validation.random_generator(seed)
        total = sum(math.prod(shape) for layer in layers for _, shape in layer.parameter_shapes())
        if total > _validation.MAX_PARAMETERS:
            raise ValueError(f"layers hold {total} parameters together; the most this "
                             f"machine can address is {_validation.MAX_PARAMETERS}")
        self.layers = layers

        # The offsets table: one row per parameter tensor (name, layer, attr, shape, offset).
        self.parameter_table: list[tuple[str, Dense, str, tuple[int, ...], int]] = []
        offset = 0
        for i, layer in enumerate(layers):
            for attr, shape in layer.parameter_shapes():
                self.parameter_table.append((f"layers.{i}.{attr}", layer, attr, shape, offset))
                offset += int(np.prod(shape))
        self._params = _aligned.zeros(offset, self.dtype)
        self._grads = _aligned.zeros(offset, self.dtype)
        for _name, layer, attr, shape, start in self.parameter_table:
            stop = start + int(np.prod(shape))
            layer._bind(attr, self._params[start:stop].reshape(shape))
            layer._bind("d" + attr, self._grads[start:stop].reshape(shape))
        for layer in layers:
            layer.model = self

        for layer in layers:
            layer.initialize(rng)
        #: the generator of dropout masks (seeded from ``seed``); replace to reseed
        self.dropout_rng = np.random.default_rng(rng.integers(2**63))
        #: training mode: dropout active in forward/loss_and_grad (see train/eval)
        self.training = True
        #: epochs completed by fit/partial_fit
        self.epochs_trained = 0
        #: the loss of the last fit/partial_fit/minimize: evaluate's default (None before
        #: one)
        self.fit_loss: LossLike | None = None
        #: the class labels of the last classifier fit, sorted (None before one)
        self.classes: npt.NDArray[Any] | None = None

        self._empty1: FloatArray = np.empty(0, dtype=self.dtype)
        # the thread training this model and the predict calls running (src/_engine.pyx)
        self._busy = _engine.Busy()
        # FusedSteps (bpcore.nn.fused) by (batch size, id(loss), labels, id(optimizer)),
        # see train_step
        self._fused_steps: OrderedDict[tuple[int, int, bool, int], _engine.FusedStep] = \
            OrderedDict()
        self._fused: _engine.FusedStep | None = None   # the one the last train_step used
        # predict's forward passes per batch size (each over activation buffers of its
        # own, so that concurrent predicts never share one)
        self._predictors: OrderedDict[int, _engine.Predictor] = OrderedDict()
        self._predictor: _engine.Predictor | None = None
        self._train_spaces: OrderedDict[int, _Workspace] = OrderedDict()
        # the X of the last forward (the first layer's input)
        self._input: FloatArray | None = None
        self._cache: _Workspace | None = None      # the workspace the last forward wrote
        # dL/doutput of the last backward since that forward
        self._grad_output: FloatArray | None = None

    # ---------------------------------------------------------------- buffers
    def _copy_params(self, value: npt.ArrayLike) -> None:
        _validation.copy_into(self._params, value, "params")

    def _copy_grads(self, value: npt.ArrayLike) -> None:
        _validation.copy_into(self._grads, value, "grads")

    if TYPE_CHECKING:
        params: npt.NDArray[Any]
        grads: npt.NDArray[Any]
    else:
        params = property(attrgetter("_params"), _copy_params, doc=(
            "The flat parameter buffer (every layer's W, b, c is a view into it). "
            "Never rebound: assigning copies in (a float array of its shape)."))
        grads = property(attrgetter("_grads"), _copy_grads, doc=(
            "The flat gradient buffer (every layer's dW, db, dc is a view into it). "
            "Never rebound: assigning copies in (a float array of its shape)."))

    # ------------------------------------------------------------------ shape
    @property
    def n_in(self) -> int:
        """Number of input features."""
        return self.layers[0].n_in

    @property
    def n_out(self) -> int:
        """Number of outputs of the last layer."""
        return self.layers[-1].n_out

    @property
    def n_params(self) -> int:
        """Total number of scalar parameters (the length of ``params``)."""
        return self.params.size

    def named_parameters(self) -> Iterator[tuple[str, FloatArray, FloatArray]]:
        """Yield ``(name, param_view, grad_view)`` per tensor, e.g. ``('layers.0.W', W, dW)``."""
        for name, layer, attr, _, _ in self.parameter_table:
            yield name, getattr(layer, attr), getattr(layer, "d" + attr)

    def __repr__(self) -> str:
        inner = ", ".join(map(repr, self.layers))
        return f"Model([{inner}], dtype={self.dtype.name})"

    # ------------------------------------------------------------ copy, pickle
    # A copy (pickle, copy.copy, copy.deepcopy) is an independent, working model: new
    # aligned flat buffers holding the same numbers, the layers' views bound to them,
    # and no workspace, fused step or cache (they are rebuilt on first use). The state
    # is the layer specs and the buffers' values, so a copy never points into another
    # model's memory. An optimizer copied together with its model (deepcopy of both in
    # one call, or one pickle) is bound to the copy: see Optimizer.__getstate__.
    def __getstate__(self) -> dict[str, Any]:
        extra = {name: value for name, value in vars(self).items()
                 if name not in _REBUILT and not name.startswith("_")}
        if not isinstance(extra.get("fit_loss"), Loss):
            extra["fit_loss"] = None     # a custom loss callable may not pickle
        if extra.get("classes") is not None:
            extra["classes"] = np.array(extra["classes"])    # a copy's own labels
        return {
            "layers": [(layer.n_in, layer.n_out, layer.activation, layer.negative_slope,
                        layer.dropout) for layer in self.layers],
            "dtype": self.dtype.str,
            "params": np.array(self.params), "grads": np.array(self.grads),
            "extra": extra,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        layers = [Dense(n_in, n_out, activation, negative_slope=slope, dropout=dropout)
                  for n_in, n_out, activation, slope, dropout in state["layers"]]
        Model.__init__(self, layers, dtype=np.dtype(state["dtype"]), seed=0)
        self.params[...] = state["params"]
        self.grads[...] = state["grads"]
        for name, value in state["extra"].items():
            if isinstance(value, np.random.Generator):
                value = copy.deepcopy(value)     # a shallow copy must not share its draws
            setattr(self, name, value)

    # ------------------------------------------------------------- workspace
    def _reset_passes(self) -> None:
        """Forget every workspace, fused step and predictor (a layer's activation
        options changed); the caches of the last forward go with them."""
        self._fused_steps.clear()
        self._predictors.clear()
        self._train_spaces.clear()
        self._fused = self._predictor = None
        self._input = self._cache = self._grad_output = None

    def _workspace(self, n: int) -> _Workspace:
        """The training workspace of batch size ``n`` (made, or moved to the end of
        the four kept)."""
        spaces = self._train_spaces
        space = spaces.get(n)
        if space is None:
            if len(spaces) >= _WORKSPACE_SIZES:
                evicted_key, evicted = spaces.popitem(last=False)
                if evicted is self._cache:
                    self._cache = self._input = None
            space = spaces[n] = _Workspace(self.layers, n, self.dtype, True)
        else:
            spaces.move_to_end(n)
        return space

    def _aliases(self, array: object, space: _Workspace) -> TypeGuard[np.ndarray]:
        """True when ``array`` shares memory with what a pass writes: the workspace
        ``space``, the parameters or the gradients (then the caller copies it)."""
        return isinstance(array, np.ndarray) and (
            space.overlaps(array) or np.may_share_memory(array, self.params)
            or np.may_share_memory(array, self.grads))

    def _check_input(self, X: npt.ArrayLike) -> FloatArray:
        return _validation.float_matrix(X, "X", self.dtype, self.n_in)

    def _run_forward(self, X, space):
        inputs, training = X, self.training
        for i, layer in enumerate(self.layers):
            scale = layer.c if layer.has_scale else self._empty1
            _dense.forward(inputs, layer.W, layer.b, scale, space.Z[i], space.A[i],
                           space.D[i], space.G[i], layer.kind, layer.negative_slope)
            mask = space.U[i] if training else None
            if mask is not None:
                self.dropout_rng.random(out=mask, dtype=mask.dtype)
                _dense.dropout(mask, space.A[i], space.D[i], space.G[i], layer.dropout)
            inputs = space.A[i]
        return inputs

    def train(self, mode: bool = True) -> Model:
        """Set training mode (dropout on in forward/loss_and_grad); return the model."""
        self.training = _validation.flag(mode, "mode")
        return self

    def eval(self) -> Model:
        """Set evaluation mode (no dropout anywhere); return the model."""
        return self.train(False)

    @property
    def last_output(self) -> FloatArray | None:
        """Read-only view of the last ``forward``'s output, or None before any forward."""
        if self._cache is None:
            return None
        return _read_only(self._cache.A[-1])

    # ---------------------------------------------------------------- passes
    @training_call("forward")
    def forward(self, X: npt.ArrayLike) -> FloatArray:
        """Run the network on X (n_samples, n_in), keeping the caches backward needs.

        Returns a read-only view of the output (n_samples, n_out). It, and the caches,
        stay valid until the next ``forward`` with the same batch size; copy to keep.
        X itself is kept for backward and must not be modified before it.
        """
        X = self._check_input(X)
        return _read_only(self._forward_checked(X))

    def predict(self, X: npt.ArrayLike) -> FloatArray:
        """Return the network's output for X as a new array; keeps no caches (and
        never applies dropout).

        The output is raw: logits for a classifier (one column per class, in the
        order of ``classes``). ``predict_labels`` reads class labels off it,
        ``predict_proba`` probabilities."""
        predictor = self._predictor
        if predictor is not None:
            output = predictor.run(X)
            if output is not None:
                return output
        X = self._check_input(X)
        n = X.shape[0]
        predictors = self._predictors
        predictor = predictors.get(n)
        if predictor is None:
            space = _Workspace(self.layers, n, self.dtype, training=False)
            predictor = predictors[n] = _engine.Predictor(
                self._layer_plans(space), n, self.dtype == np.float32, self._busy)
            while len(predictors) > _WORKSPACE_SIZES:
                try:
                    predictors.popitem(last=False)
                except KeyError:      # another thread emptied it meanwhile
                    break
        self._predictor = predictor
        if predictor.overlaps(X):
            X = X.copy()
        output = predictor.run(X)
        if output is None:
            raise RuntimeError("bpcore: the predictor refused validated input")
        return output

    def _layer_plans(self, space: _Workspace) -> tuple[LayerPlan, ...]:
        """A LayerPlan per layer over the workspace ``space`` (what the engine runs)."""
        return tuple(
            LayerPlan(n_in=layer.n_in, n_out=layer.n_out, activation=layer.kind,
                      negative_slope=layer.negative_slope, W=layer.W, b=layer.b,
                      c=layer.c, dW=layer.dW, db=layer.db, dc=layer.dc, A=space.A[i],
                      D=space.D[i], G=space.G[i], delta=space.delta[i], dX=space.dX[i])
            for i, layer in enumerate(self.layers))

    __call__ = predict

    def predict_labels(self, X: npt.ArrayLike) -> npt.NDArray[Any]:
        """The predicted class label of each row of X, a 1-D array.

        The output is read as a classifier's logits: the arg-max column with several
        outputs, ``output > 0`` with one. After a classifier fit on labels (``classes``
        recorded) the result is those labels, ``classes[column]`` (one output:
        ``classes[output > 0]``), say ``"setosa"`` or 1..K. Without recorded classes
        it is the column index (one output: 0 or 1) as an integer. A model whose last
        fit was BCE on several outputs (one yes/no per column) gets the 0/1 matrix
        (n_samples, n_outputs). ``predict`` returns the raw output instead.
        """
        output = self.predict(X)
        if isinstance(self.fit_loss, BCEWithLogitsLoss) and self.n_out > 1:
            return (output > 0).astype(np.int64)
        if self.n_out == 1 and not isinstance(self.fit_loss, CrossEntropyLoss) and (
                self.classes is None or len(self.classes) == 2):
            index = (output[:, 0] > 0).astype(np.int64)
        else:
            index = output.argmax(axis=1)      # (one output under cross-entropy: 0)
        if self.classes is None:
            return index
        return np.asarray(self.classes)[index]

    def predict_proba(self, X: npt.ArrayLike,
                      loss: Loss | Literal["cross_entropy", "bce"] | None = None) -> FloatArray:
        """Class probabilities for X, as a new array: the softmax of the output under a
        ``CrossEntropyLoss``, its sigmoid under a ``BCEWithLogitsLoss`` (for one output,
        two columns: P(0) and P(1), as scikit-learn's classifiers give). ``loss``
        defaults to the loss of the last ``fit`` (``fit_loss``). Column ``i`` is the
        probability of ``classes[i]`` after a fit on labels."""
        chosen: object = self.fit_loss if loss is None else loss
        if isinstance(chosen, str) and chosen in LOSSES:
            chosen = LOSSES[chosen]()
        logits = self.predict(X)
        if isinstance(chosen, CrossEntropyLoss):
            return special.softmax(logits, axis=1)
        if isinstance(chosen, BCEWithLogitsLoss):
            positive = special.expit(logits)
            if positive.shape[1] == 1:
                return np.hstack([1 - positive, positive])
            return positive
        raise ValueError("predict_proba needs a classifier's loss: fit with cross_entropy or "
                         "bce, or pass loss=CrossEntropyLoss() or BCEWithLogitsLoss(); got "
                         f"{_validation.describe(chosen)}")

    @training_call("backward")
    def backward(self, grad_output: npt.ArrayLike) -> FloatArray:
        """Accumulate parameter gradients from dL/doutput and return dL/dX.

        ``grad_output`` has the shape of the last ``forward``'s output. Gradients are
        added to ``grads`` (call ``zero_grad`` to start afresh). Returns dL/dX of the
        last forward's input, an array owned by the model and overwritten by the next
        backward with the same batch size.
        """
        if self._cache is None or self._input is None:     # (both or neither are set)
            raise ValueError("backward called before forward: run model.forward(X) first")
        n = self._input.shape[0]
        if not isinstance(grad_output, np.ndarray) or grad_output.shape != (n, self.n_out):
            grad_output = _validation.as_array(grad_output, "grad_output")
            if grad_output.shape != (n, self.n_out):
                raise ValueError(
                    f"grad_output must have the shape of the last forward's output "
                    f"{(n, self.n_out)}; got shape {grad_output.shape}"
                )
        grad_output = _validation.float_matrix(grad_output, "grad_output", self.dtype,
                                               self.n_out, "outputs")
        if self._aliases(grad_output, self._cache):
            grad_output = grad_output.copy()   # e.g. a per-node view of this very pass
        return self._run_backward(grad_output, need_input_grad=True)

    def _run_backward(self, grad_output, need_input_grad):
        space, upstream = self._cache, grad_output
        self._grad_output = grad_output
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            inputs = space.A[i - 1] if i > 0 else self._input
            dX = space.dX[i] if i > 0 else (space.input_grad() if need_input_grad
                                            else space.dX[0][:0])
            dscale = layer.dc if layer.has_scale else self._empty1
            _dense.backward(inputs, layer.W, upstream, space.D[i], space.G[i],
                            space.delta[i], layer.dW, layer.db, dscale, dX)
            upstream = dX
        return upstream if need_input_grad else None

    @training_call("zero_grad")
    def zero_grad(self) -> None:
        """Set every gradient to zero (one fill of the flat gradient buffer)."""
        self.grads.fill(0)

    @training_call("loss_and_grad")
    def loss_and_grad(self, X: npt.ArrayLike, target: npt.ArrayLike,
                      loss: Loss | LossFunction, *,
                      sample_weight: npt.ArrayLike | None = None,
                      accumulate: bool = False) -> tuple[float, FloatArray]:
        """Forward, loss and backward in one call; return ``(loss_value, grads)``.

        ``loss`` is a bpcore ``Loss`` or any callable ``loss(output, target) ->
        (value, grad_output)`` working on numpy arrays (``output`` is read-only).
        ``grads`` is the model's flat gradient buffer itself (not a copy). Gradients
        are zeroed first unless ``accumulate=True``. dL/dX of the input is not computed.
        A bpcore Loss has its target validated before anything is written.
        """
        if isinstance(loss, type):
            raise TypeError(f"loss must be a bpcore Loss instance such as {loss.__name__}() or "
                            f"a callable loss(output, target); got type {loss.__name__}")
        accumulate = _validation.flag(accumulate, "accumulate")
        X = self._check_input(X)
        if isinstance(loss, Loss):
            checked: tuple[Any, ...] = loss.validate(target, (X.shape[0], self.n_out),
                                                     self.dtype, sample_weight)
            space = self._workspace(X.shape[0])
            checked = tuple(a.copy() if self._aliases(a, space) else a for a in checked)
            output = self._forward_checked(X)
            value, grad_output = loss.compute(output, *checked)
        elif callable(loss):
            if sample_weight is not None:
                raise TypeError("sample_weight needs a bpcore Loss; a custom loss callable "
                                "weighs its samples itself")
            if self._aliases(target, self._workspace(X.shape[0])):
                target = target.copy()      # the forward would overwrite it
            value, grad_output = self._custom_loss(loss, self._forward_checked(X), target)
        else:
            raise TypeError("loss must be a bpcore Loss or a callable "
                            f"loss(output, target) -> (value, grad_output); got "
                            f"{type(loss).__name__}")
        if not accumulate:
            self.zero_grad()
        self._run_backward(grad_output, need_input_grad=False)
        return value, self.grads

    # One training step in one call (forward, loss, backward, update): defined in
    # src/_train_step.pxi (part of _engine), where the fast path costs no Python frame;
    # see its docstring.
    train_step = _engine.train_step
    # fit's step: train_step(keep_grads=True) whose update is taken only when the loss
    # and gradients are finite and it cannot overflow; None otherwise (nothing changed)
    # and when the step is not fused with its update (see bpcore.train.loop)
    _guarded_step = _engine.guarded_step

    @training_call("train_step")
    def _train_step_general(self, X: npt.ArrayLike, target: npt.ArrayLike,
                            loss: Loss | LossFunction, optimizer: Optimizer,
                            flags: int = 0) -> float | None:
        """train_step when the last fused step does not apply: validate, then run a
        fused step (found or built) or the two-call path (bpcore.nn.fused decides).
        ``flags``: the engine's (``_engine.KEEP_GRADS``, ``_engine.GUARD``); with GUARD,
        None when the update was not taken or the step is not fused with its update
        (the two-call path is not run: the caller guards it)."""
        # (a name of its own: after ``getattr(...) is not self`` mypy takes ``self``
        # for Any and checks nothing below)
        owner: object = getattr(optimizer, "model", None)
        if owner is not self or not callable(getattr(optimizer, "step", None)):
            raise TypeError("optimizer must be an Optimizer of this model; got "
                            f"{_validation.describe(optimizer)}")
        has_dropout = any(layer.dropout for layer in self.layers)
        if (not isinstance(loss, Loss) or fused.loss_kind(loss, False) is None
                or (self.training and has_dropout)):
            # custom losses, Loss subclasses without their own fused_kind and dropout
            # in training mode take the two-call path
            if flags & _engine.GUARD == _engine.GUARD:
                return None
            optimizer.buffers()     # its state checked before anything is written
            value, _ = self.loss_and_grad(X, target, loss)
            optimizer.step()
            return value
        X = self._check_input(X)
        target, _, scale = loss.validate(target, (X.shape[0], self.n_out), self.dtype)
        labels = target.ndim == 1
        key = (X.shape[0], id(loss), labels, id(optimizer))
        step = self._fused_steps.get(key)
        # a step goes stale when the loss's reduction changed or, with a fused update,
        # when the optimizer's buffers were replaced or added (momentum switched on)
        if step is None or step.reduction != loss.reduction or not step.current(
                optimizer.buffers() if step.fused_update else ()):
            n = X.shape[0]
            step = fused.build(self, self._layer_plans(self._workspace(n)),
                               n, loss, labels, scale, optimizer, has_dropout)
            self._fused_steps[key] = step
            while len(self._fused_steps) > _WORKSPACE_SIZES:
                self._fused_steps.popitem(last=False)
        self._fused = step
        guard = flags & _engine.GUARD == _engine.GUARD
        if guard and not step.fused_update:
            return None
        if not step.fused_update:
            optimizer.buffers()     # its state checked before anything is written
        engine = step.engine
        if engine.overlaps(X):
            X = X.copy()            # a forward output fed back: the step overwrites it
        if engine.overlaps(target):
            target = target.copy()
        factor = step.factor(optimizer)
        result = engine.run(X, target, flags, factor)
        if result is None:
            raise RuntimeError("bpcore: the fused step refused validated input")
        if self._cache is not None:      # the last forward's caches are overwritten
            self._input = self._cache = self._grad_output = None
        if guard and engine.status != _engine.STEP_TAKEN:
            return None
        if not step.fused_update:
            step.update(optimizer, factor)
        return result

    def _forward_checked(self, X: FloatArray) -> FloatArray:
        space = self._workspace(X.shape[0])
        if self._aliases(X, space):
            X = X.copy()    # X is kept for backward, which must see it as it came
        space.keep_preactivations()
        output = self._run_forward(X, space)
        self._input, self._cache, self._grad_output = X, space, None
        return output

    def _custom_loss(self, loss: LossFunction, output: FloatArray,
                     target: Any) -> tuple[float, FloatArray]:
        view = output.view()
        view.flags.writeable = False
        result = loss(view, target)
        if not isinstance(result, tuple) or len(result) != 2:
            raise TypeError("a custom loss must return a pair (value, grad_output); got "
                            f"{_validation.describe(result)}")
        value, grad_output = result
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError("a custom loss must return a real number as its value; got "
                            f"{_validation.describe(value)}") from None
        grad_output = _validation.as_array(grad_output, "grad_output of the custom loss")
        if grad_output.shape != output.shape or grad_output.dtype.kind != "f":
            raise ValueError("a custom loss must return grad_output as a float array of the "
                             f"output's shape {output.shape}; got "
                             f"{_validation.describe(grad_output)}")
        return value, _validation.native(grad_output, self.dtype)

    # ------------------------------------------------------------ inspection
    def explain(self, layer: int | Dense, unit: int, sample: int = 0) -> str:
        """Print and return the chain-rule terms of one neuron for the last step
        (see ``bpcore.inspection.explain``)."""
        return inspection.explain(self, layer, unit, sample)

    def to_dot(self, values: bool = False) -> str:
        """Graphviz DOT text of the layers (``values``: the last step's magnitudes)."""
        return inspection.to_dot(self, _validation.flag(values, "values"))

    # ------------------------------------------------------------ conveniences
    # Keras users expect model.fit/evaluate/save. They live in the layers above this
    # one (bpcore.train, bpcore.checkpoint), which import this module; so each of
    # those registers its function here when imported (register_convenience), and
    # these methods only delegate. Importing bpcore registers all four.
    def save(self, path: str | os.PathLike[str], optimizer: Optimizer | None = None,
             progress: dict[str, Any] | None = None) -> None:
        """Write the model (and an optimizer's state, training progress) to ``path``
        atomically; read it back with ``bpcore.load``. See ``bpcore.checkpoint.save``."""
        _convenience("save")(path, self, optimizer, progress)

    # The keyword signatures below repeat bpcore.train.loop's, defaults included, so
    # that a type checker sees them (a wrong keyword or type is caught before a run);
    # every argument is handed on as given.
    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike, *, loss: LossLike,
            optimizer: Optimizer | str = "adam", epochs: int = 1, batch_size: int = 32,
            shuffle: bool = True, seed: int | np.integer[Any] | None = None,
            validation_data: ValidationData | None = None, validation_split: float = 0.0,
            sample_weight: npt.ArrayLike | None = None,
            class_weight: ClassWeight | None = None,
            metrics: Iterable[MetricName | MetricFunction] = (),
            callbacks: Iterable[Callback | LogsFunction] = (), verbose: int = 1,
            l2: float = 0.0, accumulate: int = 1,
            on_nonfinite: Literal["raise", "skip"] = "raise",
            initial_epoch: int = 0,
            validation_order: Literal["random", "last"] = "random",
            classes: npt.ArrayLike | None = None) -> History:
        """Train on (X, y); return a ``History``. See ``bpcore.train.fit``."""
        return _convenience("fit")(
            self, X, y, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
            shuffle=shuffle, seed=seed, validation_data=validation_data,
            validation_split=validation_split, sample_weight=sample_weight,
            class_weight=class_weight, metrics=metrics, callbacks=callbacks, verbose=verbose,
            l2=l2, accumulate=accumulate, on_nonfinite=on_nonfinite,
            initial_epoch=initial_epoch, validation_order=validation_order, classes=classes)

    def partial_fit(self, X: npt.ArrayLike, y: npt.ArrayLike, *, loss: LossLike,
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
        """One pass over (X, y); return that epoch's logs. See ``bpcore.train.partial_fit``."""
        return _convenience("partial_fit")(
            self, X, y, loss=loss, optimizer=optimizer, batch_size=batch_size,
            shuffle=shuffle, seed=seed, validation_data=validation_data,
            sample_weight=sample_weight, class_weight=class_weight, metrics=metrics,
            callbacks=callbacks, verbose=verbose, l2=l2, accumulate=accumulate,
            on_nonfinite=on_nonfinite, classes=classes)

    def evaluate(self, X: npt.ArrayLike, y: npt.ArrayLike, *, loss: LossLike | None = None,
                 metrics: Iterable[MetricName | MetricFunction] = (),
                 sample_weight: npt.ArrayLike | None = None,
                 batch_size: int | None = None) -> Logs:
        """Loss and metrics on (X, y) as a dict. See ``bpcore.train.evaluate``."""
        return _convenience("evaluate")(self, X, y, loss=loss, metrics=metrics,
                                        sample_weight=sample_weight, batch_size=batch_size)


#: what Model.__init__ builds afresh in a copy (the rest of the public attributes,
#: such as training, epochs_trained and dropout_rng, are copied)
_REBUILT = frozenset({"layers", "dtype", "params", "grads", "parameter_table"})

_CONVENIENCES: dict[str, Callable[..., Any]] = {}


def register_convenience(name: str, function: Callable[..., Any]) -> None:
    """Let ``Model.<name>`` delegate to ``function`` (called by bpcore.train and
    bpcore.checkpoint when they are imported)."""
    if name not in ("save", "fit", "partial_fit", "evaluate"):
        raise ValueError(f"name must be save, fit, partial_fit or evaluate; got {name!r}")
    _CONVENIENCES[name] = function


def _convenience(name: str) -> Callable[..., Any]:
    function = _CONVENIENCES.get(name)
    if function is None:
        raise RuntimeError(f"Model.{name} needs bpcore's training layer: import bpcore")
    return function
