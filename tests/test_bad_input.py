"""Bad input: rejected before anything is written, with a message that names the argument.

Every bad call must raise ValueError/TypeError whose message names the argument, states
what was expected and what came, and must leave ``model.params``, ``model.grads``, the
optimizers' ``state_dict()`` and the forward caches exactly as they were. Float input of
the other precision or of another memory layout is converted, not rejected.
"""
import re
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest

import bpcore as bp

N, N_IN, N_HIDDEN, N_OUT = 6, 3, 5, 2
N_PARAMS = N_IN * N_HIDDEN + N_HIDDEN + N_HIDDEN * N_OUT + N_OUT
NAN, INF = float("nan"), float("inf")
MSE, BCE, CE, POIS = bp.MSELoss, bp.BCEWithLogitsLoss, bp.CrossEntropyLoss, bp.PoissonLoss


# ----------------------------------------------------------------------------- helpers
def rx(pattern):
    """Mark a message part as a regular expression (plain strings match literally)."""
    return re.compile(pattern)


def msg(argument, expected, came):
    """A ``match=`` regex demanding, in any order: the argument's name (as a whole
    word), the statement of what was expected and the description of what came."""
    def part(p):
        return p.pattern if isinstance(p, re.Pattern) else re.escape(p)
    name = rf"(?<!\w){re.escape(argument)}(?!\w)"
    return "(?s)" + "".join(f"(?=.*?(?:{p}))" for p in (name, part(expected), part(came)))


def same_bits(actual, expected, what):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
    assert actual.tobytes() == expected.tobytes(), f"{what} changed"


def assert_same_state_dict(after, before, what):
    assert after.keys() == before.keys(), what
    assert after["optimizer"] == before["optimizer"], what
    assert after["hyperparameters"] == before["hyperparameters"], f"{what}: hyperparameters"
    assert after["steps"] == before["steps"], f"{what}: steps"
    assert after["state"].keys() == before["state"].keys(), f"{what}: state buffers"
    for name, buf in before["state"].items():
        same_bits(after["state"][name], buf, f"{what}: state[{name!r}]")


@pytest.fixture
def unchanged():
    """``with unchanged(model, *optimizers):`` asserts that the block leaves the model's
    parameters and gradients (same buffers, same bits) and every optimizer's
    ``state_dict()`` exactly as they were."""
    @contextmanager
    def guard(model, *optimizers):
        params, grads = model.params, model.grads
        saved_params, saved_grads = params.copy(), grads.copy()
        saved_states = [opt.state_dict() for opt in optimizers]
        yield
        assert model.params is params and model.grads is grads, "buffers were rebound"
        same_bits(model.params, saved_params, "model.params")
        same_bits(model.grads, saved_grads, "model.grads")
        for i, (opt, before) in enumerate(zip(optimizers, saved_states)):
            assert_same_state_dict(opt.state_dict(), before, f"optimizer {i} ({opt!r})")
    return guard


def make_model(dtype=np.float64):
    return bp.Model([bp.Dense(N_IN, N_HIDDEN, "tanh"), bp.Dense(N_HIDDEN, N_OUT)],
                    dtype=dtype, seed=0)


def with_value(array, index, value):
    array = np.array(array, copy=True)
    array[index] = value
    return array


@pytest.fixture
def d():
    rng = np.random.default_rng(2024)
    return SimpleNamespace(
        X=rng.normal(size=(N, N_IN)),
        X_other=rng.normal(size=(N, N_IN)),
        y=rng.normal(size=(N, N_OUT)),
        labels=np.array([0, 1, 1, 0, 1, 0]),
        probs=rng.dirichlet(np.ones(N_OUT), size=N),
        w=rng.uniform(0.5, 2.0, size=N),
        G=rng.normal(size=(N, N_OUT)),
        counts=rng.poisson(2.0, size=(N, N_OUT)),
    )


