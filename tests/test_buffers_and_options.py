"""Every pass sees its inputs as they came, and layer options changed after the model
has run reach every path (the fused step, predict, forward/backward)."""
import numpy as np
import pytest
from conftest import randomize

import bpcore as bp


def test_fast_path_rejects_negative_probability_targets():
    # the general path raises for negative cross-entropy probabilities; the fused
    # step's own checks, once its engine exists, must refuse them too
    rng = np.random.default_rng(0)
    model = bp.Model([bp.Dense(4, 5, "tanh"), bp.Dense(5, 3)], seed=0)
    loss, opt = bp.CrossEntropyLoss(), bp.SGD(model, lr=0.1)
    X, P = rng.normal(size=(6, 4)), rng.dirichlet(np.ones(3), 6)
    model.train_step(X, P, loss, opt)            # builds the engine
    bad = P.copy()
    bad[0] = [-1.0, 1.0, 1.0]
    before, grads = model.params.copy(), model.grads.copy()
    with pytest.raises(ValueError, match="non-negative"):
        model.train_step(X, bad, loss, opt)
    np.testing.assert_array_equal(model.params, before)
    np.testing.assert_array_equal(model.grads, grads)
    assert opt.steps == 1


def build(n_layers):
    layers = ([bp.Dense(4, 4, "tanh")] if n_layers == 1
              else [bp.Dense(4, 6, "tanh"), bp.Dense(6, 4)])
    return bp.Model(layers, seed=0)


def assert_same_loss_and_grads(got, expected):
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_forward_output_fed_back_as_input(n_layers):
    # an autoencoder-shaped model fed its own forward output, a view into the very
    # workspace the next pass writes: the result equals feeding a copy
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    a, b = build(n_layers), build(n_layers)
    out = a.forward(X)
    kept = np.array(out)         # the view itself is rewritten by the next forward
    assert_same_loss_and_grads(a.loss_and_grad(out, Y, bp.MSELoss()),
                               b.loss_and_grad(kept, Y, bp.MSELoss()))

    a, b = build(n_layers), build(n_layers)
    oa, ob = bp.SGD(a, lr=0.1, momentum=0.5), bp.SGD(b, lr=0.1, momentum=0.5)
    a.train_step(X, Y, bp.MSELoss(), oa)          # the engine for batch size 5 exists
    b.train_step(X, Y, bp.MSELoss(), ob)
    out = a.forward(X)
    a.train_step(out, Y, bp.MSELoss(), oa)
    b.train_step(np.array(b.forward(X)), Y, bp.MSELoss(), ob)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_forward_output_as_target(n_layers):
    # the target is a view of the output the pass is about to overwrite
    rng = np.random.default_rng(3)
    X, X2 = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    a, b = build(n_layers), build(n_layers)
    target = a.forward(X2)
    got = a.loss_and_grad(X, target, bp.MSELoss())
    assert got[0] > 0
    assert_same_loss_and_grads(got, b.loss_and_grad(X, np.array(b.forward(X2)),
                                                    bp.MSELoss()))

    a, b = build(n_layers), build(n_layers)
    oa, ob = bp.Adam(a, lr=0.01), bp.Adam(b, lr=0.01)
    for _ in range(2):               # the second call goes through the built engine
        va = a.train_step(X, a.forward(X2), bp.MSELoss(), oa)
        vb = b.train_step(X, np.array(b.forward(X2)), bp.MSELoss(), ob)
        np.testing.assert_allclose(va, vb, rtol=1e-12)
        np.testing.assert_allclose(a.params, b.params, rtol=1e-12, atol=1e-15)


def test_backward_of_a_per_node_view_equals_backward_of_its_copy():
    # grad_a of the middle layer is the workspace's buffer of dL/da, which the last
    # layer's backward writes while it reads grad_output
    rng = np.random.default_rng(4)
    X, G = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))

    def run(copy):
        model = bp.Model([bp.Dense(3, 3, "tanh"), bp.Dense(3, 3), bp.Dense(3, 3)], seed=0)
        model.forward(X)
        model.backward(G)
        view = model.layers[1].grad_a     # the buffer the last layer's backward writes
        model.zero_grad()
        dX = model.backward(np.array(view) if copy else view)
        return np.array(dX), model.grads.copy()

    (dx_view, g_view), (dx_copy, g_copy) = run(False), run(True)
    np.testing.assert_allclose(dx_view, dx_copy, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g_view, g_copy, rtol=1e-12, atol=1e-15)


