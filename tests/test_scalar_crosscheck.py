"""The scalar engine against the Cython core: same network, same numbers.

For random small float64 networks of every activation and every loss (both
reductions), the scalar engine's loss, parameter gradients and input gradients
equal the Cython core's to 1e-12 relative. "Relative" is per tensor: each entry
within 1e-12 of its own magnitude, with a floor of 1e-12 times the tensor's largest
entry for entries that cancel to almost nothing.
"""
import numpy as np
import pytest
from conftest import ACTIVATIONS, randomize

import bpcore as bp
from bpcore.scalar import Value
from bpcore.scalar import nn as scalar_nn

RTOL = 1e-12
LOSSES = [("mse", "mean"), ("mse", "sum"), ("cross_entropy", "mean"),
          ("cross_entropy", "sum"), ("bce", "mean"), ("bce", "sum"), ("poisson", "mean"),
          ("poisson", "sum")]


def assert_close(got, want, what):
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    floor = RTOL * np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=floor, err_msg=what)


def random_problem(activation, loss_name, seed, n=5, sizes=(3, 4, 4, 3)):
    """A randomised model (every layer with ``activation``), a batch and its target."""
    rng = np.random.default_rng(seed)
    slope = 0.01 if seed % 2 == 0 else 0.2          # bpcore's default and another slope
    layers = [bp.Dense(sizes[i], sizes[i + 1], activation, negative_slope=slope)
              for i in range(len(sizes) - 1)]
    model = bp.Model(layers, dtype=np.float64, seed=seed)
    randomize(model, rng)
    X = rng.normal(size=(n, sizes[0]))
    k = sizes[-1]
    if loss_name == "mse":
        target = rng.normal(size=(n, k))
    elif loss_name == "cross_entropy":
        target = rng.integers(0, k, size=n)
    elif loss_name == "poisson":
        target = rng.poisson(2.0, size=(n, k)).astype(float)
    else:
        target = rng.uniform(size=(n, k))
    return model, X, target


@pytest.mark.parametrize("loss_name, reduction", LOSSES, ids=[f"{l}-{r}" for l, r in LOSSES])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scalar_engine_equals_cython_core(activation, loss_name, reduction, seed):
    model, X, target = random_problem(activation, loss_name, seed)
    core_loss = bp.nn.losses.LOSSES[loss_name](reduction=reduction)

    # the Cython core: loss, parameter gradients, and dL/dX through backward
    output = model.forward(X)
    value, grad_output = core_loss(output, target)
    model.zero_grad()
    dX = model.backward(grad_output)

    # the scalar engine on the same weights, with the inputs as Values too
    mlp = scalar_nn.MLP.from_model(model)
    inputs = [[Value(v) for v in row] for row in X.tolist()]
    scalar_loss = scalar_nn.LOSSES[loss_name](mlp.forward(inputs), target.tolist(), reduction)
    scalar_loss.backward()

    assert scalar_loss.data == pytest.approx(value, rel=RTOL)
    grads = [p.grad for p in mlp.parameters()]
    for name, _layer, _attr, shape, offset in model.parameter_table:
        size = int(np.prod(shape))
        assert_close(grads[offset:offset + size], model.grads[offset:offset + size], name)
    assert_close([[v.grad for v in row] for row in inputs], dX, "dL/dX")


@pytest.mark.parametrize("activation", ["tanh", "relu", "scaled_sigmoid"])
def test_sgd_trajectories_stay_equal(activation):
    """Five SGD steps on each engine from the same start end at the same parameters."""
    model, X, target = random_problem(activation, "cross_entropy", seed=3)
    mlp = scalar_nn.MLP.from_model(model)
    params = mlp.parameters()
    optimizer = bp.SGD(model, lr=0.1)
    for _ in range(5):
        model.loss_and_grad(X, target, bp.CrossEntropyLoss())
        optimizer.step()
        loss = scalar_nn.cross_entropy(mlp.forward(X.tolist()), target.tolist())
        mlp.zero_grad()
        loss.backward()
        for p in params:
            p.data -= 0.1 * p.grad
    assert_close([p.data for p in params], model.params, "parameters after 5 steps")
