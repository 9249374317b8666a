"""evaluate without loss= uses the loss of the model's last fit (the loss object
itself, so its reduction too); before any fit it reports metrics only."""
import numpy as np
import pytest

import bpcore as bp


def test_evaluate_defaults_to_the_fitted_loss():
    X, y = bp.datasets.moons(100, noise=0.2, seed=0)
    model = bp.Model([bp.Dense(2, 8, "relu"), bp.Dense(8, 2)], seed=0)
    assert model.fit_loss is None
    assert model.evaluate(X, y) == {}
    loss = bp.CrossEntropyLoss(reduction="sum")
    history = model.fit(X, y, loss=loss, epochs=3, verbose=0, seed=0, metrics=["accuracy"])
    assert model.fit_loss is loss
    logs = model.evaluate(X, y)
    value, _ = loss(model.predict(X), y)                       # the oracle: the loss itself
    assert logs == {"loss": pytest.approx(value, rel=1e-12)}
    # the epoch's logged loss is still the mean over its batches, not evaluate's
    assert history["loss"][-1] != pytest.approx(value)
    assert model.evaluate(X, y, loss="cross_entropy")["loss"] == pytest.approx(
        value / len(y), rel=1e-12)                             # an explicit loss wins


def test_a_failed_fit_does_not_change_the_default():
    X, y = bp.datasets.moons(20, seed=0)
    model = bp.Model([bp.Dense(2, 4), bp.Dense(4, 2)], seed=0)
    model.fit(X, y, loss="cross_entropy", epochs=1, verbose=0)
    first = model.fit_loss
    with pytest.raises(ValueError):
        model.fit(X, y, loss="mse", epochs=1, verbose=0, batch_size=0)
    assert model.fit_loss is first
    assert np.isfinite(model.evaluate(X, y)["loss"])
