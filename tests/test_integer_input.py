"""Integer, boolean and nested-list input is converted to the model's float dtype
where a float is meant (X, grad_output, a loss's output): the results equal those of
the same values given as floats."""
import numpy as np
import pytest

import bpcore as bp


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["int64", "int32", "uint8", "bool", "list"])
def test_integer_and_list_X_give_the_float_results(kind, dtype):
    rng = np.random.default_rng(0)
    X_int = rng.integers(0, 5, size=(12, 3))
    if kind == "bool":
        X_int = X_int > 2
    X = X_int.tolist() if kind == "list" else X_int.astype(kind)
    X_float = np.asarray(X_int, dtype=dtype)
    y = rng.integers(0, 2, 12)

    def run(data):
        model = bp.Model([bp.Dense(3, 6, "tanh"), bp.Dense(6, 2)], dtype=dtype, seed=0)
        out = model.predict(data)
        forward = np.array(model.forward(data))
        dX = np.array(model.backward(np.ones((12, 2), dtype=np.int64)))
        optimizer = bp.Adam(model, lr=0.1)
        value = model.train_step(data, y, bp.CrossEntropyLoss(), optimizer)
        history = model.fit(data, y, loss="cross_entropy", optimizer=optimizer, epochs=2,
                            batch_size=4, verbose=0, seed=0)
        return out, forward, dX, value, history["loss"], model.params.copy()

    for ours, theirs in zip(run(X), run(X_float)):
        np.testing.assert_array_equal(ours, theirs)


def test_a_loss_takes_an_integer_output():
    output = np.array([[2, -1], [0, 3]])
    target = np.array([0, 1])
    value, grad = bp.CrossEntropyLoss()(output, target)
    expected, expected_grad = bp.CrossEntropyLoss()(output.astype(float), target)
    assert value == expected
    np.testing.assert_array_equal(grad, expected_grad)
