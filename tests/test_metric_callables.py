"""Metric callables are called as scikit-learn calls them, metric(y_true, y_pred): for
a classifier, y_pred is the predicted labels; otherwise the output. scikit-learn's
own metrics on the model's predictions are the oracle; a metric that records its
arguments shows the order without scikit-learn."""
import numpy as np
import pytest

import bpcore as bp


def regression(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, 2))
    return X, np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.normal(size=120)


def recorder():
    calls = []

    def seen(y_true, y_pred):
        calls.append((np.array(y_true), np.array(y_pred)))
        return 0.0

    return seen, calls


def test_regression_metrics_get_the_target_first_and_the_output_second():
    X, y = regression()
    model = bp.Model([bp.Dense(2, 16, "tanh"), bp.Dense(16, 1)], seed=0)
    model.fit(X, y, loss="mse", epochs=30, verbose=0, seed=0)
    seen, calls = recorder()
    model.evaluate(X, y, metrics=[seen])
    (y_true, y_pred), = calls
    np.testing.assert_array_equal(y_true, y)
    np.testing.assert_array_equal(y_pred, model.predict(X)[:, 0])


def test_r2_score_as_a_metric_is_the_true_r2():
    metrics = pytest.importorskip("sklearn.metrics")
    X, y = regression()
    model = bp.Model([bp.Dense(2, 16, "tanh"), bp.Dense(16, 1)], seed=0)
    history = model.fit(X, y, loss="mse", epochs=30, verbose=0, seed=0,
                        metrics=[metrics.r2_score, "r2"])
    assert history["r2_score"][-1] == pytest.approx(history["r2"][-1], rel=1e-12)
    logs = model.evaluate(X, y, metrics=[metrics.r2_score])
    assert logs["r2_score"] == pytest.approx(metrics.r2_score(y, model.predict(X)[:, 0]),
                                             rel=1e-12)


def test_classifier_metrics_get_labels():
    metrics = pytest.importorskip("sklearn.metrics")
    X, y = bp.datasets.moons(200, noise=0.2, seed=0)
    model = bp.Model([bp.Dense(2, 16, "relu"), bp.Dense(16, 2)], seed=0)
    model.fit(X, y, loss="cross_entropy", epochs=20, verbose=0, seed=0)
    labels = model.predict(X).argmax(axis=1)
    logs = model.evaluate(X, y, loss="cross_entropy",
                          metrics=[metrics.accuracy_score, metrics.f1_score, "accuracy"])
    assert logs["accuracy_score"] == metrics.accuracy_score(y, labels) == logs["accuracy"]
    assert logs["f1_score"] == pytest.approx(metrics.f1_score(y, labels), rel=1e-12)
    seen, calls = recorder()
    model.evaluate(X, y, loss="cross_entropy", metrics=[seen])
    np.testing.assert_array_equal(calls[0][0], y)
    np.testing.assert_array_equal(calls[0][1], labels)


@pytest.mark.parametrize("dtype", [float, int, bool])
def test_bce_metrics_get_zero_one_labels_of_the_fitted_kind(dtype):
    X, y = bp.datasets.moons(100, noise=0.2, seed=1)
    model = bp.Model([bp.Dense(2, 8, "relu"), bp.Dense(8, 1)], seed=0)
    model.fit(X, y.astype(dtype), loss="bce", epochs=10, verbose=0, seed=0)
    seen, calls = recorder()
    model.evaluate(X, y.astype(dtype), loss="bce", metrics=[seen])
    y_true, y_pred = calls[0]
    # the labels as the user gave them: 0/1 floats, ints or False/True
    np.testing.assert_array_equal(y_true, y.astype(dtype))
    assert y_true.dtype.kind == y_pred.dtype.kind == np.dtype(dtype).kind
    np.testing.assert_array_equal(y_pred, (model.predict(X)[:, 0] > 0).astype(dtype))


def test_bce_metrics_of_an_unfitted_model_get_integer_labels():
    X, y = bp.datasets.moons(40, noise=0.2, seed=1)
    model = bp.Model([bp.Dense(2, 1)], seed=0)
    seen, calls = recorder()
    model.evaluate(X, y.astype(float), loss="bce", metrics=[seen])
    y_true, y_pred = calls[0]
    np.testing.assert_array_equal(y_true, y)
    assert y_true.dtype.kind == y_pred.dtype.kind == "i"
    np.testing.assert_array_equal(y_pred, (model.predict(X)[:, 0] > 0).astype(int))


def test_probability_targets_are_compared_as_labels():
    X, y = bp.datasets.moons(60, noise=0.2, seed=2)
    probabilities = np.eye(2)[y]
    model = bp.Model([bp.Dense(2, 8, "relu"), bp.Dense(8, 2)], seed=0)
    seen, calls = recorder()
    model.evaluate(X, probabilities, loss="cross_entropy", metrics=[seen])
    np.testing.assert_array_equal(calls[0][0], y)
    np.testing.assert_array_equal(calls[0][1], model.predict(X).argmax(axis=1))