@pytest.fixture
def trained(d):
    """A float64 model after real steps of three optimizers (non-trivial state), then a
    forward(X) + backward(G) whose dL/dX and gradients are recorded (caches live)."""
    model = make_model()
    sgd = bp.SGD(model, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    adam = bp.Adam(model, lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=1e-4)
    plain = bp.SGD(model, lr=0.02)
    for _ in range(3):
        for opt in (sgd, adam, plain):
            model.loss_and_grad(d.X, d.y, MSE())
            opt.step()
    model.zero_grad()
    model.forward(d.X)
    dX = model.backward(d.G).copy()
    assert np.abs(model.grads).min() > 0 and sgd.state and adam.state
    return SimpleNamespace(model=model, sgd=sgd, adam=adam, plain=plain,
                           optimizers=(sgd, adam, plain), dX=dX, grads=model.grads.copy())


def assert_caches_intact(trained, d):
    """A backward after the failed call still gives the recorded dL/dX and gradients."""
    model = trained.model
    model.zero_grad()
    same_bits(model.backward(d.G), trained.dX, "dL/dX of the next backward")
    same_bits(model.grads, trained.grads, "gradients of the next backward")


# ------------------------------------------------------------------ layers and models
@pytest.mark.parametrize("kwargs, exc, match", [
    pytest.param(dict(n_in=0), ValueError, msg("n_in", "positive integer", "got 0"), id="n_in=0"),
    pytest.param(dict(n_in=-3), ValueError, msg("n_in", "positive integer", "got -3"), id="n_in<0"),
    pytest.param(dict(n_in=2.5), TypeError, msg("n_in", "positive integer", "got float 2.5"),
                 id="n_in-float"),
    pytest.param(dict(n_in=True), TypeError, msg("n_in", "positive integer", "got bool True"),
                 id="n_in-bool"),
    pytest.param(dict(n_out="4"), TypeError, msg("n_out", "positive integer", "got str '4'"),
                 id="n_out-str"),
    pytest.param(dict(n_out=None), TypeError, msg("n_out", "positive integer", "got NoneType"),
                 id="n_out-None"),
    pytest.param(dict(activation="softmax"), ValueError,
                 msg("activation", "one of ['identity', 'leaky_relu', 'relu', 'scaled_sigmoid', "
                     "'sigmoid', 'tanh']", "got 'softmax'"), id="activation-unknown"),
    pytest.param(dict(activation="ReLU"), ValueError, msg("activation", "one of [", "got 'ReLU'"),
                 id="activation-case"),
    pytest.param(dict(activation=None), ValueError, msg("activation", "one of [", "got None"),
                 id="activation-None"),
    pytest.param(dict(negative_slope=-0.1), ValueError,
                 msg("negative_slope", "finite number in [0.0, inf]", "got -0.1"), id="slope<0"),
    pytest.param(dict(negative_slope=NAN), ValueError,
                 msg("negative_slope", "finite number in [0.0, inf]", "got nan"), id="slope-nan"),
    pytest.param(dict(negative_slope="0.1"), TypeError,
                 msg("negative_slope", "real number", "got str '0.1'"), id="slope-str"),
])
def test_dense_rejects(kwargs, exc, match):
    args = dict(n_in=N_IN, n_out=N_OUT, activation="leaky_relu") | kwargs
    with pytest.raises(exc, match=match):
        bp.Dense(**args)


def _repeated(owner):
    layer = bp.Dense(3, 3)
    return [layer, layer], {}


@pytest.mark.parametrize("build, exc, match", [
    pytest.param(lambda o: ([], {}), ValueError,
                 msg("layers", "at least one Dense layer", "got none"), id="no-layers"),
    pytest.param(lambda o: ([bp.Dense(3, 4), "dense"], {}), TypeError,
                 msg("layers[1]", "must be a Dense layer", "got str"), id="not-a-layer"),
    pytest.param(lambda o: ([bp.Dense(3, 4), bp.Dense(5, 2)], {}), ValueError,
                 msg("layers[0]", "consecutive layers must agree",
                     "n_out=4 but layers[1] has n_in=5"), id="mismatched-layers"),
    pytest.param(_repeated, ValueError,
                 msg("layers", "must not repeat the same Dense object", "layers[1]"),
                 id="same-layer-twice"),
    pytest.param(lambda o: ([o.layers[0]], {}), ValueError,
                 msg("layers[0]", rx(r"must|only|expect|not yet|new|free"),
                     "already belongs to another Model"), id="layer-of-another-model"),
    pytest.param(lambda o: ([bp.Dense(7, N_IN), o.layers[0]], {}), ValueError,
                 msg("layers[1]", rx(r"must|only|expect|not yet|new|free"),
                     "already belongs to another Model"), id="second-layer-of-another-model"),
    pytest.param(lambda o: ([bp.Dense(3, 2)], {"dtype": np.int32}), TypeError,
                 msg("dtype", "float32 or float64", "got int32"), id="dtype-int32"),
    pytest.param(lambda o: ([bp.Dense(3, 2)], {"dtype": np.float16}), TypeError,
                 msg("dtype", "float32 or float64", "got float16"), id="dtype-float16"),
    pytest.param(lambda o: ([bp.Dense(3, 2)], {"dtype": np.complex128}), TypeError,
                 msg("dtype", "float32 or float64", "got complex128"), id="dtype-complex"),
    pytest.param(lambda o: ([bp.Dense(3, 2)], {"dtype": object}), TypeError,
                 msg("dtype", "float32 or float64", "got object"), id="dtype-object"),
    pytest.param(lambda o: ([bp.Dense(3, 2)], {"dtype": "nonsense"}), TypeError,
                 msg("dtype", "float32 or float64", "got 'nonsense'"), id="dtype-unknown"),
    pytest.param(lambda o: ([bp.Dense(3, 2)], {"seed": -1}), (TypeError, ValueError),
                 msg("seed", rx("int"), "-1"), id="seed-negative"),
    pytest.param(lambda o: ([bp.Dense(3, 2)], {"seed": "abc"}), (TypeError, ValueError),
                 msg("seed", rx("int"), "abc"), id="seed-str"),
])
def test_model_rejects(build, exc, match, trained, unchanged):
    owner = trained.model
    layers, kwargs = build(owner)
    with unchanged(owner, *trained.optimizers), pytest.raises(exc, match=match):
        bp.Model(layers, **kwargs)
    for layer in owner.layers:          # the other model keeps its layers, bound as before
        assert layer.model is owner and np.shares_memory(layer.W, owner.params)
    for layer in layers:                # fresh layers stay free for another Model
        if isinstance(layer, bp.Dense) and all(layer is not l for l in owner.layers):
            assert layer.model is None and layer.W is None, f"{layer!r} left bound"


@pytest.mark.parametrize("loss_cls", [MSE, CE, BCE])
@pytest.mark.parametrize("reduction", ["avg", "MEAN", "none", None])
def test_loss_rejects_reduction(loss_cls, reduction):
    with pytest.raises(ValueError, match=msg("reduction", "one of ('mean', 'sum')",
                                             f"got {reduction!r}")):
        loss_cls(reduction)


# ------------------------------------------------------------------------ model input X
BAD_X = [
    pytest.param(lambda d: d.X[0], ValueError,
                 msg("X", "must be 2-D (n_samples, n_features)", "got 1-D array of shape (3,)"),
                 id="1-D"),
    pytest.param(lambda d: d.X[:, :, None], ValueError,
                 msg("X", "must be 2-D", "got 3-D array of shape (6, 3, 1)"), id="3-D"),
    pytest.param(lambda d: 1.5, ValueError, msg("X", "must be 2-D", "got 0-D"), id="scalar"),
    pytest.param(lambda d: d.X[:, :2], ValueError,
                 msg("X", "the model expects 3", "X has 2 features"), id="too-few-features"),
    pytest.param(lambda d: np.hstack([d.X, d.X[:, :1]]), ValueError,
                 msg("X", "the model expects 3", "X has 4 features"), id="too-many-features"),
    pytest.param(lambda d: d.X.T, ValueError,
                 msg("X", "the model expects 3", "X has 6 features"), id="transposed"),
    pytest.param(lambda d: d.X[:0], ValueError,
                 msg("X", "at least one sample", "got shape (0, 3)"), id="no-samples"),
    pytest.param(lambda d: d.X.astype(np.complex128), TypeError,
                 msg("X", "real numeric array", "got dtype complex128"), id="complex"),
    pytest.param(lambda d: d.X.astype(object), TypeError,
                 msg("X", "real numeric array", "got dtype object"), id="object"),
    pytest.param(lambda d: np.full((N, N_IN), "1.0"), TypeError,
                 msg("X", "real numeric array", "got dtype <U3"), id="str"),
    pytest.param(lambda d: None, TypeError,
                 msg("X", "real numeric array", "got dtype object"), id="None"),
    pytest.param(lambda d: [[0.1, 0.2, 0.3], [0.4]], (TypeError, ValueError),
                 msg("X", rx("array"), "list"), id="ragged-list"),
    pytest.param(lambda d: with_value(d.X, (2, 1), NAN), ValueError,
                 msg("X", "all values must be finite", "contains NaN or infinity"), id="nan"),
    pytest.param(lambda d: with_value(d.X, (5, 2), INF), ValueError,
                 msg("X", "all values must be finite", "contains NaN or infinity"), id="inf"),
    pytest.param(lambda d: with_value(d.X, (0, 0), -INF), ValueError,
                 msg("X", "all values must be finite", "contains NaN or infinity"), id="-inf"),
    pytest.param(lambda d: with_value(d.X.astype(np.float32), (3, 0), NAN), ValueError,
                 msg("X", "all values must be finite", "contains NaN or infinity"),
                 id="nan-float32"),
]

X_CALLS = {
    "forward": lambda model, X, d: model.forward(X),
    "predict": lambda model, X, d: model.predict(X),
    "loss_and_grad-mse": lambda model, X, d: model.loss_and_grad(X, d.y, MSE()),
    "loss_and_grad-ce": lambda model, X, d: model.loss_and_grad(X, d.labels, CE(),
                                                                sample_weight=d.w),
}


@pytest.mark.parametrize("make_X, exc, match", BAD_X)
@pytest.mark.parametrize("call", X_CALLS)
def test_bad_X_is_rejected_before_anything_is_written(call, make_X, exc, match, trained, d,
                                                      unchanged):
    with unchanged(trained.model, *trained.optimizers), pytest.raises(exc, match=match):
        X_CALLS[call](trained.model, make_X(d), d)
    assert_caches_intact(trained, d)


# ------------------------------------------------------------------------------ backward
def _fresh(model, d):
    pass


def _after_predict(model, d):
    model.predict(d.X)


def _after_failed_forward(model, d):
    with pytest.raises(ValueError):
        model.forward(with_value(d.X, (0, 0), NAN))


def _after_failed_loss_and_grad(model, d):
    with pytest.raises(ValueError):
        model.loss_and_grad(d.X, np.full(N, N_OUT), CE())


@pytest.mark.parametrize("before", [_fresh, _after_predict, _after_failed_forward,
                                    _after_failed_loss_and_grad],
                         ids=["fresh", "after-predict", "after-failed-forward",
                              "after-failed-loss_and_grad"])
def test_backward_before_forward(before, d, unchanged):
    model = make_model()
    model.grads[...] = np.linspace(-1, 1, model.n_params)
    before(model, d)
    with unchanged(model), pytest.raises(
            ValueError, match=msg("backward", "run model.forward(X) first",
                                  "called before forward")):
        model.backward(d.G)


SHAPE = "must have the shape of the last forward's output (6, 2)"
BAD_GRAD_OUTPUT = [
    pytest.param(lambda d: np.ones((N, N_OUT + 1)), ValueError,
                 msg("grad_output", SHAPE, "got shape (6, 3)"), id="columns"),
    pytest.param(lambda d: d.G[:-1], ValueError,
                 msg("grad_output", SHAPE, "got shape (5, 2)"), id="batch"),
    pytest.param(lambda d: d.G.T, ValueError,
                 msg("grad_output", SHAPE, "got shape (2, 6)"), id="transposed"),
    pytest.param(lambda d: d.G.ravel(), ValueError,
                 msg("grad_output", SHAPE, "got shape (12,)"), id="flat"),
    pytest.param(lambda d: d.G[:, :, None], ValueError,
                 msg("grad_output", SHAPE, "got shape (6, 2, 1)"), id="3-D"),
    pytest.param(lambda d: 1.0, ValueError,
                 msg("grad_output", SHAPE, "got shape ()"), id="scalar"),
    pytest.param(lambda d: d.G.astype(object), TypeError,
                 msg("grad_output", "real numeric array", "got dtype object"), id="object"),
    pytest.param(lambda d: [[1.0, 2.0]] * (N - 1) + [[1.0]], (TypeError, ValueError),
                 msg("grad_output", rx("array"), "list"), id="ragged-list"),
    pytest.param(lambda d: with_value(d.G, (1, 1), NAN), ValueError,
                 msg("grad_output", "all values must be finite", "contains NaN or infinity"),
                 id="nan"),
    pytest.param(lambda d: with_value(d.G, (4, 0), -INF), ValueError,
                 msg("grad_output", "all values must be finite", "contains NaN or infinity"),
                 id="-inf"),
]


@pytest.mark.parametrize("make_grad, exc, match", BAD_GRAD_OUTPUT)
def test_bad_grad_output_is_rejected(make_grad, exc, match, trained, d, unchanged):
    with unchanged(trained.model, *trained.optimizers), pytest.raises(exc, match=match):
        trained.model.backward(make_grad(d))
    assert_caches_intact(trained, d)


# ---------------------------------------------------------------- targets and weights
def _targets(d):
    return {MSE: d.y, BCE: d.probs, CE: d.labels, POIS: d.counts}


TARGET_SHAPE = "must have shape (6, 2) like the output"
FINITE = ("all values must be finite", "contains NaN or infinity")
BAD_TARGETS = [
    pytest.param(MSE, lambda d: np.ones((N, 3)), None, ValueError,
                 msg("target", TARGET_SHAPE, "got shape (6, 3)"), id="mse-columns"),
    pytest.param(MSE, lambda d: d.y[:-1], None, ValueError,
                 msg("target", TARGET_SHAPE, "got shape (5, 2)"), id="mse-batch"),
    pytest.param(MSE, lambda d: d.y[:, 0], None, ValueError,
                 msg("target", TARGET_SHAPE, "got shape (6,)"), id="mse-1-D"),
    pytest.param(MSE, lambda d: with_value(d.y, (3, 1), NAN), None, ValueError,
                 msg("target", *FINITE), id="mse-nan"),
    pytest.param(MSE, lambda d: with_value(d.y, (0, 0), INF), None, ValueError,
                 msg("target", *FINITE), id="mse-inf"),
    pytest.param(MSE, lambda d: d.y.astype(object), None, TypeError,
                 msg("target", "real numeric array", "got dtype object"), id="mse-object"),
    pytest.param(MSE, lambda d: np.full((N, N_OUT), "1"), None, TypeError,
                 msg("target", "real numeric array", "got dtype <U1"), id="mse-str"),
    pytest.param(MSE, lambda d: [[1.0, 2.0]] * (N - 1) + [[1.0]], None, (TypeError, ValueError),
                 msg("target", rx("array"), "list"), id="mse-ragged-list"),
    pytest.param(BCE, lambda d: with_value(d.probs, (0, 0), 1.5), None, ValueError,
                 msg("target", "must lie in [0, 1]", rx(r"got values in \[[^]]*, 1\.5\]")),
                 id="bce-above-1"),
    pytest.param(BCE, lambda d: with_value(d.probs, (2, 1), -0.5), None, ValueError,
                 msg("target", "must lie in [0, 1]", "got values in [-0.5, "), id="bce-below-0"),
    pytest.param(BCE, lambda d: with_value(d.probs, (2, 1), NAN), None, ValueError,
                 msg("target", *FINITE), id="bce-nan"),
    pytest.param(BCE, lambda d: d.probs[:-1], None, ValueError,
                 msg("target", TARGET_SHAPE, "got shape (5, 2)"), id="bce-batch"),
    pytest.param(CE, lambda d: np.array([0, 1, 2, 0, 1, 0]), None, ValueError,
                 msg("target", "must lie in [0, 1] for 2 classes", "got labels in [0, 2]"),
                 id="ce-label-too-large"),
    pytest.param(CE, lambda d: np.array([0, 1, -1, 0, 1, 0]), None, ValueError,
                 msg("target", "must lie in [0, 1] for 2 classes", "got labels in [-1, 1]"),
                 id="ce-label-negative"),
    pytest.param(CE, lambda d: d.labels.astype(np.float64), None, TypeError,
                 msg("target", "integer class labels (1-D)", "got a 1-D array of dtype float64"),
                 id="ce-float-labels"),
    pytest.param(CE, lambda d: d.labels.astype(bool), None, TypeError,
                 msg("target", "integer class labels (1-D)", "got a 1-D array of dtype bool"),
                 id="ce-bool-labels"),
    pytest.param(CE, lambda d: d.labels[:-1], None, ValueError,
                 msg("target", "the output has 6 samples", "target has 5 labels"),
                 id="ce-label-count"),
    pytest.param(CE, lambda d: with_value(d.probs, (1, 0), -0.5), None, ValueError,
                 msg("target", "must be non-negative", "got a minimum of -0.5"),
                 id="ce-probs-negative"),
    pytest.param(CE, lambda d: with_value(d.probs, (1, 0), NAN), None, ValueError,
                 msg("target", *FINITE), id="ce-probs-nan"),
    pytest.param(CE, lambda d: np.full((N, 3), 1 / 3), None, ValueError,
                 msg("target", TARGET_SHAPE, "got shape (6, 3)"), id="ce-probs-shape"),
    pytest.param(POIS, lambda d: with_value(d.counts, (3, 1), -2), None, ValueError,
                 msg("target", "must be non-negative counts", "got a minimum of -2"),
                 id="poisson-negative"),
    pytest.param(POIS, lambda d: with_value(d.counts.astype(float), (0, 0), -0.5), None,
                 ValueError, msg("target", "must be non-negative counts",
                                 "got a minimum of -0.5"), id="poisson-negative-float"),
    pytest.param(POIS, lambda d: with_value(d.counts.astype(float), (4, 0), NAN), None,
                 ValueError, msg("target", *FINITE), id="poisson-nan"),
    pytest.param(POIS, lambda d: with_value(d.counts.astype(float), (4, 0), INF), None,
                 ValueError, msg("target", *FINITE), id="poisson-inf"),
    pytest.param(POIS, lambda d: d.counts[:, 0], None, ValueError,
                 msg("target", TARGET_SHAPE, "got shape (6,)"), id="poisson-1-D-for-two"),
    pytest.param(POIS, lambda d: d.counts.T, None, ValueError,
                 msg("target", TARGET_SHAPE, "got shape (2, 6)"), id="poisson-transposed"),
    pytest.param(POIS, lambda d: d.counts.astype(complex), None, TypeError,
                 msg("target", "real numeric array", "got dtype complex128"),
                 id="poisson-complex"),
    pytest.param(POIS, None, lambda d: with_value(d.w, 1, -1.0), ValueError,
                 msg("sample_weight", "must be non-negative", "got a negative weight"),
                 id="poisson-weight-negative"),
    pytest.param(MSE, None, lambda d: with_value(d.w, 2, -1.0), ValueError,
                 msg("sample_weight", "must be non-negative", "got a negative weight"),
                 id="weight-negative"),
    pytest.param(CE, None, lambda d: with_value(d.w, 0, -0.5), ValueError,
                 msg("sample_weight", "must be non-negative", "got a negative weight"),
                 id="ce-weight-negative"),
    pytest.param(MSE, None, lambda d: d.w[:-1], ValueError,
                 msg("sample_weight", "must have shape (6,)", "got shape (5,)"),
                 id="weight-too-short"),
    pytest.param(BCE, None, lambda d: np.ones(N + 1), ValueError,
                 msg("sample_weight", "must have shape (6,)", "got shape (7,)"),
                 id="weight-too-long"),
    pytest.param(MSE, None, lambda d: d.w[:, None], ValueError,
                 msg("sample_weight", "must have shape (6,)", "got shape (6, 1)"),
                 id="weight-2-D"),
    pytest.param(MSE, None, lambda d: with_value(d.w, 3, NAN), ValueError,
                 msg("sample_weight", *FINITE), id="weight-nan"),
    pytest.param(MSE, None, lambda d: np.full(N, "1"), TypeError,
                 msg("sample_weight", "real numeric array", "got dtype <U1"), id="weight-str"),
    pytest.param(MSE, None, lambda d: [1.0] * (N - 1) + [[1.0, 2.0]], (TypeError, ValueError),
                 msg("sample_weight", rx("array"), "list"), id="weight-ragged-list"),
    pytest.param(MSE, None, lambda d: np.zeros(N), ValueError,
                 msg("sample_weight", rx(r"must|positive|expect"), "sums to zero"),
                 id="weight-zero-sum"),
]


def _target_and_weight(loss_cls, make_target, make_weight, d):
    target = _targets(d)[loss_cls] if make_target is None else make_target(d)
    weight = d.w if make_weight is None else make_weight(d)
    return target, weight


@pytest.mark.parametrize("loss_cls, make_target, make_weight, exc, match", BAD_TARGETS)
def test_bad_target_in_loss_and_grad(loss_cls, make_target, make_weight, exc, match, trained,
                                     d, unchanged):
    target, weight = _target_and_weight(loss_cls, make_target, make_weight, d)
    with unchanged(trained.model, *trained.optimizers), pytest.raises(exc, match=match):
        # another X of the same batch size: a forward run before the check would show
        trained.model.loss_and_grad(d.X_other, target, loss_cls(), sample_weight=weight)
    assert_caches_intact(trained, d)


@pytest.mark.parametrize("loss_cls, make_target, make_weight, exc, match", BAD_TARGETS)
def test_bad_target_in_loss_call(loss_cls, make_target, make_weight, exc, match, trained, d):
    output = trained.model.predict(d.X)
    saved_output = output.copy()
    loss = loss_cls()
    _, grad = loss(output, _targets(d)[loss_cls], d.w)
    saved_grad = grad.copy()
    target, weight = _target_and_weight(loss_cls, make_target, make_weight, d)
    with pytest.raises(exc, match=match):
        loss(output, target, weight)
    same_bits(grad, saved_grad, "the loss's previous grad_output")
    same_bits(output, saved_output, "output")


@pytest.mark.parametrize("make_output, exc, match", [
    pytest.param(lambda o: o[:, 0], ValueError,
                 msg("output", "must be 2-D (n_samples, n_outputs)", "got 1-D"), id="1-D"),
    pytest.param(lambda o: with_value(o, (0, 1), NAN), ValueError,
                 msg("output", *FINITE), id="nan"),
])
@pytest.mark.parametrize("loss_cls", [MSE, BCE, CE, POIS])
def test_bad_output_in_loss_call(loss_cls, make_output, exc, match, trained, d):
    output = trained.model.predict(d.X)
    with pytest.raises(exc, match=match):
        loss_cls()(make_output(output), _targets(d)[loss_cls])


@pytest.mark.parametrize("loss, came", [
    pytest.param("mse", "got str", id="str"),
    pytest.param(None, "got NoneType", id="None"),
    pytest.param(42, "got int", id="int"),
    pytest.param(MSE, "got type", id="class-not-instance"),
])
def test_loss_and_grad_rejects_non_loss(loss, came, trained, d, unchanged):
    with unchanged(trained.model, *trained.optimizers), pytest.raises(
            TypeError, match=msg("loss", "must be a bpcore Loss", came)):
        trained.model.loss_and_grad(d.X_other, d.y, loss)
    assert_caches_intact(trained, d)


# ---------------------------------------------------------------------------- optimizers
HYPER_CASES = [
    pytest.param("SGD", "lr", -0.1, ValueError,
                 msg("lr", "finite number in [0.0, inf]", "got -0.1"), id="sgd-lr<0"),
    pytest.param("SGD", "lr", NAN, ValueError, msg("lr", "finite number", "got nan"),
                 id="sgd-lr-nan"),
    pytest.param("SGD", "lr", INF, ValueError, msg("lr", "finite number", "got inf"),
                 id="sgd-lr-inf"),
    pytest.param("SGD", "lr", "0.1", TypeError, msg("lr", "real number", "got str '0.1'"),
                 id="sgd-lr-str"),
    pytest.param("SGD", "lr", None, TypeError, msg("lr", "real number", "got NoneType"),
                 id="sgd-lr-None"),
    pytest.param("SGD", "momentum", 1.0, ValueError,
                 msg("momentum", "finite number in [0.0, 1.0)", "got 1.0"), id="momentum=1"),
    pytest.param("SGD", "momentum", 1.5, ValueError,
                 msg("momentum", "finite number in [0.0, 1.0)", "got 1.5"), id="momentum>1"),
    pytest.param("SGD", "momentum", -0.1, ValueError,
                 msg("momentum", "finite number in [0.0, 1.0)", "got -0.1"), id="momentum<0"),
    pytest.param("SGD", "nesterov", 1, TypeError, msg("nesterov", "True or False", "got int 1"),
                 id="nesterov-int"),
    pytest.param("SGD", "nesterov", "yes", TypeError,
                 msg("nesterov", "True or False", "got str 'yes'"), id="nesterov-str"),
    pytest.param("SGD", "weight_decay", -1e-4, ValueError,
                 msg("weight_decay", "finite number in [0.0, inf]", "got -0.0001"),
                 id="sgd-weight_decay<0"),
    pytest.param("Adam", "lr", -1.0, ValueError,
                 msg("lr", "finite number in [0.0, inf]", "got -1.0"), id="adam-lr<0"),
    pytest.param("Adam", "betas", 0.9, ValueError,
                 msg("betas", "a pair (beta1, beta2)", "got 0.9"), id="betas-scalar"),
    pytest.param("Adam", "betas", (0.9,), ValueError,
                 msg("betas", "a pair (beta1, beta2)", "got (0.9,)"), id="betas-one"),
    pytest.param("Adam", "betas", (0.9, 0.99, 0.999), ValueError,
                 msg("betas", "a pair (beta1, beta2)", "got (0.9, 0.99, 0.999)"),
                 id="betas-three"),
    pytest.param("Adam", "betas", (0.9, 1.0), ValueError,
                 msg("betas[1]", "finite number in [0.0, 1.0)", "got 1.0"), id="beta2=1"),
    pytest.param("Adam", "betas", (-0.1, 0.999), ValueError,
                 msg("betas[0]", "finite number in [0.0, 1.0)", "got -0.1"), id="beta1<0"),
    pytest.param("Adam", "betas", (0.9, "0.999"), TypeError,
                 msg("betas[1]", "real number", "got str '0.999'"), id="beta2-str"),
    pytest.param("Adam", "eps", 0.0, ValueError,
                 msg("eps", "finite number in (0.0, inf]", "got 0.0"), id="eps=0"),
    pytest.param("Adam", "eps", -1e-8, ValueError,
                 msg("eps", "finite number in (0.0, inf]", "got -1e-08"), id="eps<0"),
    pytest.param("Adam", "weight_decay", -1.0, ValueError,
                 msg("weight_decay", "finite number in [0.0, inf]", "got -1.0"),
                 id="adam-weight_decay<0"),
]


@pytest.mark.parametrize("optimizer, name, value, exc, match", HYPER_CASES)
def test_optimizer_constructor_rejects(optimizer, name, value, exc, match, trained, unchanged):
    with unchanged(trained.model, *trained.optimizers), pytest.raises(exc, match=match):
        getattr(bp, optimizer)(trained.model, **{name: value})


@pytest.mark.parametrize("optimizer, name, value, exc, match", HYPER_CASES)
def test_optimizer_assignment_rejects(optimizer, name, value, exc, match, trained, unchanged):
    opt = trained.sgd if optimizer == "SGD" else trained.adam
    with unchanged(trained.model, *trained.optimizers), pytest.raises(exc, match=match):
        setattr(opt, name, value)


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
@pytest.mark.parametrize("model, came", [
    pytest.param("model", "got str", id="str"),
    pytest.param(None, "got NoneType", id="None"),
    pytest.param([bp.Dense(2, 2)], "got list", id="layer-list"),
])
def test_optimizer_rejects_non_model(optimizer, model, came):
    with pytest.raises(TypeError, match=msg("model", "must be a bpcore Model", came)):
        getattr(bp, optimizer)(model)


def _state_with(state_dict, **hyper):
    state_dict["hyperparameters"].update(hyper)
    return state_dict


@pytest.mark.parametrize("bad_call", [
    pytest.param(lambda t: bp.SGD(t.model, lr=0.1, nesterov=True), id="constructor-default"),
    pytest.param(lambda t: bp.SGD(t.model, lr=0.1, momentum=0.0, nesterov=True),
                 id="constructor-explicit"),
    pytest.param(lambda t: setattr(t.sgd, "momentum", 0.0), id="assign-momentum-0"),
    pytest.param(lambda t: setattr(t.plain, "nesterov", True), id="assign-nesterov"),
    pytest.param(lambda t: t.sgd.load_state_dict(_state_with(t.sgd.state_dict(), momentum=0.0)),
                 id="load_state_dict"),
])
def test_nesterov_without_momentum_is_rejected(bad_call, trained, unchanged):
    with unchanged(trained.model, *trained.optimizers), pytest.raises(
            ValueError, match=msg("nesterov", "needs a momentum > 0", "got momentum=0.0")):
        bad_call(trained)


def _drop(key):
    def edit(t, sd):
        del sd[key]
        return sd
    return edit


def _hyper(**changes):
    return lambda t, sd: _state_with(sd, **changes)


def _drop_hyper(key):
    def edit(t, sd):
        del sd["hyperparameters"][key]
        return sd
    return edit


def _entry(key, value):
    return lambda t, sd: {**sd, key: value}


def _buffer(name, make):
    def edit(t, sd):
        sd["state"][name] = make(sd["state"][name])
        return sd
    return edit


BUFFER = "must be a float array of shape (32,)"
LOAD_CASES = [
    pytest.param("SGD", lambda t, sd: [sd], TypeError,
                 msg("state_dict", "must be a dict", "got list"), id="list"),
    pytest.param("Adam", lambda t, sd: None, TypeError,
                 msg("state_dict", "must be a dict", "got NoneType"), id="None"),
    pytest.param("SGD", _drop("steps"), ValueError,
                 msg("state_dict", "'steps'", "lacks"), id="missing-steps"),
    pytest.param("Adam", _drop("state"), ValueError,
                 msg("state_dict", "'state'", "lacks"), id="missing-state"),
    pytest.param("SGD", lambda t, sd: t.adam.state_dict(), ValueError,
                 msg("state_dict", "this optimizer is 'SGD'", "is for 'Adam'"),
                 id="other-optimizer"),
    pytest.param("SGD", _hyper(foo=1.0), ValueError,
                 msg("hyperparameters", "must be ['lr', 'momentum', 'nesterov', 'weight_decay']",
                     "got ['foo', 'lr', 'momentum', 'nesterov', 'weight_decay']"),
                 id="hyper-extra"),
    pytest.param("Adam", _drop_hyper("eps"), ValueError,
                 msg("hyperparameters", "must be ['betas', 'eps', 'lr', 'weight_decay']",
                     "got ['betas', 'lr', 'weight_decay']"), id="hyper-missing"),
    pytest.param("SGD", _entry("hyperparameters", 5), (TypeError, ValueError),
                 msg("hyperparameters", "dict", "int"), id="hyper-not-a-dict"),
    pytest.param("SGD", _hyper(lr=-1.0), ValueError,
                 msg("hyperparameters['lr']", "finite number in [0.0, inf]", "got -1.0"),
                 id="lr<0"),
    pytest.param("SGD", _hyper(momentum=1.0), ValueError,
                 msg("hyperparameters['momentum']", "[0.0, 1.0)", "got 1.0"), id="momentum=1"),
    pytest.param("SGD", _hyper(nesterov=1), TypeError,
                 msg("hyperparameters['nesterov']", "True or False", "got int 1"),
                 id="nesterov-int"),
    pytest.param("Adam", _hyper(betas=(0.9, 1.0)), ValueError,
                 msg("hyperparameters['betas'][1]", "[0.0, 1.0)", "got 1.0"), id="beta2=1"),
    pytest.param("Adam", _hyper(eps=0.0), ValueError,
                 msg("hyperparameters['eps']", "(0.0, inf]", "got 0.0"), id="eps=0"),
    pytest.param("SGD", _entry("steps", -1), ValueError,
                 msg("state_dict['steps']", "non-negative integer", "got -1"), id="steps<0"),
    pytest.param("SGD", _entry("steps", 2.5), ValueError,
                 msg("state_dict['steps']", "non-negative integer", "got 2.5"), id="steps-float"),
    pytest.param("Adam", _entry("steps", True), ValueError,
                 msg("state_dict['steps']", "non-negative integer", "got True"), id="steps-bool"),
    pytest.param("Adam", _entry("steps", "3"), ValueError,
                 msg("state_dict['steps']", "non-negative integer", "got '3'"), id="steps-str"),
    pytest.param("SGD", _entry("state", [1.0]), ValueError,
                 msg("state_dict['state']", "must be empty or hold ['momentum_buffer']",
                     "list"), id="state-not-a-dict"),
    pytest.param("Adam", lambda t, sd: {**sd, "state": {**sd["state"], "foo": np.zeros(32)}},
                 ValueError,
                 msg("state_dict['state']", "must be empty or hold ['exp_avg', 'exp_avg_sq']",
                     "'foo'"), id="state-extra-key"),
    pytest.param("SGD", _buffer("momentum_buffer", lambda b: b[:-1]), ValueError,
                 msg("state_dict['state']['momentum_buffer']", BUFFER,
                     "got an array of shape (31,)"), id="buffer-shape"),
    pytest.param("Adam", _buffer("exp_avg", lambda b: b.reshape(4, 8)), ValueError,
                 msg("state_dict['state']['exp_avg']", BUFFER, "got an array of shape (4, 8)"),
                 id="buffer-2-D"),
    pytest.param("Adam", _buffer("exp_avg", lambda b: np.round(b).astype(np.int64)), ValueError,
                 msg("state_dict['state']['exp_avg']", BUFFER,
                     "got an array of shape (32,) and dtype int64"), id="buffer-int"),
    pytest.param("Adam", _buffer("exp_avg_sq", lambda b: with_value(b, 7, NAN)), ValueError,
                 msg("state_dict['state']['exp_avg_sq']", *FINITE), id="buffer-nan"),
]


@pytest.mark.parametrize("optimizer, edit, exc, match", LOAD_CASES)
def test_load_state_dict_rejects(optimizer, edit, exc, match, trained, unchanged):
    assert trained.model.n_params == N_PARAMS == 32
    opt = trained.sgd if optimizer == "SGD" else trained.adam
    bad = edit(trained, opt.state_dict())
    with unchanged(trained.model, *trained.optimizers), pytest.raises(exc, match=match):
        opt.load_state_dict(bad)


# ------------------------------------------------------------- clipping and gradcheck
@pytest.mark.parametrize("max_norm, exc, came", [
    pytest.param(0.0, ValueError, "got 0.0", id="zero"),
    pytest.param(-1.0, ValueError, "got -1.0", id="negative"),
    pytest.param(NAN, ValueError, "got nan", id="nan"),
    pytest.param("1", TypeError, "got str '1'", id="str"),
    pytest.param(None, TypeError, "got NoneType", id="None"),
    pytest.param(True, TypeError, "got bool True", id="bool"),
])
def test_clip_grad_norm_rejects_max_norm(max_norm, exc, came, trained, unchanged):
    expected = "finite number in (0.0, inf]" if exc is ValueError else "real number"
    with unchanged(trained.model, *trained.optimizers), pytest.raises(
            exc, match=msg("max_norm", expected, came)):
        bp.clip_grad_norm(trained.model, max_norm)


def test_clip_grad_norm_rejects_non_model(trained, unchanged):
    with unchanged(trained.model, *trained.optimizers), pytest.raises(
            TypeError, match=msg("model", "must be a bpcore Model", "got ndarray")):
        bp.clip_grad_norm(trained.model.grads, 1.0)


def test_clip_grad_norm_nonfinite_leaves_gradients(trained, unchanged):
    trained.model.grads[3] = NAN
    with unchanged(trained.model, *trained.optimizers), pytest.raises(
            ValueError, match=msg("gradient norm", "left unchanged", "is nan")):
        bp.clip_grad_norm(trained.model, 1e-3, error_if_nonfinite=True)


@pytest.fixture
def model32(d):
    model = make_model(np.float32)
    model.loss_and_grad(d.X, d.y, MSE())
    return model


@pytest.mark.parametrize("bad_call, exc, match", [
    pytest.param(lambda t, m32, d: bp.gradcheck(m32, d.X, d.y, MSE()), TypeError,
                 msg("model", "needs a float64 model", "got a float32 model"), id="float32"),
    pytest.param(lambda t, m32, d: bp.gradcheck(t.sgd, d.X, d.y, MSE()), TypeError,
                 msg("model", "must be a bpcore Model", "got SGD"), id="not-a-model"),
    pytest.param(lambda t, m32, d: bp.gradcheck(t.model, d.X, d.y, "mse"), TypeError,
                 msg("loss", "must be a bpcore Loss", "got str"), id="loss-str"),
    pytest.param(lambda t, m32, d: bp.gradcheck(t.model, d.X, d.y, MSE(), eps=0.0), ValueError,
                 msg("eps", "finite number in (0.0, inf]", "got 0.0"), id="eps=0"),
    pytest.param(lambda t, m32, d: bp.gradcheck(t.model, d.X, d.y, MSE(), eps=-1e-6),
                 ValueError, msg("eps", "finite number in (0.0, inf]", "got -1e-06"),
                 id="eps<0"),
    pytest.param(lambda t, m32, d: bp.gradcheck(t.model, np.ones((N, N_IN), complex), d.y,
                                                MSE()),
                 TypeError, msg("X", "real numeric array", "got dtype complex128"),
                 id="complex-X"),
    pytest.param(lambda t, m32, d: bp.gradcheck(t.model, d.X, np.full(N, N_OUT), CE()),
                 ValueError, msg("target", "must lie in [0, 1]", "got labels in [2, 2]"),
                 id="label-out-of-range"),
    pytest.param(lambda t, m32, d: bp.gradcheck(t.model, d.X, d.y, MSE(),
                                                sample_weight=-d.w), ValueError,
                 msg("sample_weight", "must be non-negative", "got a negative weight"),
                 id="negative-weight"),
])
def test_gradcheck_rejects(bad_call, exc, match, trained, model32, d, unchanged):
    with unchanged(trained.model, *trained.optimizers), unchanged(model32), \
            pytest.raises(exc, match=match):
        bad_call(trained, model32, d)
    assert_caches_intact(trained, d)


# ------------------------------------------------ float input is converted, not rejected
def variant(kind, array, dtype):
    """``array`` as float input the model must convert: other precision or layout."""
    other = np.float32 if np.dtype(dtype) == np.float64 else np.float64
    if kind == "other-dtype":
        return array.astype(other)
    if kind == "float16":
        return array.astype(np.float16)
    if kind == "strided":                   # every other column (or element) of a wider array
        wide = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), dtype)
        wide[..., ::2] = array
        return wide[..., ::2]
    if kind == "fortran":
        return np.asfortranarray(array, dtype=dtype)
    if kind == "other-dtype-fortran":
        return np.asfortranarray(array, dtype=other)
    if kind == "reversed-view":             # negative strides
        return np.array(array[::-1], dtype=dtype)[::-1]
    if kind == "byteswapped":               # the model's precision, other byte order
        return array.astype(np.dtype(dtype).newbyteorder("S"))
    if kind == "misaligned":                # the model's dtype, data one byte off
        itemsize = np.dtype(dtype).itemsize
        raw = np.zeros(array.size * itemsize + 1, np.uint8)[1:]
        out = raw.view(dtype).reshape(array.shape)
        out[...] = array
        assert not out.flags.aligned
        return out
    raise AssertionError(kind)