def test_changed_negative_slope_reaches_every_path():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(6, 4)), rng.integers(0, 3, 6)
    model = bp.Model([bp.Dense(4, 5, "leaky_relu"), bp.Dense(5, 3)], seed=0)
    model.predict(X)
    model.layers[0].negative_slope = 0.5
    np.testing.assert_allclose(model.predict(X), model.forward(X), rtol=1e-12)

    a = bp.Model([bp.Dense(4, 5, "leaky_relu"), bp.Dense(5, 3)], seed=0)
    b = bp.Model([bp.Dense(4, 5, "leaky_relu"), bp.Dense(5, 3)], seed=0)
    oa, ob, loss = bp.SGD(a, lr=0.1), bp.SGD(b, lr=0.1), bp.CrossEntropyLoss()
    a.train_step(X, y, loss, oa)
    b.loss_and_grad(X, y, loss)
    ob.step()
    a.layers[0].negative_slope = b.layers[0].negative_slope = 0.5
    va = a.train_step(X, y, loss, oa)
    vb, _ = b.loss_and_grad(X, y, loss)
    ob.step()
    np.testing.assert_allclose(va, vb, rtol=1e-12)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("rates", [(0.0, 0.5), (0.5, 0.0)])
def test_dropout_switched_after_the_model_ran(rates):
    # switching dropout on or off after the fused step and predict have their
    # buffers: the next step equals that of a model built with the new rate
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(8, 4)), rng.normal(size=(8, 2))
    a = bp.Model([bp.Dense(4, 6, "relu", dropout=rates[0]), bp.Dense(6, 2)], seed=0)
    oa, loss = bp.SGD(a, lr=0.1), bp.MSELoss()
    a.train_step(X, Y, loss, oa)
    a.train_step(X, Y, loss, oa)
    a.predict(X)
    a.layers[0].dropout = rates[1]

    b = bp.Model([bp.Dense(4, 6, "relu", dropout=rates[1]), bp.Dense(6, 2)], seed=0)
    b.params[...] = a.params
    b.dropout_rng.bit_generator.state = a.dropout_rng.bit_generator.state
    ob = bp.SGD(b, lr=0.1)
    va = a.train_step(X, Y, loss, oa)
    vb, _ = b.loss_and_grad(X, Y, loss)
    ob.step()
    np.testing.assert_allclose(va, vb, rtol=1e-12)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12, atol=1e-15)
    a.eval()
    b.eval()
    np.testing.assert_allclose(a.predict(X), b.forward(X), rtol=1e-12)


def test_activation_is_fixed_and_options_are_checked():
    layer = bp.Dense(3, 2, "tanh")
    model = bp.Model([layer], seed=0)
    with pytest.raises(AttributeError, match="activation is fixed"):
        layer.activation = "relu"
    assert layer.activation == "tanh" and layer.c is None
    before = model.params.copy()
    with pytest.raises(ValueError, match="dropout"):
        layer.dropout = 1.5
    with pytest.raises(ValueError, match="negative_slope"):
        layer.negative_slope = -1.0
    assert layer.dropout == 0.0 and layer.negative_slope == 0.01
    np.testing.assert_array_equal(model.params, before)


