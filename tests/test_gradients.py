"""Whole networks: backpropagation against central differences and the NumPy reference."""
import numpy as np
import numpy_reference as ref
import pytest
from conftest import ACTIVATIONS, layer_dicts, randomize

import bpcore as bp

LOSSES = ["mse", "mse_sum", "cross_entropy", "cross_entropy_probs", "bce", "poisson"]


def make_loss_and_target(name, rng, n, k):
    if name == "mse":
        return bp.MSELoss(), rng.normal(size=(n, k))
    if name == "mse_sum":
        return bp.MSELoss(reduction="sum"), rng.normal(size=(n, k))
    if name == "cross_entropy":
        return bp.CrossEntropyLoss(), rng.integers(0, k, size=n)
    if name == "cross_entropy_probs":
        return bp.CrossEntropyLoss(), rng.dirichlet(np.ones(k), size=n)
    if name == "poisson":
        return bp.PoissonLoss(), rng.poisson(2.0, size=(n, k))
    return bp.BCEWithLogitsLoss(), rng.uniform(size=(n, k))


def build(activation, depth, rng, dtype=np.float64, n_in=3, width=4, n_out=3):
    sizes = [n_in] + [width] * (depth - 1) + [n_out]
    layers = [bp.Dense(sizes[i], sizes[i + 1], activation) for i in range(depth)]
    model = bp.Model(layers, dtype=dtype, seed=0)
    randomize(model, rng)
    return model


def away_from_kinks(model, X):
    """Keep ReLU-family pre-activations away from 0, where the derivative jumps."""
    a = X
    for layer in model.layers:
        z = a @ layer.W + layer.b
        if layer.activation in ("relu", "leaky_relu") and np.abs(z).min() < 1e-3:
            return False
        a = ref.activation(layer.activation, z, layer.c)[0]
    return True


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_match_central_differences(activation, loss_name, depth, rng):
    model = build(activation, depth, rng)
    X = rng.normal(size=(5, 3))
    while not away_from_kinks(model, X):
        X = rng.normal(size=(5, 3))
    loss, target = make_loss_and_target(loss_name, rng, 5, 3)
    result = bp.gradcheck(model, X, target, loss, eps=1e-6)
    for name, error in result.errors.items():
        assert error < 1e-7, (name, error)
    np.testing.assert_allclose(result.analytic, result.numerical, rtol=1e-6, atol=1e-8)


def test_gradcheck_catches_a_planted_gradient_bug(rng):
    """The gate must be able to fail: a 1e-5 error in one gradient entry trips it."""
    model = build("tanh", 2, rng)
    X, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    assert bp.gradcheck(model, X, y, bp.MSELoss()).ok()
    original = model._run_backward

    def buggy(grad_output, need_input_grad):
        result = original(grad_output, need_input_grad)
        model.layers[1].db[0] += 1e-5
        return result

    model._run_backward = buggy
    result = bp.gradcheck(model, X, y, bp.MSELoss())
    assert not result.ok()
    assert result.errors["layers.1.b"] > 1e-7
    assert result.errors["layers.0.W"] < 1e-7


def test_gradcheck_restores_parameters_and_gradients(rng):
    model = build("sigmoid", 2, rng)
    model.grads[...] = rng.normal(size=model.grads.shape)
    params, grads = model.params.copy(), model.grads.copy()
    bp.gradcheck(model, rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), bp.MSELoss())
    assert np.array_equal(model.params, params)
    assert np.array_equal(model.grads, grads)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss_name", LOSSES)
def test_model_equals_numpy_reference(activation, loss_name, rng):
    model = build(activation, 3, rng, n_in=6, width=8, n_out=4)
    X = rng.normal(size=(11, 6))
    loss, target = make_loss_and_target(loss_name, rng, 11, 4)
    reference_loss = {"mse": ref.mse, "mse_sum": ref.mse, "cross_entropy": ref.cross_entropy,
                      "cross_entropy_probs": ref.cross_entropy, "bce": ref.bce_with_logits,
                      "poisson": ref.poisson_nll}
    layers = layer_dicts(model)
    out, caches = ref.network_forward(layers, X)
    value, grad_out = reference_loss[loss_name](out, target, None, loss.reduction)
    grads, dX = ref.network_backward(layers, caches, grad_out)

    model.zero_grad()
    got_out = model.forward(X)
    np.testing.assert_allclose(got_out, out, rtol=1e-12, atol=1e-14)
    got_value, got_grad_out = loss(got_out, target)
    np.testing.assert_allclose(got_value, value, rtol=1e-12)
    got_dX = model.backward(got_grad_out)
    np.testing.assert_allclose(got_dX, dX, rtol=1e-12, atol=1e-14)
    for layer, g in zip(model.layers, grads):
        np.testing.assert_allclose(layer.dW, g["W"], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer.db, g["b"], rtol=1e-12, atol=1e-14)
        if g["c"] is not None:
            np.testing.assert_allclose(layer.dc, g["c"], rtol=1e-12, atol=1e-14)

    flat = np.concatenate([np.concatenate([g["W"].ravel(), g["b"]] +
                                          ([g["c"]] if g["c"] is not None else []))
                           for g in grads])
    model.grads[...] = 7.0                  # loss_and_grad zeroes before accumulating
    value2, grads2 = model.loss_and_grad(X, target, loss)
    np.testing.assert_allclose(value2, value, rtol=1e-12)
    assert grads2 is model.grads
    np.testing.assert_allclose(grads2, flat, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float32_gradients_close_to_float64(activation, rng):
    model64 = build(activation, 3, rng, n_in=5, width=16, n_out=3)
    model32 = bp.Model([bp.Dense(l.n_in, l.n_out, l.activation) for l in model64.layers],
                       dtype=np.float32)
    model32.params[...] = model64.params
    X = rng.normal(size=(32, 5))
    y = rng.integers(0, 3, size=32)
    _, g64 = model64.loss_and_grad(X, y, bp.CrossEntropyLoss())
    _, g32 = model32.loss_and_grad(X.astype(np.float32), y, bp.CrossEntropyLoss())
    assert g32.dtype == np.float32
    assert np.linalg.norm(g32 - g64) / np.linalg.norm(g64) < 1e-5
