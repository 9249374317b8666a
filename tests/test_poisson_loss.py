"""PoissonLoss: the Poisson negative log-likelihood on log-rates, l = exp(z) - y z.

Oracles: PyTorch's PoissonNLLLoss(log_input=True, full=False) (skipped without torch),
a plain NumPy formula, hand-worked values, central differences through whole models,
the two-call training path for the fused step, and a maximum-likelihood Poisson GLM
fitted by SciPy (and scikit-learn's PoissonRegressor where it is installed).
"""
import math
import pickle

import numpy as np
import numpy_reference as ref
import pytest
from conftest import randomize

import bpcore as bp
from bpcore.train.metrics import predicted_labels

DTYPES = [np.float64, np.float32]


def assert_close(actual, expected, dtype):
    """float64 to 1e-12; float32 to its rounding, relative to the largest entry (exp(z)
    - y cancels, so an entry near 0 keeps the absolute error of its terms)."""
    expected = np.asarray(expected, dtype=np.float64)
    if dtype == np.float64:
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-14)
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-5,
                                   atol=1e-6 * np.abs(expected).max())


def counts_problem(rng, n=9, k=4, dtype=np.float64):
    """Log-rates z, counts y drawn at rates near exp(z), and per-sample weights."""
    z = rng.normal(0.0, 1.5, size=(n, k)).astype(dtype)
    y = rng.poisson(np.exp(z.astype(np.float64))).astype(dtype)
    y[0, :] = 0                                  # a row of zero counts
    w = rng.uniform(0.2, 3.0, size=n)
    return z, y, w


# ------------------------------------------------------------------ the loss itself
def test_hand_worked_values():
    # z = 0: rate 1, so l = 1 whatever the count and dl/dz = 1 - y
    value, grad = bp.PoissonLoss(reduction="sum")(np.zeros((1, 3)), [[0.0, 1.0, 4.0]])
    assert value == 3.0
    np.testing.assert_array_equal(grad, [[1.0, 0.0, -3.0]])
    # z = log 2, y = 2: l = 2 - 2 log 2 and dl/dz = 2 - 2 = 0 (the rate equals the count)
    value, grad = bp.PoissonLoss()(np.array([[math.log(2.0)]]), np.array([2]))
    assert value == pytest.approx(2.0 - 2.0 * math.log(2.0), rel=1e-15)
    assert grad[0, 0] == pytest.approx(0.0, abs=1e-15)
    # "mean" over 2 x 2 elements: (1 + 1 + (e - 3) + (1/e + 2)) / 4 for z = (0, 0; 1, -1),
    # y = (0, 5; 3, 2); gradients (1, -4; e - 3, 1/e - 2) / 4
    z = np.array([[0.0, 0.0], [1.0, -1.0]])
    y = np.array([[0, 5], [3, 2]])
    value, grad = bp.PoissonLoss()(z, y)
    e = math.e
    assert value == pytest.approx((1 + 1 + (e - 3) + (1 / e + 2)) / 4, rel=1e-15)
    np.testing.assert_allclose(grad, np.array([[1, -4], [e - 3, 1 / e - 2]]) / 4, rtol=1e-15)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_value_and_gradient_equal_numpy(dtype, reduction, weighted, rng):
    z, y, w = counts_problem(rng, dtype=dtype)
    weight = w if weighted else None
    value, grad = bp.PoissonLoss(reduction=reduction)(z, y, sample_weight=weight)
    assert grad.dtype == dtype and grad.shape == z.shape
    want_value, want_grad = ref.poisson_nll(z.astype(np.float64), y.astype(np.float64),
                                            weight, reduction)
    assert_close(value, want_value, dtype)
    assert_close(grad, want_grad, dtype)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_value_and_gradient_equal_torch(dtype, reduction, weighted, rng):
    torch = pytest.importorskip("torch")
    z, y, w = counts_problem(rng, dtype=dtype)
    weight = w if weighted else None
    value, grad = bp.PoissonLoss(reduction=reduction)(z, y, sample_weight=weight)
    # torch in float64 on the very same (float32-rounded) numbers; sample weights as
    # the module docstring of bpcore.nn.losses defines them, over torch's unreduced loss
    zt = torch.tensor(z.astype(np.float64), requires_grad=True)
    each = torch.nn.PoissonNLLLoss(log_input=True, full=False, reduction="none")(
        zt, torch.tensor(y.astype(np.float64)))
    if weight is None:
        total = each.mean() if reduction == "mean" else each.sum()
    else:
        wt = torch.tensor(weight)
        per_sample = each.mean(dim=1) if reduction == "mean" else each.sum(dim=1)
        total = (wt * per_sample).sum()
        if reduction == "mean":
            total = total / wt.sum()
    total.backward()
    assert_close(value, total.item(), dtype)
    assert_close(grad, zt.grad.numpy(), dtype)