VARIANTS = ["other-dtype", "float16", "strided", "fortran", "other-dtype-fortran",
            "reversed-view", "byteswapped", "misaligned"]
DTYPES = [pytest.param(np.float64, id="float64-model"),
          pytest.param(np.float32, id="float32-model")]


def converted(array, dtype):
    return np.ascontiguousarray(array, dtype=dtype)


@pytest.mark.parametrize("kind", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_float_X_and_grad_output_are_converted(dtype, kind, d):
    model = make_model(dtype)
    X, G = variant(kind, d.X, dtype), variant(kind, d.G, dtype)
    assert not (X.dtype == model.dtype and X.flags.c_contiguous and X.flags.aligned)
    X_ref, G_ref = converted(X, dtype), converted(G, dtype)

    predicted = model.predict(X)
    assert predicted.dtype == model.dtype
    np.testing.assert_array_equal(predicted, model.predict(X_ref))

    def forward_backward(X, G):
        model.zero_grad()
        output = model.forward(X).copy()
        dX = model.backward(G).copy()
        return output, dX, model.grads.copy()

    got, expected = forward_backward(X, G), forward_backward(X_ref, G_ref)
    for what, a, b in zip(("output", "dL/dX", "grads"), got, expected):
        assert a.dtype == model.dtype, what
        np.testing.assert_array_equal(a, b, err_msg=what)
    assert np.abs(got[2]).max() > 0


@pytest.mark.parametrize("kind", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss_cls, target_name", [(MSE, "y"), (BCE, "probs"), (CE, "probs"),
                                                   (CE, "labels")])
