"""bp.minimize: SciPy's optimizers over the flat parameter buffer.

The oracle is SciPy itself run on a plain NumPy objective (tests/numpy_reference.py)
that returns fresh arrays: every point SciPy evaluates, and the result, must agree.
scikit-learn's MLPClassifier(solver="lbfgs") is the peer for the meaning of l2.
"""
import doctest
import sys
import warnings

import numpy as np
import numpy_reference as ref
import pytest
import scipy.optimize
from scipy import special

import bpcore as bp
from bpcore.nn.losses import LOSSES

REFERENCE_LOSSES = {"mse": ref.mse, "bce": ref.bce_with_logits,
                    "cross_entropy": ref.cross_entropy}


# ----------------------------------------------------------------------- helpers
def build(sizes, dtype=np.float64, seed=0, dropout=0.0):
    """A Model of Dense layers from [(n_in, n_out, activation), ...]."""
    return bp.Model([bp.Dense(n_in, n_out, act, dropout=dropout if i == 0 else 0.0)
                     for i, (n_in, n_out, act) in enumerate(sizes)], dtype=dtype, seed=seed)


def unpack(x, sizes):
    """The layers of the flat vector x, laid out as bpcore documents its buffer: per
    layer W (n_in, n_out) row by row, then b."""
    layers, offset = [], 0
    for n_in, n_out, activation in sizes:
        W = x[offset:offset + n_in * n_out].reshape(n_in, n_out)
        offset += n_in * n_out
        b = x[offset:offset + n_out]
        offset += n_out
        layers.append({"W": W, "b": b, "c": None, "activation": activation})
    assert offset == x.size
    return layers


def reference(sizes, X, y, loss, weight=None, l2=0.0):
    """The objective in plain NumPy: (value, new gradient array) of x."""
    def objective(x):
        layers = unpack(np.array(x, dtype=np.float64), sizes)
        output, caches = ref.network_forward(layers, X)
        value, grad_output = REFERENCE_LOSSES[loss](output, y, weight)
        grads, _ = ref.network_backward(layers, caches, grad_output)
        parts = []
        for layer, grad in zip(layers, grads):
            value += l2 / 2 * np.sum(layer["W"] ** 2)
            parts += [(grad["W"] + l2 * layer["W"]).ravel(), grad["b"]]
        return value, np.concatenate(parts)
    return objective


def recording(function):
    """``function`` and the list of the points it is called at (copies)."""
    points = []

    def wrapper(x):
        points.append(np.array(x, dtype=np.float64))
        return function(x)
    return wrapper, points


def recording_loss(name, model):
    """A bpcore loss of kind ``name`` that records ``model.params`` at each evaluation
    (the point SciPy handed in, written into the buffer)."""
    class Recording(LOSSES[name]):
        def compute(self, output, target, weight, scale):
            self.points.append(np.array(model.params, dtype=np.float64))
            return super().compute(output, target, weight, scale)
    loss = Recording()
    loss.points = []
    return loss


