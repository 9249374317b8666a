"""Models and optimizers pickle and deep-copy into independent, working objects: the
copy trains exactly like the original (bit for bit, the original as the oracle) and
shares no memory with it."""
import copy
import pickle

import numpy as np
import pytest

import bpcore as bp
from bpcore._aligned import ALIGNMENT

OPTIMIZERS = [
    lambda m: bp.SGD(m, lr=0.05),
    lambda m: bp.SGD(m, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda m: bp.Adam(m, lr=0.01, weight_decay=1e-3),
    lambda m: bp.AdamW(m, lr=0.01),
    lambda m: bp.RMSprop(m, lr=0.01, momentum=0.5, centered=True),
    lambda m: bp.Rprop(m, lr=0.01),
]
IDS = ["sgd", "sgd-momentum", "adam", "adamw", "rmsprop", "rprop"]


def copy_by(how, obj):
    if how == "pickle":
        return pickle.loads(pickle.dumps(obj))
    return copy.deepcopy(obj)


def data(seed=0, n=48):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, (X[:, 0] * X[:, 1] > 0).astype(np.int64)


def build(dtype=np.float64, dropout=0.0):
    return bp.Model([bp.Dense(3, 8, "tanh", dropout=dropout), bp.Dense(8, 8, "relu"),
                     bp.Dense(8, 2)], dtype=dtype, seed=0)


def used(model, optimizer, X, y):
    """Every pass run once: workspaces, fused steps, predictors and caches exist."""
    loss = bp.CrossEntropyLoss()
    model.predict(X)
    model.train_step(X[:16], y[:16], loss, optimizer)
    model.forward(X[:8])
    model.fit(X, y, loss="cross_entropy", optimizer=optimizer, epochs=1, batch_size=16,
              verbose=0, seed=3)
    return loss


def arrays_of(model, optimizer=None):
    arrays = [model.params, model.grads]
    for layer in model.layers:
        arrays += [a for a in (layer.W, layer.b, layer.c, layer.dW, layer.db, layer.dc)
                   if a is not None]
    if optimizer is not None:
        arrays += list(optimizer.state.values())
    return arrays


def assert_independent(original, copied, optimizer=None, copied_optimizer=None):
    for a in arrays_of(original, optimizer):
        for b in arrays_of(copied, copied_optimizer):
            assert not np.shares_memory(a, b)
    for layer in copied.layers:
        assert layer.model is copied
        assert np.shares_memory(layer.W, copied.params)
        assert np.shares_memory(layer.dW, copied.grads)
    for a in [copied.params, copied.grads] + (
            list(copied_optimizer.state.values()) if copied_optimizer else []):
        assert a.ctypes.data % ALIGNMENT == 0


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
@pytest.mark.parametrize("make", OPTIMIZERS, ids=IDS)
def test_a_copy_with_its_optimizer_trains_exactly_like_the_original(how, make):
    X, y = data()
    model = build()
    optimizer = make(model)
    loss = used(model, optimizer, X, y)
    model2, optimizer2 = copy_by(how, (model, optimizer))
    assert optimizer2.model is model2
    assert type(optimizer2) is type(optimizer)
    assert optimizer2.hyperparameters == optimizer.hyperparameters
    assert optimizer2.steps == optimizer.steps
    assert model2.epochs_trained == model.epochs_trained
    np.testing.assert_array_equal(model2.params, model.params)
    assert_independent(model, model2, optimizer, optimizer2)
    for m, o in ((model, optimizer), (model2, optimizer2)):
        for start in range(0, 48, 16):
            m.train_step(X[start:start + 16], y[start:start + 16], loss, o)
        m.fit(X, y, loss="cross_entropy", optimizer=o, epochs=2, batch_size=16, verbose=0,
              seed=5)
    np.testing.assert_array_equal(model2.params, model.params)
    for name, buf in optimizer.state.items():
        np.testing.assert_array_equal(optimizer2.state[name], buf)
    np.testing.assert_array_equal(model2.predict(X), model.predict(X))


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_a_fresh_model_copy_trains(how):
    # the views must alias the copy's own buffers, or training moves nothing
    X, y = data()
    model = build(np.float32)
    copied = copy_by(how, model)
    assert copied.dtype == np.float32
    history = copied.fit(X, y, loss="cross_entropy", optimizer=bp.Adam(copied, lr=0.05),
                         epochs=20, batch_size=16, verbose=0, seed=1)
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    model.fit(X, y, loss="cross_entropy", optimizer=bp.Adam(model, lr=0.05), epochs=20,
              batch_size=16, verbose=0, seed=1)
    np.testing.assert_array_equal(copied.params, model.params)


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_an_optimizer_copied_alone_brings_its_own_model(how):
    X, y = data()
    model = build()
    optimizer = bp.SGD(model, lr=0.1, momentum=0.9)
    used(model, optimizer, X, y)
    copied = copy_by(how, optimizer)
    assert copied.model is not model
    assert_independent(model, copied.model, optimizer, copied)
    before = model.params.copy()
    copied.model.train_step(X, y, bp.CrossEntropyLoss(), copied)
    np.testing.assert_array_equal(model.params, before)       # the original untouched


def test_dropout_generator_and_mode_travel_with_the_copy():
    X, y = data()
    model = build(dropout=0.3)
    model.forward(X)                                   # draws masks
    copied = copy.deepcopy(model)
    assert copied.training and copied.layers[0].dropout == 0.3
    np.testing.assert_array_equal(copied.forward(X), model.forward(X))   # same masks
    model.eval()
    assert not copy.deepcopy(model).training


def test_shallow_copy_is_independent_too():
    model = build()
    copied = copy.copy(model)
    assert_independent(model, copied)
    copied.params[...] = 0
    assert np.any(model.params != 0)


def test_a_model_fitted_with_a_custom_loss_pickles():
    X, y = data()
    model = build()

    def custom(output, target):
        return bp.CrossEntropyLoss()(output, target)

    model.fit(X, y, loss=lambda output, target: custom(output, target), verbose=0)
    copied = pickle.loads(pickle.dumps(model))
    assert copied.fit_loss is None
    np.testing.assert_array_equal(copied.params, model.params)


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_a_model_that_refers_to_its_optimizer_copies(how):
    X, y = data()
    model = build()
    model.optimizer = bp.Adam(model, lr=0.01)
    used(model, model.optimizer, X, y)
    copied = copy_by(how, model)
    assert copied.optimizer.model is copied
    assert_independent(model, copied, model.optimizer, copied.optimizer)


def test_a_shallow_copy_draws_its_own_dropout_masks():
    model = build(dropout=0.5)
    copied = copy.copy(model)
    assert copied.dropout_rng is not model.dropout_rng
    X, _ = data()
    np.testing.assert_array_equal(copied.forward(X), model.forward(X))