def test_float_input_to_loss_and_grad_is_converted(loss_cls, target_name, dtype, kind, d):
    model = make_model(dtype)
    target = getattr(d, target_name)
    if target_name == "labels":
        target_v = target.astype(np.int32 if kind == "other-dtype" else np.uint8)
        target_ref = target
    else:
        target_v = variant(kind, target, dtype)
        target_ref = converted(target_v, dtype)
    X, w = variant(kind, d.X, dtype), variant(kind, d.w, dtype)
    X_ref, w_ref = converted(X, dtype), converted(w, dtype)

    value, grads = model.loss_and_grad(X, target_v, loss_cls(), sample_weight=w)
    got = (value, grads.copy())
    value_ref, grads_ref = model.loss_and_grad(X_ref, target_ref, loss_cls(), sample_weight=w_ref)
    assert got[0] == value_ref
    assert got[1].dtype == model.dtype
    np.testing.assert_array_equal(got[1], grads_ref)
    assert np.abs(grads_ref).max() > 0


@pytest.mark.parametrize("kind", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss_cls, target_name", [(MSE, "y"), (BCE, "probs"), (CE, "probs")])
def test_float_target_in_loss_call_is_converted(loss_cls, target_name, dtype, kind, d):
    output = make_model(dtype).predict(d.X)
    output_v = output if "dtype" in kind or kind == "float16" else variant(kind, output, dtype)
    target_v = variant(kind, getattr(d, target_name), dtype)
    w_v = variant(kind, d.w, dtype)
    value, grad = loss_cls()(output_v, target_v, w_v)
    value_ref, grad_ref = loss_cls()(output, converted(target_v, dtype), converted(w_v, dtype))
    assert grad.dtype == np.dtype(dtype)
    assert value == value_ref
    np.testing.assert_array_equal(grad, grad_ref)