def problem(loss, seed=0, n=40):
    """(sizes, X, y for bpcore, y for the reference) of a small network for ``loss``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    if loss == "mse":
        sizes = [(3, 5, "tanh"), (5, 2, "identity")]
        y = np.column_stack([np.sin(X[:, 0]), X[:, 1] * X[:, 2]])
        return sizes, X, y, y
    if loss == "bce":
        sizes = [(3, 5, "tanh"), (5, 1, "identity")]
        y = (X[:, 0] * X[:, 1] > 0).astype(np.float64)
        return sizes, X, y, y.reshape(-1, 1)
    sizes = [(3, 6, "relu"), (6, 4, "sigmoid"), (4, 3, "identity")]
    y = (np.digitize(X[:, 0] + 0.5 * X[:, 1], [-0.5, 0.5])).astype(np.int64)
    return sizes, X, y, y


def assert_same_trajectory(bp_points, ref_points, result, ref_result, rtol=1e-12):
    """bpcore evaluated the reference's points, in order (plus, at most, one more at
    result.x to leave its gradient in model.grads), and returned the same result."""
    assert len(ref_points) >= 2
    assert len(bp_points) - len(ref_points) in (0, 1)
    scale = max(np.abs(p).max() for p in ref_points)
    for i, (mine, theirs) in enumerate(zip(bp_points, ref_points)):
        np.testing.assert_allclose(mine, theirs, rtol=rtol, atol=rtol * scale,
                                   err_msg=f"evaluation {i}")
    for extra in bp_points[len(ref_points):]:
        np.testing.assert_array_equal(extra, result.x)
    np.testing.assert_allclose(result.x, ref_result.x, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(result.fun, ref_result.fun, rtol=1e-10)
    assert (result.nit, result.nfev) == (ref_result.nit, ref_result.nfev)


# -------------------------------------------- (a) the trajectory equals SciPy's own
@pytest.mark.parametrize("method", ["L-BFGS-B", "CG", "BFGS"])
@pytest.mark.parametrize("loss", ["mse", "bce", "cross_entropy"])
@pytest.mark.parametrize("l2", [0.0, 0.05])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_every_evaluated_point_and_the_result_equal_scipy_on_a_numpy_objective(
        method, loss, l2, weighted):
    sizes, X, y, y_ref = problem(loss)
    weight = np.random.default_rng(7).uniform(0.2, 2.0, X.shape[0]) if weighted else None
    model = build(sizes)
    x0 = model.params.copy()
    objective, ref_points = recording(reference(sizes, X, y_ref, loss, weight, l2))
    options = {"maxiter": 8}
    ref_result = scipy.optimize.minimize(objective, x0, jac=True, method=method,
                                         options=options)
    recorder = recording_loss(loss, model)
    result = bp.minimize(model, X, y, recorder, method=method, l2=l2, sample_weight=weight,
                         options=options)
    # bpcore's kernels and NumPy round differently (1e-16); CG's line searches grow
    # that to about 1e-11 over 8 iterations (the others stay near 1e-13). A gradient
    # buffer that SciPy sees overwritten changes the points by 1e-1 and more.
    rtol = 1e-9 if method == "CG" else 1e-11
    assert_same_trajectory(recorder.points, ref_points, result, ref_result, rtol=rtol)
    np.testing.assert_array_equal(model.params, result.x)
    value, grad = reference(sizes, X, y_ref, loss, weight, l2)(result.x)
    np.testing.assert_allclose(model.grads, grad, rtol=1e-9, atol=1e-12)


def test_the_reference_layout_is_the_models_parameter_table():
    sizes = problem("cross_entropy")[0]
    model = build(sizes)
    layers = unpack(model.params.copy(), sizes)
    assert len(model.parameter_table) == 2 * len(sizes)
    for (name, layer, attr, shape, _), (i, key) in zip(
            model.parameter_table, [(i, k) for i in range(len(sizes)) for k in "Wb"]):
        assert name == f"layers.{i}.{key}" and shape == layers[i][key].shape
        np.testing.assert_array_equal(getattr(layer, attr), layers[i][key])


def test_a_custom_loss_callable_and_a_loss_name_follow_the_same_trajectory():
    sizes, X, y, _ = problem("mse")
    x0 = build(sizes).params.copy()
    ref_objective, ref_points = recording(reference(sizes, X, y, "mse"))
    ref_result = scipy.optimize.minimize(ref_objective, x0, jac=True, method="BFGS",
                                         options={"maxiter": 10})
    points = []
    model = build(sizes)

    def squared_error(output, target):
        points.append(model.params.copy())
        return ref.mse(output, target)
    result = bp.minimize(model, X, y, squared_error, method="BFGS", maxiter=10)
    assert_same_trajectory(points, ref_points, result, ref_result)
    named = build(sizes)
    again = bp.minimize(named, X, y, "mse", method="bfgs", maxiter=10)
    np.testing.assert_allclose(again.x, ref_result.x, rtol=1e-12, atol=1e-14)


def test_keyword_options_and_an_options_dict_are_the_same_options():
    sizes, X, y, y_ref = problem("bce")
    x0 = build(sizes).params.copy()
    ref_result = scipy.optimize.minimize(reference(sizes, X, y_ref, "bce"), x0, jac=True,
                                         method="L-BFGS-B",
                                         options={"maxiter": 7, "maxcor": 3})
    for kwargs in ({"maxiter": 7, "maxcor": 3}, {"options": {"maxiter": 7, "maxcor": 3}},
                   {"options": {"maxiter": 7}, "maxcor": 3}):
        model = build(sizes)
        result = bp.minimize(model, X, y, "bce", **kwargs)
        assert result.nit == 7
        np.testing.assert_allclose(result.x, ref_result.x, rtol=1e-12, atol=1e-14)


def test_tol_bounds_and_callback_reach_scipy():
    sizes, X, y, y_ref = problem("mse")
    x0 = build(sizes).params.copy()
    bounds = [(-0.3, 0.3)] * x0.size
    seen_ref = []
    ref_result = scipy.optimize.minimize(reference(sizes, X, y_ref, "mse"), x0, jac=True,
                                         method="L-BFGS-B", bounds=bounds, tol=1e-3,
                                         callback=lambda xk: seen_ref.append(xk.copy()))
    seen = []
    model = build(sizes)
    result = bp.minimize(model, X, y, "mse", bounds=bounds, tol=1e-3,
                         callback=lambda xk: seen.append(xk.copy()))
    assert np.abs(result.x).max() <= 0.3
    np.testing.assert_allclose(result.x, ref_result.x, rtol=1e-12, atol=1e-14)
    assert len(seen) == len(seen_ref) == result.nit
    np.testing.assert_allclose(seen, seen_ref, rtol=1e-12, atol=1e-14)


def test_a_callback_that_returns_stop_iteration_ends_the_run_at_a_written_point():
    sizes, X, y, _ = problem("mse")
    model = build(sizes)

    iterates = []

    def stop(intermediate_result):
        iterates.append(intermediate_result.x.copy())
        if len(iterates) == 3:
            raise StopIteration
    result = bp.minimize(model, X, y, "mse", method="BFGS", callback=stop)
    assert result.nit == 3
    np.testing.assert_array_equal(result.x, iterates[-1])
    np.testing.assert_array_equal(model.params, result.x)


def test_dropout_is_off_during_minimize_and_the_training_mode_is_restored():
    sizes, X, y, y_ref = problem("mse")
    model = build(sizes, dropout=0.5)
    x0 = model.params.copy()
    ref_result = scipy.optimize.minimize(reference(sizes, X, y_ref, "mse"), x0, jac=True,
                                         method="L-BFGS-B", options={"maxiter": 10})
    result = bp.minimize(model, X, y, "mse", maxiter=10)
    np.testing.assert_allclose(result.x, ref_result.x, rtol=1e-12, atol=1e-14)
    assert model.training
    model.eval()
    bp.minimize(model, X, y, "mse", maxiter=2)
    assert not model.training


# ------------------------------------------------------ (b) scikit-learn's lbfgs MLP
@pytest.mark.parametrize("n_classes, activation, alpha, weighted", [
    (2, "tanh", 1e-3, False),
    (2, "relu", 0.5, False),
    (3, "tanh", 1e-2, False),
    (3, "logistic", 0.1, True),
])
def test_mlpclassifier_lbfgs_ends_at_the_same_weights(n_classes, activation, alpha,
                                                      weighted):
    neural_network = pytest.importorskip("sklearn.neural_network")
    from sklearn.exceptions import ConvergenceWarning
    rng = np.random.default_rng(3)
    n = 80
    X = rng.normal(size=(n, 4))
    y = np.digitize(X[:, 0] - X[:, 1] + 0.3 * rng.normal(size=n),
                    np.linspace(-1, 1, n_classes + 1)[1:-1])
    weight = rng.uniform(0.5, 2.0, n) if weighted else None
    hidden = 6
    bp_activation = {"tanh": "tanh", "relu": "relu", "logistic": "sigmoid"}[activation]
    n_out = 1 if n_classes == 2 else n_classes
    model = bp.Model([bp.Dense(4, hidden, bp_activation), bp.Dense(hidden, n_out)], seed=1)

    clf = neural_network.MLPClassifier(hidden_layer_sizes=(hidden,), activation=activation,
                                       solver="lbfgs", alpha=alpha, max_iter=1,
                                       warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y, sample_weight=weight)      # sets up classes, layers and activations
        # then start from bpcore's weights; sklearn's coefs_ are (n_in, n_out) like W
        clf.coefs_ = [layer.W.copy() for layer in model.layers]
        clf.intercepts_ = [layer.b.copy() for layer in model.layers]
        clf.max_iter = 20
        clf.fit(X, y, sample_weight=weight)

    total = n if weight is None else weight.sum()
    loss = "bce" if n_classes == 2 else "cross_entropy"
    result = bp.minimize(model, X, y, loss, l2=alpha / total, sample_weight=weight,
                         options={"maxiter": 20, "maxfun": clf.max_fun, "gtol": clf.tol})
    assert result.nit == clf.n_iter_
    for layer, coef, intercept in zip(model.layers, clf.coefs_, clf.intercepts_):
        # (the two pack the parameters in different orders, so L-BFGS-B's sums
        # round differently: about 1e-12 after 20 iterations)
        np.testing.assert_allclose(layer.W, coef, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(layer.b, intercept, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(result.fun, clf.loss_, rtol=1e-10)
    proba = model.predict_proba(X, loss)
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ (c) float32
def test_a_float32_model_is_optimized_in_float64_with_float32_evaluations():
    sizes, X, y, y_ref = problem("cross_entropy")
    model = build(sizes, dtype=np.float32)
    x0 = model.params.astype(np.float64)
    X32 = X.astype(np.float32).astype(np.float64)       # what the float32 model sees
    objective = reference(sizes, X32, y_ref, "cross_entropy")
    ref_result = scipy.optimize.minimize(objective, x0, jac=True, method="L-BFGS-B",
                                         options={"maxiter": 10})
    recorder = recording_loss("cross_entropy", model)
    iterates = []
    result = bp.minimize(model, X, y, recorder, maxiter=10,
                         callback=lambda xk: iterates.append(xk.copy()))

    assert model.params.dtype == np.float32
    assert result.x.dtype == result.jac.dtype == np.float64
    # SciPy's iterates are float64 points; each was evaluated rounded to float32
    assert any(not np.array_equal(xk, xk.astype(np.float32)) for xk in iterates)
    for xk in iterates:
        assert any(np.array_equal(point, xk.astype(np.float32)) for point in recorder.points)
    np.testing.assert_array_equal(model.params, result.x.astype(np.float32))
    value, grad = objective(model.params.astype(np.float64))
    np.testing.assert_allclose(result.fun, value, rtol=1e-5)
    np.testing.assert_allclose(model.grads, grad, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(result.jac, grad, rtol=1e-3, atol=1e-5)
    # float32 rounding nudges the path: it stays close to the float64 run for a while
    np.testing.assert_allclose(result.x, ref_result.x, rtol=1e-2, atol=1e-3)
    assert result.fun < objective(x0)[0]


# ---------------------------------------------------------- (d) gradient-free methods
@pytest.mark.parametrize("method", ["Nelder-Mead", "Powell"])
def test_gradient_free_methods_get_the_value_only_and_follow_scipy(method):
    sizes, X, y, y_ref = problem("bce")
    sizes = [(3, 2, "tanh"), (2, 1, "identity")]     # a few parameters: a few evaluations
    model = build(sizes)
    x0 = model.params.copy()
    value_only = reference(sizes, X, y_ref, "bce")
    ref_objective, ref_points = recording(lambda x: value_only(x)[0])
    options = {"maxfev": 60}
    ref_result = scipy.optimize.minimize(ref_objective, x0, method=method, options=options)
    recorder = recording_loss("bce", model)
    with warnings.catch_warnings():
        # SciPy warns when a gradient-free method is handed a gradient
        warnings.simplefilter("error", RuntimeWarning)
        result = bp.minimize(model, X, y, recorder, method=method, options=options)
    assert_same_trajectory(recorder.points, ref_points, result, ref_result, rtol=1e-10)
    assert result.fun < value_only(x0)[0]


def test_every_listed_method_runs_and_leaves_result_x_in_the_model():
    sizes, X, y, _ = problem("mse", n=20)
    sizes = [(3, 2, "tanh"), (2, 2, "identity")]
    start = build(sizes).params.copy()
    value_at = reference(sizes, X, y, "mse")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")               # methods' own convergence notes
        for method in bp.optim.GRADIENT_METHODS + bp.optim.GRADIENT_FREE_METHODS:
            model = build(sizes)
            result = bp.minimize(model, X, y, "mse", method=method, maxiter=5)
            np.testing.assert_array_equal(model.params, result.x, err_msg=method)
            assert value_at(result.x)[0] < value_at(start)[0], method


# -------------------------------------------------------------- (e) bad input
def _bad_calls():
    sizes, X, y, _ = problem("bce")
    w = np.ones(X.shape[0])
    return [
        ({"X": X[:, :2]}, ValueError, "X has 2 features, the model expects 3"),
        ({"y": y[:-1]}, ValueError, "y has 39 samples but X has 40"),
        ({"y": y + 1}, ValueError, r"\by of BCEWithLogitsLoss must lie in \[0, 1\]"),
        ({"loss": "hinge"}, ValueError, "loss must be one of"),
        ({"loss": 3}, TypeError, "loss must be a loss name"),
        ({"sample_weight": w[:-1]}, ValueError, r"sample_weight must have shape \(40,\)"),
        ({"sample_weight": -w}, ValueError, "sample_weight must be non-negative"),
        ({"sample_weight": 0 * w}, ValueError, "positive sum"),
        ({"loss": lambda o, t: ref.mse(o, t[:, None]), "sample_weight": w}, TypeError,
         "sample_weight needs a bpcore Loss"),
        ({"l2": -1.0}, ValueError, "l2 must be a finite number"),
        ({"l2": "big"}, TypeError, "l2 must be a real number"),
        ({"tol": float("nan")}, ValueError, "tol must be a finite number"),
        ({"method": "newton"}, ValueError, "method must be one of"),
        ({"method": "trust-ncg"}, ValueError, "needs the Hessian"),
        ({"method": 3}, TypeError, "method must be a name"),
        ({"callback": 3}, TypeError, "callback must be callable"),
        ({"options": [("maxiter", 3)]}, TypeError, "options must be a dict"),
        ({"options": {"maxiter": 3}, "maxiter": 4}, ValueError, "given both"),
    ]


@pytest.mark.parametrize("index", range(len(_bad_calls())))
def test_bad_arguments_raise_before_any_evaluation_and_change_nothing(index):
    changes, error, match = _bad_calls()[index]
    sizes, X, y, _ = problem("bce")
    model = build(sizes)
    model.grads[...] = np.arange(model.n_params)
    params, grads = model.params.copy(), model.grads.copy()
    recorder = recording_loss("bce", model)
    arguments = {"X": X, "y": y, "loss": recorder, **changes}
    with pytest.raises(error, match=match):
        bp.minimize(model, **arguments)
    np.testing.assert_array_equal(model.params, params)
    np.testing.assert_array_equal(model.grads, grads)
    assert recorder.points == [] and model.training and model.fit_loss is None


def test_a_model_that_is_not_a_model_is_refused():
    with pytest.raises(TypeError, match="model must be a bpcore Model; got an array"):
        bp.minimize(np.zeros(3), np.zeros((2, 3)), np.zeros(2), "mse")


@pytest.mark.parametrize("where", ["callback", "loss"])
def test_an_error_during_the_run_restores_the_start(where):
    sizes, X, y, _ = problem("mse")
    model = build(sizes)
    model.grads[...] = 1.5
    params, grads = model.params.copy(), model.grads.copy()
    calls = []

    def fail_later(*args):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("stop here")
        return ref.mse(*args) if where == "loss" else None
    arguments = ({"loss": "mse", "callback": fail_later} if where == "callback"
                 else {"loss": fail_later})
    with pytest.raises(RuntimeError, match="stop here"):
        bp.minimize(model, X, y, **arguments)
    assert len(calls) == 4
    np.testing.assert_array_equal(model.params, params)
    np.testing.assert_array_equal(model.grads, grads)
    assert model.training and model.fit_loss is None


# ------------------------------------------------------------- non-finite losses
@pytest.mark.parametrize("bad", ["nan value", "inf value", "inf gradient"])
def test_a_non_finite_evaluation_stops_at_the_lowest_finite_point(bad):
    sizes, X, y, _ = problem("mse")
    model = build(sizes)
    seen = []                       # (point, value) of every evaluation

    def breaks_at_the_sixth(output, target):
        value, grad = ref.mse(output, target)
        seen.append((model.params.copy(), value))
        if len(seen) == 6:
            if bad == "inf gradient":
                grad = grad.copy()
                grad[0, 0] = np.inf
            else:
                value = float(bad.split()[0])
        return value, grad
    with pytest.raises(bp.TrainingDiverged, match="at evaluation 6; model.params holds the "
                                                  "lowest-loss point evaluated") as caught:
        bp.minimize(model, X, y, breaks_at_the_sixth, method="BFGS")
    assert isinstance(caught.value, FloatingPointError)
    assert ("a gradient is not finite" if bad == "inf gradient"
            else f"the loss is {bad.split()[0]}") in str(caught.value)
    finite = seen[:5]
    best_point, best_value = min(finite, key=lambda pair: pair[1])
    np.testing.assert_array_equal(model.params, best_point)
    value, grad = reference(sizes, X, y, "mse")(best_point)
    np.testing.assert_allclose(model.grads, grad, rtol=1e-10, atol=1e-14)
    assert best_value == min(v for _, v in finite) < seen[0][1]
    assert model.training


def test_a_non_finite_start_changes_nothing():
    sizes, X, y, _ = problem("mse")
    model = build(sizes)
    model.grads[...] = 2.0
    params = model.params.copy()
    model.fit_loss = "mse"
    with pytest.raises(bp.TrainingDiverged, match="no point was finite"):
        bp.minimize(model, X, y, lambda output, target: (np.nan, np.zeros_like(output)))
    np.testing.assert_array_equal(model.params, params)
    assert (model.grads == 2.0).all()
    assert model.fit_loss == "mse"


def test_an_overflowing_network_stops_at_its_last_finite_point():
    # data near the top of float64: L-BFGS-B's first step overflows the loss
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3)) * 1e150
    y = rng.normal(size=(30, 1)) * 1e150
    model = bp.Model([bp.Dense(3, 8, "relu"), bp.Dense(8, 1)], seed=0)
    start = model.params.copy()
    with pytest.raises(bp.TrainingDiverged, match="the loss is (nan|inf)"):
        bp.minimize(model, X, y, "mse", maxiter=50)
    objective = reference([(3, 8, "relu"), (8, 1, "identity")], X, y, "mse")
    value, grad = objective(model.params)
    assert np.isfinite(model.params).all() and np.isfinite(value)
    assert value <= objective(start)[0]           # the lowest finite point (here, start)
    np.testing.assert_allclose(model.grads, grad, rtol=1e-10)


# ------------------------------------------ (f) the model holds result.x afterwards
def test_the_model_holds_result_x_and_its_gradient_even_when_not_evaluated_last():
    sizes, X, y, y_ref = problem("cross_entropy")
    model = build(sizes)
    recorder = recording_loss("cross_entropy", model)
    result = bp.minimize(model, X, y, recorder, method="Nelder-Mead", maxfev=80)
    # Nelder-Mead returns its best vertex, which it did not evaluate last: bpcore ran
    # one more evaluation there
    assert not np.array_equal(recorder.points[-2], result.x)
    np.testing.assert_array_equal(recorder.points[-1], result.x)
    np.testing.assert_array_equal(model.params, result.x)
    value, grad = reference(sizes, X, y_ref, "cross_entropy")(result.x)
    np.testing.assert_allclose(model.grads, grad, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(result.fun, value, rtol=1e-12)
    expected, _ = ref.network_forward(unpack(result.x, sizes), X)
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-12, atol=1e-14)


def test_the_result_is_scipys_and_predict_uses_the_new_parameters():
    sizes, X, y, _ = problem("mse")
    model = build(sizes)
    before = model.predict(X)
    result = bp.minimize(model, X, y, "mse", l2=1e-3, maxiter=30)
    assert isinstance(result, scipy.optimize.OptimizeResult)
    assert {"x", "fun", "jac", "nit", "nfev", "message", "success"} <= set(result)
    expected, _ = ref.network_forward(unpack(result.x, sizes), X)
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-12, atol=1e-14)
    assert ref.mse(model.predict(X), y)[0] < ref.mse(before, y)[0]
    np.testing.assert_allclose(model.grads, result.jac, rtol=1e-12, atol=1e-15)


def test_evaluate_and_predict_proba_default_to_the_loss_minimized():
    sizes, X, y, y_ref = problem("cross_entropy")
    model = build(sizes)
    result = bp.minimize(model, X, y, "cross_entropy", maxiter=15)
    logits, _ = ref.network_forward(unpack(result.x, sizes), X)
    np.testing.assert_allclose(model.evaluate(X, y)["loss"],
                               ref.cross_entropy(logits, y_ref)[0], rtol=1e-12)
    np.testing.assert_allclose(model.evaluate(X, y)["loss"], result.fun, rtol=1e-12)
    np.testing.assert_allclose(model.predict_proba(X), special.softmax(logits, axis=1),
                               rtol=1e-12, atol=1e-15)


def test_the_docstring_example_runs():
    module = sys.modules["bpcore.optim.minimize"]
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert tried >= 3 and failures == 0


@pytest.mark.parametrize("method,own", [("L-BFGS-B", True), ("l-bfgs-b", True),
                                        ("BFGS", False), ("CG", False)])
def test_lbfgsb_gets_the_models_own_gradient_buffer_and_the_others_a_copy(
        monkeypatch, method, own):
    """L-BFGS-B evaluates without a copy per call (its trajectory is held to SciPy's on
    fresh arrays by the test above); methods that keep old gradients get new arrays."""
    model = build([(3, 4, "tanh"), (4, 1, "identity")])
    X = np.random.default_rng(0).normal(size=(20, 3))
    y = X[:, :1] ** 2
    handed = []
    real = scipy.optimize.minimize

    def spy(fun, x0, **kwargs):
        def recording(x):
            value, grad = fun(x)
            handed.append(grad)
            return value, grad
        return real(recording, x0, **kwargs)

    monkeypatch.setattr(scipy.optimize, "minimize", spy)
    bp.minimize(model, X, y, "mse", method=method, maxiter=3)
    assert len(handed) >= 2
    assert all((grad is model.grads) == own for grad in handed)


def test_constraints_reach_scipy_and_hold_at_the_result():
    """SLSQP with an equality constraint on the vector: the sum of the parameters stays
    at its start, as SciPy enforces it on the same objective."""
    sizes, X, y, _ = problem("mse")
    model = build(sizes)
    total = float(model.params.sum())
    constraint = {"type": "eq", "fun": lambda x: np.sum(x) - total}
    result = bp.minimize(model, X, y, "mse", method="SLSQP", constraints=[constraint],
                         maxiter=15)
    assert abs(float(np.sum(result.x)) - total) < 1e-8
    np.testing.assert_array_equal(model.params, result.x)


def test_a_gradient_free_method_ignores_a_gradient_it_does_not_use():
    """Nelder-Mead never reads the gradient: a loss whose gradient is infinite but whose
    value is finite runs, and follows SciPy on the value alone."""
    sizes, X, y, _ = problem("mse")
    model = build(sizes)
    start = model.params.copy()

    def loss(output, target):
        value = float(np.mean((output - target) ** 2))
        return value, np.full_like(output, np.inf)

    result = bp.minimize(model, X, y, loss, method="Nelder-Mead", maxiter=30)
    reference = build(sizes)

    def value(x):
        reference.params[...] = x
        return float(np.mean((reference.predict(X) - y) ** 2))

    expected = scipy.optimize.minimize(value, start, method="Nelder-Mead",
                                       options={"maxiter": 30})
    np.testing.assert_allclose(result.x, expected.x, rtol=1e-12, atol=1e-14)