@pytest.mark.parametrize("dtype, big", [(np.float64, 1e200), (np.float32, 1e30)])
def test_fused_relu_of_negative_infinite_preactivation_is_zero(dtype, big):
    # z = X.W overflows to -inf; relu(-inf) = 0, so the output is the next layer's
    # bias 0.5 and the MSE against 0 is 0.25 (NumPy: np.maximum(-inf, 0) == 0), on
    # the fused step's one-pass relu as on the general path
    models = []
    for _ in range(2):
        m = bp.Model([bp.Dense(1, 1, "relu"), bp.Dense(1, 1)], dtype=dtype, seed=0)
        m.layers[0].W[...] = -big
        m.layers[0].b[...] = 0
        m.layers[1].W[...] = 1
        m.layers[1].b[...] = 0.5
        models.append(m)
    fused, plain = models
    X = np.full((2, 1), big, dtype)
    target = np.zeros((2, 1), dtype)
    loss = bp.MSELoss()
    with np.errstate(over="ignore"):
        assert np.maximum(X.astype(dtype) @ fused.layers[0].W, 0).tolist() == [[0], [0]]
    assert fused.predict(X).tolist() == [[0.5], [0.5]]
    value_plain, _ = plain.loss_and_grad(X, target, loss)
    bp.SGD(plain, lr=0.1).step()
    value_fused = fused.train_step(X, target, loss, bp.SGD(fused, lr=0.1))
    assert value_plain == pytest.approx(0.25)
    assert value_fused == pytest.approx(0.25)
    np.testing.assert_allclose(fused.params, plain.params)


def _pair(n_out=2, last="identity"):
    models = []
    for _ in range(2):
        m = bp.Model([bp.Dense(3, 4, "tanh"), bp.Dense(4, n_out, last)], seed=0)
        randomize(m, np.random.default_rng(1))
        models.append(m)
    return models


def _mse(output, target):
    d = output - target
    return float((d * d).mean()), 2 * d / d.size


def test_custom_loss_target_aliasing_last_output_is_copied():
    # a forward output fed back as the target of a custom loss: the next forward
    # would overwrite it before the loss reads it
    rng = np.random.default_rng(0)
    X1, X2 = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    a, b = _pair()
    target_a = a.forward(X1)
    target_b = b.forward(X1).copy()
    value_a, _ = a.loss_and_grad(X2, target_a, _mse)
    value_b, _ = b.loss_and_grad(X2, target_b, _mse)
    assert value_a == pytest.approx(value_b)
    np.testing.assert_allclose(a.grads, b.grads)


def test_sample_weight_aliasing_workspace_is_copied():
    # the weight is checked (and its sum taken for the mean) before the forward, and
    # read by the loss kernel after it: a view of the output must be copied
    rng = np.random.default_rng(0)
    X1, X2 = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    target = rng.normal(size=(6, 1))
    a, b = _pair(n_out=1, last="relu")
    weight_a = a.forward(X1)[:, 0]
    weight_b = b.forward(X1)[:, 0].copy()
    assert (weight_b >= 0).all() and weight_b.sum() > 0
    value_a, _ = a.loss_and_grad(X2, target, bp.MSELoss(), sample_weight=weight_a)
    value_b, _ = b.loss_and_grad(X2, target, bp.MSELoss(), sample_weight=weight_b)
    assert value_a == pytest.approx(value_b)
    np.testing.assert_allclose(a.grads, b.grads)


def _square_pair():
    models = []
    for _ in range(2):
        m = bp.Model([bp.Dense(3, 3, "tanh"), bp.Dense(3, 3)], seed=0)
        m.grads[...] = np.arange(m.grads.size) * 0.01    # gradients of an earlier pass
        models.append(m)
    return models


@pytest.mark.parametrize("optimizer, buffer", [
    (lambda m: bp.SGD(m, lr=0.5), lambda m: m.layers[1].W),     # folded SGD writes W1
    (lambda m: bp.Adam(m, lr=0.1), lambda m: m.layers[0].dW),   # dW0 written first...
    (lambda m: bp.Adam(m, lr=0.1), lambda m: m.layers[1].dW),   # ...dW1 before dW0
], ids=["sgd-W1", "adam-dW0", "adam-dW1"])
def test_train_step_X_aliasing_parameters_or_gradients_is_copied(optimizer, buffer):
    # X is a view of the parameters or gradients, which the fused step writes before
    # it has finished reading X: the step must see X as it came
    a, b = _square_pair()
    target = np.random.default_rng(1).normal(size=(3, 3))
    X_a = buffer(a)
    X_b = buffer(b).copy()
    value_a = a.train_step(X_a, target, bp.MSELoss(), optimizer(a))
    value_b = b.train_step(X_b, target, bp.MSELoss(), optimizer(b))
    assert value_a == pytest.approx(value_b)
    np.testing.assert_allclose(a.params, b.params)


