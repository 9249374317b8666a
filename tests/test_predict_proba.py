"""predict_proba: SciPy's softmax / expit of the logits are the oracle."""
import numpy as np
import pytest
from scipy import special

import bpcore as bp


def test_softmax_probabilities_after_a_cross_entropy_fit():
    X, y = bp.datasets.spirals(90, n_classes=3, seed=0)
    k = 3
    model = bp.Model([bp.Dense(2, 8, "tanh"), bp.Dense(8, k)], seed=0)
    model.fit(X, y, loss="cross_entropy", epochs=3, verbose=0, seed=0)
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba, special.softmax(model.predict(X), axis=1), rtol=1e-14)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_array_equal(proba.argmax(axis=1), model.predict(X).argmax(axis=1))


def test_one_bce_output_gives_two_columns():
    X, y = bp.datasets.moons(40, seed=1)
    model = bp.Model([bp.Dense(2, 8, "relu"), bp.Dense(8, 1)], seed=0)
    model.fit(X, y.astype(float), loss="bce", epochs=2, verbose=0, seed=0)
    proba = model.predict_proba(X)
    positive = special.expit(model.predict(X)[:, 0])
    np.testing.assert_allclose(proba[:, 1], positive, rtol=1e-14)
    np.testing.assert_allclose(proba[:, 0], 1 - positive, rtol=1e-14)


def test_extreme_logits_stay_finite():
    model = bp.Model([bp.Dense(1, 2)], seed=0)
    model.layers[0].W[...] = [[1e4, -1e4]]
    proba = model.predict_proba(np.array([[1.0], [-1.0]]), loss=bp.CrossEntropyLoss())
    assert np.all(np.isfinite(proba))
    np.testing.assert_array_equal(proba, [[1.0, 0.0], [0.0, 1.0]])


def test_a_regression_model_is_refused():
    model = bp.Model([bp.Dense(2, 1)], seed=0)
    with pytest.raises(ValueError, match="predict_proba needs a classifier's loss"):
        model.predict_proba(np.ones((3, 2)))
    model.fit(np.ones((3, 2)), np.ones(3), loss="mse", verbose=0)
    with pytest.raises(ValueError, match="got MSELoss"):
        model.predict_proba(np.ones((3, 2)))


def test_a_loss_name_is_accepted():
    model = bp.Model([bp.Dense(2, 1)], seed=0)
    X = np.ones((2, 2))
    np.testing.assert_allclose(model.predict_proba(X, loss="bce")[:, 1],
                               special.expit(model.predict(X)[:, 0]), rtol=1e-14)