def test_integer_and_one_dimensional_counts_equal_float_columns(rng):
    z = rng.normal(size=(8, 1))
    counts = rng.poisson(2.0, size=8)
    loss = bp.PoissonLoss()
    column = counts[:, None].astype(np.float64)
    want_value, want_grad = ref.poisson_nll(z, column)
    value, grad = loss(z, column)
    np.testing.assert_allclose(value, want_value, rtol=1e-14)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-14, atol=1e-15)
    grad = grad.copy()
    # every form of the same counts gives the float column's numbers, bit for bit
    for target in (counts, counts.astype(np.uint8), counts[:, None], counts.tolist(),
                   counts.astype(np.float32)):
        other_value, other_grad = loss(z, target)
        assert other_value == value
        np.testing.assert_array_equal(other_grad, grad)


@pytest.mark.parametrize("dtype, big", [(np.float64, 710.0), (np.float32, 89.0)])
def test_where_exp_overflows_the_loss_and_gradient_are_inf_never_nan(dtype, big):
    # exp(710) overflows float64 and exp(89) float32: PyTorch gives +inf there too
    z = np.array([[big, 0.0], [1.0, -1e4]], dtype=dtype)
    y = np.array([[3.0, 1.0], [0.0, 2.0]], dtype=dtype)
    value, grad = bp.PoissonLoss()(z, y)
    assert value == np.inf
    assert grad[0, 0] == np.inf
    assert not np.isnan(grad).any()
    # the other elements are untouched by the overflow: exp(-1e4) is 0, l = 2e4
    np.testing.assert_allclose(grad[0, 1], 0.0, atol=1e-7)
    np.testing.assert_allclose(grad[1], [(math.e - 0.0) / 4, -2.0 / 4], rtol=1e-6)
    torch = pytest.importorskip("torch")
    zt = torch.tensor(z, requires_grad=True)
    want = torch.nn.PoissonNLLLoss(log_input=True)(zt, torch.tensor(y))
    want.backward()
    assert want.item() == np.inf
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-6)


def test_a_sample_of_weight_zero_adds_nothing_even_where_exp_overflows():
    z = np.array([[800.0], [0.5]])
    y = np.array([1.0, 2.0])
    value, grad = bp.PoissonLoss()(z, y, sample_weight=[0.0, 1.5])
    # only the second sample counts: weighted mean = l_2 (its weight cancels)
    assert value == pytest.approx(math.exp(0.5) - 2.0 * 0.5, rel=1e-15)
    np.testing.assert_allclose(grad, [[0.0], [math.exp(0.5) - 2.0]], rtol=1e-15)


