"""``minimize``: SciPy's optimizers (``scipy.optimize.minimize``) over a model's flat
parameter buffer, for full-batch training with L-BFGS-B, CG, BFGS and the rest.

The objective SciPy sees is the loss on the whole data set (plus the L2 penalty of
``fit(l2=...)``) as a function of one float64 vector, laid out as ``model.params``.
Each evaluation writes SciPy's point into ``model.params`` in place and runs
``model.loss_and_grad``. With L-BFGS-B on a float64 model, the gradient goes back to
SciPy as the model's own gradient buffer: L-BFGS-B copies it into its own memory
before it asks for the next, so an evaluation copies and allocates nothing. Every
other gradient method gets a new array at every call: BFGS, CG, Newton-CG and
trust-constr keep earlier gradients (the previous iterate's, the line search's) while
asking for new ones, so a buffer handed back twice, or two buffers handed back in
turn, would be overwritten under them and silently change the steps they take.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import scipy.optimize

from .. import _flat, _validation
from ..nn import Loss, Model, fused
from ..nn.data import check_data, resolve_loss
from ..nn.losses import LossFunction, LossLike
from .optimizers import Optimizer, TrainingDiverged

if TYPE_CHECKING:
    from .._typing import FloatArray

#: methods of ``scipy.optimize.minimize`` handed the gradient (``jac=True``)
GRADIENT_METHODS = ("CG", "BFGS", "Newton-CG", "L-BFGS-B", "TNC", "SLSQP", "trust-constr")
#: methods handed the loss value only
GRADIENT_FREE_METHODS = ("Nelder-Mead", "Powell", "COBYLA", "COBYQA")
# methods that need the Hessian (or its products), which bpcore does not compute
_HESSIAN_METHODS = ("dogleg", "trust-ncg", "trust-exact", "trust-krylov")


class _Diverged(Exception):
    """Raised by the objective at a non-finite loss or gradient; caught by minimize."""

    def __init__(self, value: float, gradient_finite: bool) -> None:
        super().__init__(value)
        self.value, self.gradient_finite = value, gradient_finite


class _NoUpdate(Optimizer):
    """An optimizer that changes nothing: with it, ``Model.train_step`` is the fused
    forward, loss and backward alone (the same numbers as ``loss_and_grad``, in one
    kernel call)."""

    def _update(self) -> None:
        pass


class _Objective:
    """The loss (+ L2) of ``model`` on (X, y) as a function of a float64 vector.

    Keeps the lowest finite point evaluated (``best_x``, one preallocated buffer), to
    which ``minimize`` returns when an evaluation comes out non-finite.
    """

    def __init__(self, model: Model, X: FloatArray, y: Any, loss: Loss | LossFunction,
                 weight: FloatArray | None, l2: float, gradient: bool = True) -> None:
        self.model, self.X, self.y, self.loss, self.weight, self.l2 = \
            model, X, y, loss, weight, l2
        self.gradient = gradient    # whether SciPy uses the gradient (then it is checked)
        self.evaluations = 0
        # a built-in loss without sample weights runs as one fused kernel call
        labels = isinstance(y, np.ndarray) and y.ndim == 1
        self.no_update = _NoUpdate(model) if (
            weight is None and isinstance(loss, Loss)
            and fused.loss_kind(loss, labels) is not None) else None
        self.best_value = math.inf
        self.best_x = np.empty(model.n_params, dtype=np.float64)

    def value(self, x: npt.NDArray[np.float64]) -> float:
        """The objective at ``x``; leaves ``x`` (rounded to the model's dtype) in
        ``model.params`` and the objective's gradient there in ``model.grads``."""
        model = self.model
        model.params[...] = x
        self.evaluations += 1
        if self.no_update is not None:
            value = model.train_step(self.X, self.y, self.loss, self.no_update,
                                     keep_grads=True)
            grads = model.grads
        else:
            value, grads = model.loss_and_grad(self.X, self.y, self.loss,
                                               sample_weight=self.weight)
        if self.l2:
            for layer in model.layers:
                value += _flat.l2(layer.W.reshape(-1), layer.dW.reshape(-1), self.l2)
        value = float(value)
        gradient_finite = not self.gradient or _flat.all_finite(grads)
        if not (math.isfinite(value) and gradient_finite):
            raise _Diverged(value, gradient_finite)
        if value < self.best_value:
            self.best_value = value
            np.copyto(self.best_x, x)
        return value

    def value_and_grad(self, x: npt.NDArray[np.float64]
                       ) -> tuple[float, npt.NDArray[np.float64]]:
        """The objective and its gradient at ``x``, the gradient as a new float64
        array (SciPy may keep it while it asks for the next one)."""
        value = self.value(x)
        return value, np.array(self.model.grads, dtype=np.float64)

    def value_and_own_grad(self, x: npt.NDArray[np.float64]
                           ) -> tuple[float, npt.NDArray[np.float64]]:
        """The objective and the model's own gradient buffer (float64 models), for
        L-BFGS-B, which copies each gradient into its own memory before asking for
        the next: no copy and no allocation per evaluation."""
        return self.value(x), self.model.grads

    def settle(self, x: npt.ArrayLike) -> None:
        """Leave ``x`` in ``model.params`` and the gradient there in ``model.grads``
        (one more evaluation unless the last one was at ``x``)."""
        point = np.asarray(x, dtype=np.float64).reshape(-1)
        if not self.evaluations or point.shape != self.model.params.shape \
                or not np.array_equal(self.model.params, point.astype(self.model.dtype)):
            self.value(point)


def _reuses_gradient(method: object) -> bool:
    """Whether SciPy's ``method`` is done with a returned gradient before it asks for
    the next (then the model's own buffer is handed over): L-BFGS-B. BFGS, CG,
    Newton-CG and trust-constr keep earlier gradients, and get a new array each time
    (tests/test_minimize.py compares every evaluated point with SciPy run on fresh
    arrays, for both kinds)."""
    return isinstance(method, str) and method.lower() == "l-bfgs-b"


def _check_method(method: object) -> bool:
    """Validate ``method``; return whether it is handed the gradient."""
    if callable(method):
        return True           # a custom minimizer (scipy's method=callable)
    if not isinstance(method, str):
        raise TypeError(f"method must be a name of a scipy.optimize.minimize method or a "
                        f"callable; got {_validation.describe(method)}")
    name = method.lower()
    if name in (m.lower() for m in _HESSIAN_METHODS):
        raise ValueError(f"method {method!r} needs the Hessian, which bpcore does not "
                         f"compute; use one of {GRADIENT_METHODS + GRADIENT_FREE_METHODS}")
    if name in (m.lower() for m in GRADIENT_METHODS):
        return True
    if name in (m.lower() for m in GRADIENT_FREE_METHODS):
        return False
    raise ValueError(f"method must be one of {GRADIENT_METHODS + GRADIENT_FREE_METHODS} "
                     f"(case-insensitive) or a callable; got {method!r}")


def _solver_options(options: Mapping[str, Any] | None,
                    keywords: dict[str, Any]) -> dict[str, Any]:
    """``options`` and the keyword options merged (a key given twice is an error)."""
    if options is None:
        return keywords
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise TypeError(f"options must be a dict of solver options by name; got "
                        f"{_validation.describe(options)}")
    twice = sorted(set(options) & set(keywords))
    if twice:
        raise ValueError(f"solver options {twice} are given both in options and as "
                         "keywords; give each once")
    return {**options, **keywords}


def minimize(model: Model, X: npt.ArrayLike, y: Any, loss: LossLike, *,
             method: str | Callable[..., Any] = "L-BFGS-B", l2: float = 0.0,
             sample_weight: npt.ArrayLike | None = None,
             callback: Callable[..., Any] | None = None, tol: float | None = None,
             bounds: Any = None, constraints: Any = (),
             options: Mapping[str, Any] | None = None,
             **solver_options: Any) -> scipy.optimize.OptimizeResult:
    """Train ``model`` on the whole of (X, y) with ``scipy.optimize.minimize``; return
    SciPy's ``OptimizeResult``.

    Parameters
    ----------
    model : Model
        Its parameters are the starting point; they are optimized in place.
    X, y : the data set, as for ``fit`` (all of it is used at every evaluation).
    loss : "mse", "cross_entropy", "bce", a bpcore Loss, or a callable
        ``loss(output, target) -> (value, grad_output)`` on numpy arrays.
    method : a method of ``scipy.optimize.minimize`` (case-insensitive). The gradient
        methods (``GRADIENT_METHODS``: L-BFGS-B, CG, BFGS, Newton-CG, TNC, SLSQP,
        trust-constr) are handed the exact gradient (``jac=True``); the
        gradient-free ones (``GRADIENT_FREE_METHODS``: Nelder-Mead, Powell, COBYLA,
        COBYQA) the loss value only. A callable is a custom minimizer, as SciPy
        takes it, handed the gradient. Methods that need a Hessian are refused.
    l2 : adds ``l2/2 * sum(W**2)`` over the weight matrices (not the biases) to the
        objective and ``l2 * W`` to their gradient, as ``fit(l2=...)``.
        scikit-learn's ``MLPClassifier(alpha=a)`` is ``l2=a / n_samples`` (``a /
        sum(sample_weight)`` with weights).
    sample_weight : per-sample weights (a bpcore Loss only), as for ``fit``.
    callback, tol, bounds, constraints : as SciPy's. ``bounds`` is one ``(low, high)``
        pair per parameter, in the order of ``model.params`` (see
        ``model.parameter_table``), or a ``scipy.optimize.Bounds``; ``constraints``
        (SLSQP, COBYLA, COBYQA, trust-constr) are functions of that same vector.
    options, **solver_options : the solver's options (``maxiter``, ``maxfun``,
        ``gtol``, ``ftol``, ...), as a dict, as keywords, or both.

    After the call ``model.params`` holds ``result.x``, the point SciPy returns (not
    necessarily the last one it evaluated), and ``model.grads`` the gradient of the
    objective (L2 included) there; the result is SciPy's, unchanged. During the run
    ``model.params`` holds the point being evaluated, which a callback's iterate need
    not be. Dropout is off throughout (the model runs in evaluation mode, so the
    objective is deterministic) and the training mode is restored afterwards. As
    ``fit`` does, the loss is kept in ``model.fit_loss``, the default of
    ``evaluate`` and ``predict_proba``.

    A float32 model is optimized in float64 by SciPy: each point is rounded to
    float32 when written into ``model.params`` and each float32 gradient widened.
    The objective is then accurate to float32's precision (about 1e-7 relative), so
    tolerances below that are out of reach: a line search may stop the run early
    (L-BFGS-B's ``ABNORMAL`` message) at a point that is still finite and usable.

    When the loss or a gradient comes out NaN or infinite the run stops with
    ``TrainingDiverged``; ``model.params`` is then the lowest-loss point evaluated
    and ``model.grads`` its gradient (the starting point, unchanged, when no point
    was finite). Bad arguments raise ValueError/TypeError before any evaluation,
    and any other error (from SciPy, a callback or a custom loss) restores the
    starting parameters and gradients: either way nothing is changed.

    Examples
    --------
    >>> import bpcore as bp
    >>> X, y = bp.datasets.moons(200, noise=0.1, seed=0)
    >>> model = bp.Model([bp.Dense(2, 16, "tanh"), bp.Dense(16, 2)], seed=0)
    >>> result = bp.minimize(model, X, y, "cross_entropy", l2=1e-4, maxiter=200)
    >>> bool(result.fun < 0.1), bool((model.params == result.x).all())
    (True, True)
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a bpcore Model; got {_validation.describe(model)}")
    gradient = _check_method(method)
    l2 = _validation.real(l2, "l2", low=0.0)
    if tol is not None:
        tol = _validation.real(tol, "tol", low=0.0)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None; got "
                        f"{_validation.describe(callback)}")
    scipy_options = _solver_options(options, solver_options)
    resolved = resolve_loss(loss)
    if sample_weight is not None and not isinstance(resolved, Loss):
        raise TypeError("sample_weight needs a bpcore Loss; a custom loss callable weighs "
                        "its samples itself")
    X, y, weight = check_data(model, X, y, resolved, sample_weight)

    start_params, start_grads = model.params.copy(), model.grads.copy()
    objective = _Objective(model, X, y, resolved, weight, l2, gradient)
    training, fit_loss = model.training, model.fit_loss
    model.fit_loss = resolved
    model.eval()
    try:
        function: Callable[[npt.NDArray[np.float64]], Any]
        if not gradient:
            function = objective.value
        elif _reuses_gradient(method) and model.dtype == np.float64:
            function = objective.value_and_own_grad
        else:
            function = objective.value_and_grad
        result = scipy.optimize.minimize(
            function,
            np.array(model.params, dtype=np.float64), method=method,
            jac=True if gradient else None, bounds=bounds, constraints=constraints, tol=tol,
            callback=callback,
            options=scipy_options)
        objective.settle(result.x)
    except _Diverged as error:
        count = objective.evaluations
        if math.isfinite(objective.best_value):
            objective.value(objective.best_x)
            where = (f"model.params holds the lowest-loss point evaluated (loss "
                     f"{objective.best_value:.6g}) and model.grads its gradient")
        else:
            model.params[...] = start_params
            model.grads[...] = start_grads
            model.fit_loss = fit_loss
            where = ("no point was finite: the parameters, gradients and fit_loss are "
                     "unchanged")
        what = (f"the loss is {error.value}" if not math.isfinite(error.value)
                else "a gradient is not finite")
        raise TrainingDiverged(
            f"minimize: {what} at evaluation {count}; {where} (scale the "
            "data, start from smaller weights, add l2 or bound the parameters)") from None
    except BaseException:
        model.params[...] = start_params
        model.grads[...] = start_grads
        model.fit_loss = fit_loss
        raise
    finally:
        model.train(training)
    return result
