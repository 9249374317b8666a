"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn's estimators on bpcore's engine.

Training follows scikit-learn's ``sklearn.neural_network`` step for step: the same
initial weights (Glorot uniform drawn from ``random_state`` in scikit-learn's order),
the same shuffles and batches, the same objective (see ``_solvers``) and update rules,
the same stopping rules, schedules, warnings and fitted attributes. What differs is
where the time goes: each batch is one ``Model.train_step`` (forward, loss and
backward fused in bpcore's kernels) followed by one update pass over the flat
parameter buffer, and ``solver="lbfgs"`` runs SciPy's L-BFGS-B over that buffer
directly (``bpcore.minimize``).
"""
from __future__ import annotations

import warnings
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse
import scipy.special
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as _SkClassifier
from sklearn.neural_network import MLPRegressor as _SkRegressor
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from ..nn import Dense, Model
from ..optim.minimize import minimize
from . import _solvers

if TYPE_CHECKING:
    from ..nn.losses import Loss

#: scikit-learn's hidden activations by name -> bpcore's
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_STOCHASTIC = ("sgd", "adam")

_EXTRA_CONSTRAINTS: dict[str, list[Any]] = {
    "dtype": [None, type, np.dtype, str],
    "dropout": [Interval(Real, 0, 1, closed="left")],
}


class _ParameterList(list):
    """``coefs_``/``intercepts_``: views into the model's flat parameter buffer.

    Editing an array in place changes the model; assigning an item copies the new
    values into the buffer (the shape must match), so both reach the next
    ``predict`` and ``partial_fit``.
    """

    def __init__(self, views: list[np.ndarray], name: str) -> None:
        super().__init__(views)
        self._name = name

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            raise TypeError(f"{self._name} takes one array at a time: "
                            f"{self._name}[i] = array")
        view = self[index]
        value = np.asarray(value)
        if value.shape != view.shape:
            raise ValueError(f"{self._name}[{index}] must have shape {view.shape}; got an "
                             f"array of shape {value.shape}")
        view[...] = value

    def __reduce__(self) -> Any:       # pickles (and copies) as a plain list of arrays
        return (list, ([np.array(v) for v in self],))


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: fitting, the solvers, the
    fitted attributes as views into ``model_``."""

    model_: Model
    _optimizer: Any
    _best_params: np.ndarray | None
    _random_state: np.random.RandomState

    def __init__(self, hidden_layer_sizes: Any, activation: str, *, solver: str,
                 alpha: float, batch_size: Any, learning_rate: str,
                 learning_rate_init: float, power_t: float, max_iter: int, loss: str,
                 shuffle: bool, random_state: Any, tol: float, verbose: Any,
                 warm_start: bool, momentum: float, nesterovs_momentum: bool,
                 early_stopping: bool, validation_fraction: float, beta_1: float,
                 beta_2: float, epsilon: float, n_iter_no_change: Any, max_fun: int,
                 dtype: Any, dropout: float) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.loss = loss
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.dropout = dropout

    # ------------------------------------------------------ fitted attributes
    @property
    def coefs_(self) -> list[np.ndarray]:
        """The weight matrices, ``coefs_[i]`` of shape (n_units[i], n_units[i + 1]):
        views into ``model_.params`` (edits and item assignments reach the model)."""
        model = self._fitted_model()
        return _ParameterList([layer.W for layer in model.layers], "coefs_")

    @coefs_.setter
    def coefs_(self, values: list[np.ndarray]) -> None:
        self._assign("coefs_", values, [layer.W for layer in self._fitted_model().layers])

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """The bias vectors, ``intercepts_[i]`` of shape (n_units[i + 1],): views into
        ``model_.params``."""
        model = self._fitted_model()
        return _ParameterList([layer.b for layer in model.layers], "intercepts_")

    @intercepts_.setter
    def intercepts_(self, values: list[np.ndarray]) -> None:
        self._assign("intercepts_", values, [layer.b for layer in self._fitted_model().layers])

    def _fitted_model(self) -> Model:
        model = self.__dict__.get("model_")
        if model is None:
            raise AttributeError(f"This {type(self).__name__} instance is not fitted yet: "
                                 "it has no coefs_ or intercepts_ before fit")
        return model

    @staticmethod
    def _assign(name: str, values: Any, views: list[np.ndarray]) -> None:
        values = list(values)
        if len(values) != len(views):
            raise ValueError(f"{name} must be a list of {len(views)} arrays; got "
                             f"{len(values)}")
        arrays = [np.asarray(v) for v in values]
        for i, (value, view) in enumerate(zip(arrays, views)):
            if value.shape != view.shape:
                raise ValueError(f"{name}[{i}] must have shape {view.shape}; got an array "
                                 f"of shape {value.shape}")
        for value, view in zip(arrays, views):
            if value is not view:
                view[...] = value

    # ------------------------------------------------------------- fitting
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data (sparse input is converted to a dense array).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values (class labels in classification, real numbers in
            regression).
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._validate_params()
        return self._fit(X, y, sample_weight, incremental=False)

    def _check_solver(self) -> bool:
        if self.solver not in _STOCHASTIC:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        if not hasattr(sizes, "__iter__"):
            sizes = [sizes]
        sizes = list(sizes)
        if np.any(np.array(sizes) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        return [int(s) for s in sizes]

    def _float_dtype(self, X_dtype: np.dtype[Any]) -> np.dtype[Any]:
        if self.dtype is None:
            return np.dtype(X_dtype)
        dtype = np.dtype(self.dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be None, float32 or float64; got {self.dtype!r}")
        return dtype

    def _fit(self, X: Any, y: Any, sample_weight: Any, incremental: bool) -> Any:
        hidden = self._hidden_sizes()
        first_pass = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if scipy.sparse.issparse(X):
            X = X.toarray()
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        sample_weight = self._class_sample_weight(y, sample_weight, incremental)
        if y.ndim == 1:
            y = y.reshape(-1, 1)
        dtype = self._float_dtype(X.dtype) if first_pass else self.model_.dtype
        X = np.ascontiguousarray(X, dtype=dtype)
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=dtype)
        self.n_outputs_ = y.shape[1]
        units = [X.shape[1], *hidden, self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, units, dtype)
        elif [layer.n_out for layer in self.model_.layers[:-1]] != hidden \
                or self.model_.n_out != self.n_outputs_:
            raise ValueError("warm_start and partial_fit keep the fitted network: "
                             f"hidden_layer_sizes={hidden} and {self.n_outputs_} outputs "
                             "do not match the fitted model's "
                             f"{[layer.n_out for layer in self.model_.layers[:-1]]} and "
                             f"{self.model_.n_out}")
        target = self._target(y)
        if self.solver in _STOCHASTIC:
            self._fit_stochastic(X, y, target, sample_weight, incremental)
        else:
            self._fit_lbfgs(X, y, target, sample_weight)
        if not np.isfinite(self.model_.params).all():
            raise ValueError("Solver produced non-finite parameter weights. The input data "
                             "may contain large values and need to be preprocessed.")
        return self

    def _class_sample_weight(self, y: np.ndarray, sample_weight: Any,
                             incremental: bool) -> Any:
        return sample_weight

    def _initialize(self, y: np.ndarray, units: list[int], dtype: np.dtype[Any]) -> None:
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(units)
        self.out_activation_ = self._output_activation()
        activation: Any = _ACTIVATIONS[self.activation]
        layers = [Dense(n_in, n_out, activation, dropout=self.dropout)
                  for n_in, n_out in zip(units[:-2], units[1:-1])]
        layers.append(Dense(units[-2], units[-1], "identity"))
        model = Model(layers, dtype=dtype, seed=0)
        # scikit-learn's initialisation (Glorot uniform; factor 2 for logistic units),
        # drawn in float64 in its order (weights, then biases, layer by layer)
        factor = 2.0 if self.activation == "logistic" else 6.0
        for layer in model.layers:
            bound = np.sqrt(factor / (layer.n_in + layer.n_out))
            layer.W[...] = self._random_state.uniform(-bound, bound, (layer.n_in, layer.n_out))
            layer.b[...] = self._random_state.uniform(-bound, bound, layer.n_out)
        model.grads.fill(0)
        if self.dropout:   # drawn after the weights: they stay scikit-learn's
            model.dropout_rng = np.random.default_rng(
                self._random_state.randint(np.iinfo(np.int32).max))
        self.model_ = model
        self._best_params = model.params.copy()
        self._optimizer = None
        if self.solver in _STOCHASTIC:
            self.loss_curve_: list[float] = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_: list[float] | None = []
                self.best_validation_score_: float | None = -np.inf
                self.best_loss_: float | None = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    # the loss objects (rebuilt per fit: they keep a gradient buffer of their own)
    def _bp_loss(self) -> Loss:
        raise NotImplementedError

    def _loss_constant(self, y: np.ndarray, sample_weight: Any) -> float:
        """What the reported loss adds to bpcore's value for these targets (Poisson)."""
        return 0.0

    def _make_optimizer(self) -> Any:
        if self.solver == "sgd":
            return _solvers.SklearnSGD(self.model_, self.learning_rate_init, self.momentum,
                                       self.nesterovs_momentum, self.learning_rate,
                                       self.power_t)
        return _solvers.SklearnAdam(self.model_, self.learning_rate_init, self.beta_1,
                                    self.beta_2, self.epsilon)

    def _fit_stochastic(self, X: np.ndarray, y: np.ndarray, target: np.ndarray,
                        sample_weight: Any, incremental: bool) -> None:
        model = self.model_
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = self._make_optimizer()
        optimizer = self._optimizer
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        X_val: Any
        y_val: Any
        weight_val: Any
        if early_stopping:
            stratify = y if is_classifier(self) and self.n_outputs_ == 1 else None
            arrays = [X, target] if sample_weight is None else [X, target, sample_weight]
            split = train_test_split(*arrays, random_state=self._random_state,
                                     test_size=self.validation_fraction, stratify=stratify)
            X_train, X_val, target_train, target_val = split[:4]
            weight_train, weight_val = (split[4], split[5]) if sample_weight is not None \
                else (None, None)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            y_val = self._decode_target(target_val)
        else:
            X_train, target_train, weight_train = X, target, sample_weight
            X_val = y_val = weight_val = None
        n_samples = X_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=int)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It "
                              "is going to be clipped", stacklevel=4)
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        loss = self._bp_loss()
        index: Any
        constant = 0.0 if weight_train is not None else \
            self._loss_constant(target_train, None) * n_samples
        alpha = float(self.alpha)
        model.train()
        # preallocated batch buffers (by batch length) for the shuffled gathers
        x_buffers: dict[int, np.ndarray] = {}
        t_buffers: dict[int, np.ndarray] = {}
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    # what sklearn.utils.shuffle draws, without its per-call checks
                    order = np.arange(n_samples)
                    self._random_state.shuffle(order)
                    sample_idx = sample_idx[order]
                accumulated = 0.0
                for start in range(0, n_samples, batch_size):
                    batch = slice(start, min(start + batch_size, n_samples))
                    size = batch.stop - batch.start
                    if self.shuffle:
                        index = sample_idx[batch]
                        xb = x_buffers.get(size)
                        if xb is None:
                            xb = x_buffers[size] = np.empty((size, X_train.shape[1]),
                                                            X_train.dtype)
                            t_buffers[size] = np.empty((size, *target_train.shape[1:]),
                                                       target_train.dtype)
                        tb = t_buffers[size]
                        np.take(X_train, index, axis=0, out=xb)
                        np.take(target_train, index, axis=0, out=tb)
                    else:
                        index = batch
                        xb, tb = X_train[batch], target_train[batch]
                    if weight_train is None:
                        optimizer.strength = alpha / size
                        value = model.train_step(xb, tb, loss, optimizer, keep_grads=True)
                    else:
                        wb = weight_train[index]
                        optimizer.strength = alpha / float(wb.sum(dtype=np.float64))
                        value, _ = model.loss_and_grad(xb, tb, loss, sample_weight=wb)
                        optimizer.step()
                        value += self._loss_constant(tb, wb)
                    accumulated += (value + optimizer.penalty) * size
                self.n_iter_ += 1
                self.loss_ = (accumulated + constant) / n_samples
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
                self._update_no_improvement_count(early_stopping, X_val, y_val, weight_val)
                if isinstance(optimizer, _solvers.SklearnSGD) \
                        and optimizer.schedule == "invscaling":
                    optimizer.set_learning_rate(
                        float(optimizer.lr_init) / (self.t_ + 1) ** optimizer.power_t)
                if self._no_improvement_count > self.n_iter_no_change:
                    what = "Validation score" if early_stopping else "Training loss"
                    message = (f"{what} did not improve more than tol={self.tol:f} for "
                               f"{self.n_iter_no_change} consecutive epochs.")
                    if self._trigger_stopping(message):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter})"
                                  " reached and the optimization hasn't converged yet.",
                                  ConvergenceWarning, stacklevel=4)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
        finally:
            model.eval()
        if early_stopping:
            if self._best_params is not None:
                model.params[...] = self._best_params
            # as in scikit-learn, whose restored best weights are then the live ones:
            # a warm start that finds no better score keeps its last weights
            self._best_params = None

    def _trigger_stopping(self, message: str) -> bool:
        optimizer = self._optimizer
        if not isinstance(optimizer, _solvers.SklearnSGD) or optimizer.schedule != "adaptive":
            if self.verbose:
                print(message + " Stopping.")
            return True
        if optimizer.lr <= 1e-6:
            if self.verbose:
                print(message + " Learning rate too small. Stopping.")
            return True
        optimizer.set_learning_rate(optimizer.lr / 5.0)
        if self.verbose:
            print(message + f" Setting learning rate to {optimizer.lr:f}")
        return False

    def _update_no_improvement_count(self, early_stopping: bool, X_val: Any, y_val: Any,
                                     weight_val: Any) -> None:
        if early_stopping:
            score = self._score(X_val, y_val, weight_val)
            assert self.validation_scores_ is not None
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            best = self.best_validation_score_
            assert best is not None
            if score < best + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > best:
                self.best_validation_score_ = score
                self._best_params = self.model_.params.copy()
        else:
            last = self.loss_curve_[-1]
            best_loss = self.best_loss_
            assert best_loss is not None
            if last > best_loss - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last < best_loss:
                self.best_loss_ = last

    def _fit_lbfgs(self, X: np.ndarray, y: np.ndarray, target: np.ndarray,
                   sample_weight: Any) -> None:
        model = self.model_
        total = X.shape[0] if sample_weight is None else float(sample_weight.sum())
        model.eval()
        loss: Any = self._bp_loss()
        weight = sample_weight
        constant = self._loss_constant(target, sample_weight)
        if constant:
            # L-BFGS-B's stopping test depends on the objective's size: hand it
            # scikit-learn's value (the Poisson deviance's constant included)
            bp_loss = loss

            def loss(output: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
                value, grad = bp_loss(output, t, sample_weight)
                return value + constant, grad
            weight = None
        result = minimize(model, X, target, loss, method="L-BFGS-B",
                          l2=float(self.alpha) / total, sample_weight=weight,
                          maxfun=self.max_fun, maxiter=self.max_iter, gtol=self.tol)
        self.n_iter_ = min(int(result.nit), self.max_iter)
        self.loss_ = float(result.fun)
        if result.status != 0:
            message = result.message
            if isinstance(message, bytes):
                message = message.decode("latin1")
            warnings.warn(f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                          f"(status={result.status}): {message}. Increase the number of "
                          "iterations (max_iter) or scale the data.",
                          ConvergenceWarning, stacklevel=4)
        if self.verbose:
            print(f"L-BFGS-B: {self.n_iter_} iterations, loss = {self.loss_:.8f}")

    # ------------------------------------------------------------ predicting
    def _output(self, X: Any, check_input: bool = True) -> np.ndarray:
        """The network's raw output (before the output activation)."""
        check_is_fitted(self)
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        if scipy.sparse.issparse(X):
            X = X.toarray()
        return self.model_.predict(np.asarray(X, dtype=self.model_.dtype))

    def _score_with_function(self, X: Any, y: Any, sample_weight: Any,
                             score_function: Any) -> float:
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return float(score_function(y, y_pred, sample_weight=sample_weight))

    def _score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        raise NotImplementedError

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        raise NotImplementedError

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> Any:
        raise NotImplementedError

    def _output_activation(self) -> str:
        raise NotImplementedError

    def _target(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _decode_target(self, target: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier`` on bpcore.

    Takes scikit-learn's parameters with the same names, defaults and meanings
    (see ``sklearn.neural_network.MLPClassifier``) and trains the same network the
    same way, several times faster. The bpcore-only parameters after them keep
    scikit-learn's behaviour at their defaults.

    Parameters
    ----------
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate, \
learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, \
warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction, \
beta_1, beta_2, epsilon, n_iter_no_change, max_fun
        As in scikit-learn. ``activation`` is one of "identity", "logistic", "tanh",
        "relu"; ``solver`` one of "lbfgs", "sgd", "adam".
    dtype : None, float32 or float64, default=None
        The precision of the network. None follows X as scikit-learn does (float32
        input trains in float32; anything else in float64).
    dropout : float in [0, 1), default=0.0
        Dropout on every hidden layer while training (inverted dropout).
    class_weight : dict, "balanced" or None, default=None
        Per-class weights multiplying ``sample_weight`` (scikit-learn's convention;
        not for multi-label targets).

    Attributes
    ----------
    classes_ : ndarray or list of ndarray
        The class labels.
    coefs_, intercepts_ : list of ndarray
        Weight matrices (n_units[i], n_units[i + 1]) and bias vectors, as views into
        ``model_.params``: in-place edits and item assignments change the model.
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, \
n_iter_, t_, n_layers_, n_outputs_, out_activation_, n_features_in_, \
feature_names_in_
        As in scikit-learn.
    model_ : bpcore.Model
        The underlying network; its output is the logits (the output activation,
        softmax or logistic, is applied by ``predict_proba``).
    """

    _parameter_constraints: dict[str, list[Any]] = {
        **_SkClassifier._parameter_constraints,
        **_EXTRA_CONSTRAINTS,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *,
                 solver: str = "adam", alpha: float = 0.0001, batch_size: Any = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 0.001,
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Any = None, tol: float = 1e-4, verbose: Any = False,
                 warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-8, n_iter_no_change: Any = 10,
                 max_fun: int = 15000, dtype: Any = None, dropout: float = 0.0,
                 class_weight: Any = None) -> None:
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            loss="log_loss", shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            dtype=dtype, dropout=dropout)
        self.class_weight = class_weight

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> Any:
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same "
                                     "classes as in the previous call to fit. Previously "
                                     f"got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError("`y` has classes not in `self.classes_`. "
                                 f"`self.classes_` has {self.classes_}. 'y' has {classes}.")
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    def _class_sample_weight(self, y: np.ndarray, sample_weight: Any,
                             incremental: bool) -> Any:
        if self.class_weight is None:
            return sample_weight
        if incremental and isinstance(self.class_weight, str):
            raise ValueError("class_weight='balanced' needs the whole data set: it is not "
                             "supported by partial_fit (pass a dict of class weights)")
        if self._label_binarizer.y_type_.startswith("multilabel"):
            raise ValueError("class_weight is not supported for multi-label targets")
        labels = self._label_binarizer.inverse_transform(y)
        weight = compute_sample_weight(self.class_weight, labels)
        return weight if sample_weight is None else weight * sample_weight

    def _output_activation(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _bp_loss(self) -> Loss:
        if self.out_activation_ == "softmax":
            return _solvers.log_loss()
        return _solvers.SummedLogisticLoss()

    def _target(self, y: np.ndarray) -> np.ndarray:
        """Binarized y -> what the loss takes: class indices (softmax) or 0/1 floats."""
        if self.out_activation_ == "softmax":
            return np.ascontiguousarray(np.argmax(y, axis=1), dtype=np.int64)
        return np.ascontiguousarray(y, dtype=self.model_.dtype)

    def _decode_target(self, target: np.ndarray) -> np.ndarray:
        if target.ndim == 1:
            return self.classes_[target]
        return self._label_binarizer.inverse_transform(target)

    def _probabilities(self, output: np.ndarray) -> np.ndarray:
        if self.out_activation_ == "softmax":
            return scipy.special.softmax(output, axis=1)
        return scipy.special.expit(output)

    def predict(self, X: Any) -> np.ndarray:
        """Predict using the multi-layer perceptron classifier.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray, shape (n_samples,) or (n_samples, n_classes)
            The predicted classes.
        """
        return self._predict(X)      # (_output checks that it is fitted)

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        probabilities = self._probabilities(self._output(X, check_input))
        if self.n_outputs_ == 1:
            probabilities = probabilities.ravel()
        return self._label_binarizer.inverse_transform(probabilities)

    def _score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        return self._score_with_function(X, y, sample_weight, accuracy_score)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None,
                    classes: Any = None) -> MLPClassifier:
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,)
            The target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.
        classes : array of shape (n_classes,), default=None
            Classes across all calls to partial_fit (``np.unique(y_all)``). Required
            on the first call, optional later; y need not hold every class.

        Returns
        -------
        self : object
            Trained MLP model.
        """
        self._validate_params()
        if getattr(self, "classes_", None) is None and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None:
            given = unique_labels(classes)
            if getattr(self, "classes_", None) is not None:
                if not np.array_equal(self.classes_, given):
                    raise ValueError(f"`classes={classes!r}` is not the same as on last call "
                                     f"to partial_fit, was: {self.classes_!r}")
            else:
                self.classes_ = given
                self._label_binarizer = LabelBinarizer()
                if type_of_target(y).startswith("multilabel"):
                    self._label_binarizer.fit(y)
                else:
                    self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Return the log of probability estimates.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        log_y_prob : ndarray of shape (n_samples, n_classes)
            The predicted log-probability of the sample for each class in the model,
            where classes are ordered as they are in ``classes_``. Equivalent to
            ``log(predict_proba(X))``, as in scikit-learn (so -inf where a
            probability underflows to 0).
        """
        probabilities = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(probabilities, out=probabilities)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
            The predicted probability of the sample for each class in the model,
            classes ordered as in ``classes_``.
        """
        probabilities = self._probabilities(self._output(X))
        if self.n_outputs_ == 1:
            p = probabilities.ravel()
            return np.vstack([1 - p, p]).T
        return probabilities

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor`` on bpcore.

    Takes scikit-learn's parameters with the same names, defaults and meanings
    (see ``sklearn.neural_network.MLPRegressor``), including ``loss`` ("squared_error"
    or "poisson", the latter with a log link: the network's output is the log of the
    predicted mean). The bpcore-only parameters after them keep scikit-learn's
    behaviour at their defaults.

    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default="squared_error"
        Half the squared error, or half the Poisson deviance (targets >= 0).
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate, \
learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, \
warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction, \
beta_1, beta_2, epsilon, n_iter_no_change, max_fun
        As in scikit-learn.
    dtype : None, float32 or float64, default=None
        The precision of the network. None follows X as scikit-learn does.
    dropout : float in [0, 1), default=0.0
        Dropout on every hidden layer while training.

    Attributes
    ----------
    coefs_, intercepts_ : list of ndarray
        Views into ``model_.params`` (see ``MLPClassifier``).
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, \
n_iter_, t_, n_layers_, n_outputs_, out_activation_, n_features_in_, \
feature_names_in_
        As in scikit-learn.
    model_ : bpcore.Model
        The underlying network (for "poisson", its output is the log of the mean).

    Notes
    -----
    With several outputs, the gradient is that of the reported loss (the mean over
    outputs); scikit-learn's steps are ``n_outputs`` times larger there. With one
    output the two are the same.
    """

    _parameter_constraints: dict[str, list[Any]] = {
        **_SkRegressor._parameter_constraints,
        **_EXTRA_CONSTRAINTS,
    }

    def __init__(self, loss: str = "squared_error", hidden_layer_sizes: Any = (100,),
                 activation: str = "relu", *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: Any = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5,
                 max_iter: int = 200, shuffle: bool = True, random_state: Any = None,
                 tol: float = 1e-4, verbose: Any = False, warm_start: bool = False,
                 momentum: float = 0.9, nesterovs_momentum: bool = True,
                 early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: Any = 10, max_fun: int = 15000, dtype: Any = None,
                 dropout: float = 0.0) -> None:
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            loss=loss, shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            dtype=dtype, dropout=dropout)

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> Any:
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and (np.asarray(y) < 0).any():
            raise ValueError("loss='poisson' needs non-negative targets y; got a minimum "
                             f"of {np.min(y)}")
        return X, y

    def _output_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def _bp_loss(self) -> Loss:
        if self.loss == "poisson":
            return _solvers.SummedPoissonLoss()
        return _solvers.HalfSquaredError()

    def _loss_constant(self, y: np.ndarray, sample_weight: Any) -> float:
        if self.loss != "poisson":
            return 0.0
        y = np.asarray(y, dtype=np.float64)
        per_sample = (scipy.special.xlogy(y, y) - y).sum(axis=1)
        return float(np.average(per_sample, weights=sample_weight))

    def _target(self, y: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(y, dtype=self.model_.dtype)

    def _decode_target(self, target: np.ndarray) -> np.ndarray:
        return target[:, 0] if target.shape[1] == 1 else target

    def predict(self, X: Any) -> np.ndarray:
        """Predict using the multi-layer perceptron model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted values.
        """
        return self._predict(X)      # (_output checks that it is fitted)

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        output = self._output(X, check_input)
        if self.out_activation_ == "exp":
            output = np.exp(output)
        return output.ravel() if output.shape[1] == 1 else output

    def _score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        return self._score_with_function(X, y, sample_weight, r2_score)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        # Poisson needs y >= 0 (scikit-learn's own MLPRegressor fits negative targets to
        # a NaN loss; bpcore refuses them, and says so here as PoissonRegressor does)
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
        y : ndarray of shape (n_samples,)
            The target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        self : object
            Trained MLP model.
        """
        self._validate_params()
        return self._fit(X, y, sample_weight, incremental=True)