def test_poisson_is_a_regression_loss_without_labels_or_probabilities(rng):
    output = rng.normal(size=(5, 2))
    assert predicted_labels(output, bp.PoissonLoss()) is None
    model = bp.Model([bp.Dense(3, 2)], seed=0)
    with pytest.raises(ValueError, match="predict_proba needs a classifier's loss"):
        model.predict_proba(rng.normal(size=(4, 3)), loss=bp.PoissonLoss())
    assert bp.nn.losses.LOSSES["poisson"] is bp.PoissonLoss
    assert bp.PoissonLoss.fused_kind == "poisson"
    assert "PoissonLoss" in bp.__all__ and "PoissonLoss" in bp.nn.__all__


# ------------------------------------------------------------------- whole models
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "scaled_sigmoid"])
def test_model_gradients_equal_central_differences(activation, reduction, weighted, rng):
    model = bp.Model([bp.Dense(3, 5, activation), bp.Dense(5, 4, activation),
                      bp.Dense(4, 2)], seed=0)
    randomize(model, rng)
    X = rng.normal(size=(6, 3))
    y = rng.poisson(2.0, size=(6, 2))
    weight = rng.uniform(0.2, 2.0, size=6) if weighted else None
    result = bp.gradcheck(model, X, y, bp.PoissonLoss(reduction=reduction),
                          sample_weight=weight)
    for name, error in result.errors.items():
        assert error < 1e-7, (name, error)
    np.testing.assert_allclose(result.analytic, result.numerical, rtol=1e-6, atol=1e-8)


OPTIMIZERS = {
    "sgd": lambda m: bp.SGD(m, lr=0.05),
    "momentum": lambda m: bp.SGD(m, lr=0.02, momentum=0.9, weight_decay=0.01),
    "adam": lambda m: bp.Adam(m, lr=0.01),
    "rmsprop": lambda m: bp.RMSprop(m, lr=0.001),         # not fused: steps after the kernel
}