def test_loss_and_grad_X_aliasing_gradients_is_copied():
    # loss_and_grad zeroes grads between the forward and the backward, which reads X
    # again for dW = X^T delta
    a, b = _square_pair()
    target = np.random.default_rng(1).normal(size=(3, 3))
    value_a, _ = a.loss_and_grad(a.layers[1].dW, target, bp.MSELoss())
    value_b, _ = b.loss_and_grad(b.layers[1].dW.copy(), target, bp.MSELoss())
    assert value_a == pytest.approx(value_b)
    np.testing.assert_allclose(a.grads, b.grads)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_buffers_start_on_cache_lines(dtype):
    # the core's 32-byte vectors straddle cache lines on NumPy's 16-byte alignment:
    # parameters, gradients, optimizer state and workspaces start on 64 bytes
    rng = np.random.default_rng(0)
    model = bp.Model([bp.Dense(3, 7, "relu"), bp.Dense(7, 5, "tanh"), bp.Dense(5, 2)],
                     dtype=dtype, seed=0)
    X, y = rng.normal(size=(9, 3)), rng.normal(size=(9, 2))
    adam, momentum = bp.Adam(model, lr=1e-3), bp.SGD(model, lr=0.01, momentum=0.9)
    for optimizer in (adam, momentum):
        model.train_step(X, y, bp.MSELoss(), optimizer)
    model.forward(X)
    dX = model.backward(np.ones((9, 2)))
    model.predict(X)
    arrays = {"params": model.params, "grads": model.grads, "dX": dX}
    arrays.update({f"state {name}": buf for opt in (adam, momentum)
                   for name, buf in opt.state.items()})
    for n, space in model._train_spaces.items():
        for group in ("A", "Z", "D", "G", "delta", "dX"):
            for i, buf in enumerate(getattr(space, group) or ()):
                if buf.size:
                    arrays[f"train {n} {group}[{i}]"] = buf
    for n, predictor in model._predictors.items():    # (each has buffers of its own)
        for i, plan in enumerate(predictor.keep):
            arrays[f"predict {n} A[{i}]"] = plan.A
    assert len(arrays) > 10
    for name, array in arrays.items():
        assert array.ctypes.data % 64 == 0, name
        assert array.flags.c_contiguous and array.flags.writeable, name
        assert array.dtype == dtype, name
    # the layers' tensors remain views of the flat buffers
    assert np.shares_memory(model.layers[1].W, model.params)
    assert np.shares_memory(model.layers[1].dW, model.grads)


@pytest.mark.parametrize("shape", [0, 1, 5, (0, 3), (4, 0), (3, 5), (2, 3, 4)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_aligned_arrays_are_plain_arrays_of_the_shape_asked_for(shape, dtype):
    from bpcore import _aligned
    expected = np.zeros(shape, dtype)
    for array in (_aligned.zeros(shape, dtype), _aligned.empty(shape, dtype)):
        assert array.shape == expected.shape and array.dtype == expected.dtype
        assert array.flags.c_contiguous and array.flags.writeable
        assert array.size == 0 or array.ctypes.data % _aligned.ALIGNMENT == 0
    np.testing.assert_array_equal(_aligned.zeros(shape, dtype), expected)
    filled = _aligned.full_like(expected, 3)
    np.testing.assert_array_equal(filled, np.full_like(expected, 3))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_loaded_optimizer_state_is_an_aligned_copy(dtype):
    model = bp.Model([bp.Dense(3, 5, "relu"), bp.Dense(5, 2)], dtype=dtype, seed=0)
    optimizer = bp.Adam(model, lr=1e-3)
    state = optimizer.state_dict()
    given = {name: np.linspace(0.0, 1.0, model.params.size)    # float64, 16-byte aligned
             for name in ("exp_avg", "exp_avg_sq")}
    state["state"] = given
    optimizer.load_state_dict(state)
    for name, buf in optimizer.state.items():
        assert buf.ctypes.data % 64 == 0 and buf.dtype == dtype, name
        np.testing.assert_array_equal(buf, given[name].astype(dtype))
        assert not np.shares_memory(buf, given[name])