# the widths: a one-unit output over 16 inputs (the shape whose MSE step has its own
# kernel) and three outputs
@pytest.mark.parametrize("sizes", [(5, 16, 1), (5, 8, 3)], ids=["one-output", "three"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_step_equals_loss_and_grad_then_step(dtype, optimizer, sizes, rng):
    models = []
    for _ in range(2):
        model = bp.Model([bp.Dense(sizes[0], sizes[1], "tanh"), bp.Dense(sizes[1], sizes[2])],
                         dtype=dtype, seed=0)
        randomize(model, np.random.default_rng(3))
        models.append(model)
    fused, plain = models
    opt_fused, opt_plain = OPTIMIZERS[optimizer](fused), OPTIMIZERS[optimizer](plain)
    loss = bp.PoissonLoss()
    batches = []
    for _ in range(3):
        X = rng.normal(size=(12, sizes[0])).astype(dtype)
        batches.append((X, rng.poisson(1.5, size=(12, sizes[2])).astype(dtype)))
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    for step in range(12):
        X, y = batches[step % 3]
        value = fused.train_step(X, y, loss, opt_fused)
        expected, _ = plain.loss_and_grad(X, y, loss)
        opt_plain.step()
        np.testing.assert_allclose(value, expected, **tol)
    assert fused._fused is not None                          # the fused kernel ran
    assert fused._fused.engine.plan.loss_kind == "poisson"
    np.testing.assert_allclose(fused.params, plain.params, **tol)
    assert opt_fused.steps == opt_plain.steps == 12
    for name in opt_plain.state:
        np.testing.assert_allclose(opt_fused.state[name], opt_plain.state[name], **tol)


def test_bad_targets_to_fit_raise_and_change_nothing(rng):
    model = bp.Model([bp.Dense(3, 4, "tanh"), bp.Dense(4, 2)], seed=0)
    optimizer = bp.Adam(model, lr=0.01)
    X = rng.normal(size=(10, 3))
    y = rng.poisson(2.0, size=(10, 2)).astype(float)
    model.fit(X, y, loss="poisson", optimizer=optimizer, epochs=1, verbose=0, seed=0)
    params, grads = model.params.copy(), model.grads.copy()
    state = {name: buf.copy() for name, buf in optimizer.state.items()}
    bad = {"negative": (y - 3.0, ValueError, "non-negative counts"),
           "nan": (np.where(y == y.max(), np.nan, y), ValueError, "NaN or infinity"),
           "shape": (y[:, :1], ValueError, r"shape \(10, 2\)"),
           "complex": (y.astype(complex), TypeError, "real numeric")}
    for target, error, match in bad.values():
        with pytest.raises(error, match=match):
            model.fit(X, target, loss="poisson", optimizer=optimizer, epochs=1, verbose=0)
        with pytest.raises(error, match=match):
            model.train_step(X, target, bp.PoissonLoss(), optimizer)
    np.testing.assert_array_equal(model.params, params)
    np.testing.assert_array_equal(model.grads, grads)
    for name, buf in state.items():
        np.testing.assert_array_equal(optimizer.state[name], buf)
    assert optimizer.steps == 1


def test_an_overflowing_rate_stops_fit_with_the_last_finite_parameters(rng):
    model = bp.Model([bp.Dense(2, 1)], seed=0)
    model.layers[0].b[:] = 800.0                     # exp(800) overflows float64
    params = model.params.copy()
    X, y = rng.normal(size=(8, 2)), rng.poisson(1.0, size=8)
    with pytest.raises(bp.TrainingDiverged):
        model.fit(X, y, loss="poisson", optimizer="sgd", epochs=1, verbose=0, seed=0)
    np.testing.assert_array_equal(model.params, params)


# -------------------------------------------------------------- learning a Poisson GLM
def poisson_data(rng, n, beta, intercept):
    X = rng.normal(size=(n, beta.size))
    rate = np.exp(intercept + X @ beta)
    return X, rng.poisson(rate).astype(float), rate


def glm_by_scipy(X, y):
    """The maximum-likelihood Poisson GLM (log link): intercept and coefficients."""
    from scipy import optimize
    design = np.hstack([np.ones((len(X), 1)), X])

    def nll(p):
        z = design @ p
        return np.mean(np.exp(z) - y * z), design.T @ (np.exp(z) - y) / len(y)

    fitted = optimize.minimize(nll, np.zeros(design.shape[1]), jac=True, method="BFGS",
                               options=dict(gtol=1e-11))
    return fitted.x[0], fitted.x[1:]


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_of_one_identity_layer_is_the_maximum_likelihood_glm(dtype):
    rng = np.random.default_rng(5)
    beta, intercept = np.array([0.5, -0.3, 0.2]), 0.4
    X, y, _ = poisson_data(rng, 2000, beta, intercept)
    model = bp.Model([bp.Dense(3, 1)], dtype=dtype, seed=0)
    history = model.fit(X, y, loss="poisson", optimizer=bp.Adam(model, lr=0.05), epochs=300,
                        batch_size=len(X), seed=0, verbose=0)
    assert model._fused is not None                    # fit took the fused step
    want_intercept, want_beta = glm_by_scipy(X, y)
    tol = 1e-5 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(model.layers[0].W[:, 0], want_beta, atol=tol)
    np.testing.assert_allclose(model.layers[0].b[0], want_intercept, atol=tol)
    # the maximum-likelihood fit is within sampling error of the true rate's parameters
    np.testing.assert_allclose(want_beta, beta, atol=0.05)
    assert abs(want_intercept - intercept) < 0.05
    assert history["loss"][-1] < history["loss"][0]
    sklearn = pytest.importorskip("sklearn.linear_model")
    peer = sklearn.PoissonRegressor(alpha=0.0, tol=1e-10, max_iter=1000).fit(X, y)
    np.testing.assert_allclose(model.layers[0].W[:, 0], peer.coef_, atol=tol)
    np.testing.assert_allclose(model.layers[0].b[0], peer.intercept_, atol=tol)


def test_fit_of_a_hidden_layer_net_learns_the_rate():
    rng = np.random.default_rng(8)
    X = rng.uniform(-2.0, 2.0, size=(3000, 1))
    rate = np.exp(1.0 + np.sin(1.5 * X[:, 0]))          # not log-linear: needs the hidden layer
    y = rng.poisson(rate)
    model = bp.Model([bp.Dense(1, 16, "tanh"), bp.Dense(16, 1)], seed=0)
    model.fit(X, y, loss="poisson", optimizer=bp.Adam(model, lr=0.01), epochs=150,
              batch_size=32, seed=0, verbose=0)
    fitted = np.exp(model.predict(X)[:, 0])
    assert np.mean(np.abs(fitted - rate) / rate) < 0.1
    # in the Poisson deviance: near the true rate's, far below the best constant's
    from scipy.special import xlogy

    def deviance(mu):
        return 2 * np.mean(xlogy(y, y / mu) - (y - mu))
    assert deviance(fitted) < 1.05 * deviance(rate)
    assert deviance(fitted) < 0.5 * deviance(np.full_like(fitted, y.mean()))


def test_metrics_of_a_poisson_fit_score_the_rate(rng):
    X, y, _ = poisson_data(rng, 200, np.array([0.3, -0.2]), 0.5)
    model = bp.Model([bp.Dense(2, 1)], seed=0)
    model.fit(X, y, loss="poisson", epochs=5, verbose=0, seed=0)
    rate = np.exp(model.predict(X)[:, 0])
    seen = {}

    def spy(y_true, y_pred):
        seen["y_pred"] = np.array(y_pred)
        return 0.0

    logs = model.evaluate(X, y, metrics=["mse", "mae", "r2", spy])
    np.testing.assert_allclose(logs["mse"], np.mean((rate - y) ** 2), rtol=1e-12)
    np.testing.assert_allclose(logs["mae"], np.mean(np.abs(rate - y)), rtol=1e-12)
    np.testing.assert_allclose(logs["r2"], 1 - np.sum((y - rate) ** 2)
                               / np.sum((y - y.mean()) ** 2), rtol=1e-12)
    np.testing.assert_allclose(seen["y_pred"], rate, rtol=1e-15)
    want_loss, _ = ref.poisson_nll(np.log(rate)[:, None], y[:, None])
    np.testing.assert_allclose(logs["loss"], want_loss, rtol=1e-12)
    metrics = pytest.importorskip("sklearn.metrics")
    logs = model.evaluate(X, y, metrics=[metrics.mean_poisson_deviance])
    np.testing.assert_allclose(logs["mean_poisson_deviance"],
                               metrics.mean_poisson_deviance(y, rate), rtol=1e-12)


def test_accuracy_is_refused_for_a_poisson_fit_before_anything_changes(rng):
    model = bp.Model([bp.Dense(2, 1)], seed=0)
    params = model.params.copy()
    X, y = rng.normal(size=(10, 2)), rng.poisson(1.0, size=10)
    with pytest.raises(ValueError, match=r"metrics: 'accuracy' .*PoissonLoss"):
        model.fit(X, y, loss="poisson", metrics=["accuracy"], verbose=0)
    np.testing.assert_array_equal(model.params, params)
    assert model.fit_loss is None


def test_a_model_fitted_with_poisson_pickles_with_its_loss(rng):
    X, y, _ = poisson_data(rng, 50, np.array([0.2, 0.1]), 0.0)
    model = bp.Model([bp.Dense(2, 3, "tanh"), bp.Dense(3, 1)], seed=0)
    model.fit(X, y, loss="poisson", epochs=2, verbose=0, seed=0)
    again = pickle.loads(pickle.dumps(model))
    assert isinstance(again.fit_loss, bp.PoissonLoss)
    np.testing.assert_array_equal(again.params, model.params)
    assert again.evaluate(X, y) == model.evaluate(X, y)      # the default loss: Poisson's
