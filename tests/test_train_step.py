"""The fused training step equals the step built from loss_and_grad and optimizer.step."""
import contextlib
import os
import sys
import threading
import warnings

import numpy as np
import numpy_reference as ref
import pytest
from conftest import ACTIVATIONS, randomize

import bpcore as bp
from bpcore import _dense

OPTIMIZERS = {
    "sgd": lambda m: bp.SGD(m, lr=0.1),
    "sgd-wd": lambda m: bp.SGD(m, lr=0.1, weight_decay=0.01),
    "momentum": lambda m: bp.SGD(m, lr=0.05, momentum=0.9),
    "nesterov": lambda m: bp.SGD(m, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda m: bp.Adam(m, lr=0.01),
    "adam-wd": lambda m: bp.Adam(m, lr=0.01, betas=(0.8, 0.99), weight_decay=0.01),
}
LOSSES = {
    "mse": (bp.MSELoss, lambda rng, n, k: rng.normal(size=(n, k))),
    "mse-sum": (lambda: bp.MSELoss(reduction="sum"), lambda rng, n, k: rng.normal(size=(n, k))),
    "ce-labels": (bp.CrossEntropyLoss, lambda rng, n, k: rng.integers(0, k, n)),
    "ce-probs": (bp.CrossEntropyLoss, lambda rng, n, k: rng.dirichlet(np.ones(k), n)),
    "bce": (bp.BCEWithLogitsLoss, lambda rng, n, k: rng.uniform(size=(n, k))),
    "poisson": (bp.PoissonLoss, lambda rng, n, k: rng.poisson(2.0, size=(n, k)).astype(float)),
}


def pair(activation, dtype, rng):
    models = []
    for _ in range(2):
        model = bp.Model([bp.Dense(5, 8, activation), bp.Dense(8, 6, activation),
                          bp.Dense(6, 3)], dtype=dtype, seed=0)
        randomize(model, np.random.default_rng(7))
        models.append(model)
    return models


def step_side_by_side(fused, plain, opt_fused, opt_plain, loss, batches, steps, tol):
    """``steps`` steps over ``batches`` in turn: train_step on ``fused``, loss_and_grad
    and step on ``plain``; the loss values and then the parameters must agree."""
    for step in range(steps):
        X, y = batches[step % len(batches)]
        value = fused.train_step(X, y, loss, opt_fused)
        expected, _ = plain.loss_and_grad(X, y, loss)
        opt_plain.step()
        np.testing.assert_allclose(value, expected, **tol)
    np.testing.assert_allclose(fused.params, plain.params, **tol)


# batch 12: weight gradients from products; 1 and 3: SGD with momentum or weight
# decay forms each weight's gradient inside its update (outer_sgd_update)
@pytest.mark.parametrize("batch", [12, 1, 3])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_step_equals_two_call_step(optimizer, loss_name, dtype, batch, rng):
    fused, plain = pair("tanh", dtype, rng)
    make_loss, make_target = LOSSES[loss_name]
    loss = make_loss()
    opt_fused, opt_plain = OPTIMIZERS[optimizer](fused), OPTIMIZERS[optimizer](plain)
    if loss_name == "mse-sum":          # the summed loss is 36x larger: keep the run stable
        opt_fused.lr = opt_plain.lr = opt_plain.lr / 36
    batches = [(rng.normal(size=(batch, 5)).astype(dtype), make_target(rng, batch, 3))
               for _ in range(3)]
    # float32: the fused step's products of small layers sum in another order than
    # BLAS, and 30 steps compound the rounding
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    step_side_by_side(fused, plain, opt_fused, opt_plain, loss, batches, 30, tol)
    # the last batch's gradient; plain SGD folds W's update and leaves dW unwritten,
    # and so does any SGD at batch sizes up to 4
    folded = optimizer == "sgd" or (batch <= 4 and not optimizer.startswith("adam"))
    for layer_fused, layer_plain in zip(fused.layers, plain.layers):
        np.testing.assert_allclose(layer_fused.db, layer_plain.db, **tol)
        if not folded:
            np.testing.assert_allclose(layer_fused.dW, layer_plain.dW, **tol)
    assert opt_fused.steps == opt_plain.steps == 30
    for name in opt_plain.state:
        np.testing.assert_allclose(opt_fused.state[name], opt_plain.state[name], **tol)


def _offset(model, array):
    """Where ``array`` (a view of the flat parameters) starts in ``model.params``."""
    start = array.__array_interface__["data"][0] - model.params.__array_interface__["data"][0]
    return start // model.params.itemsize


# With more than one BLAS thread, SGD with momentum (no weight decay, not Nesterov)
# lets BLAS add a layer's weight-gradient product into the momentum buffer (beta =
# momentum) and step W with its axpy, where BLAS takes that product; where bpcore's
# own loops take it (which products those are depends on the CPU:
# _dense.takes_own_loops), the one-unit MSE output layer (its own kernel) and with
# one thread everywhere, the one pass over dW. Each way gives the plain NumPy step's
# loss, weights and momentum buffer. The nets hold products that BLAS takes and
# products that the own loops take on every CPU (checked below), and the plan's
# choice is forced (blas_threads_planned), so that every way runs on any machine.
NETS = {
    "tanh": [(120, 96, "tanh"), (96, 8, "tanh"), (8, 3, "identity")],
    # scaled units (a parameter c per unit), and a one-unit output under MSE
    "scaled-unit": [(120, 256, "scaled_sigmoid"), (256, 16, "tanh"), (16, 1, "identity")],
}
BATCH = 40


def _unit_output(net, layer, dtype):
    """Whether the layer is the net's one-unit identity output that runs through its own
    kernel under MSE (unit_mse: its inputs fill 1 to 4 vectors of 32 bytes exactly)."""
    n_in, n_out, activation = NETS[net][layer]
    lanes = 32 // np.dtype(dtype).itemsize
    return (layer == len(NETS[net]) - 1 and n_out == 1 and activation == "identity"
            and n_in % lanes == 0 and 1 <= n_in // lanes <= 4)


def test_the_nets_take_both_ways_of_the_momentum_update_on_this_cpu():
    """Derived from the rule of this CPU: some weight-gradient products of the nets go
    to BLAS (the update through BLAS's axpy) and some to bpcore's own loops (dW, then
    the one pass), so that the tests below exercise both ways here."""
    for dtype in (np.float64, np.float32):
        own = {_dense.takes_own_loops(True, False, n_in, n_out, BATCH)
               for net, layers in NETS.items() for i, (n_in, n_out, _) in enumerate(layers)
               if not _unit_output(net, i, dtype)}
        assert own == {True, False}, dtype


@contextlib.contextmanager
def blas_threads_planned(parallel):
    """BLAS at one thread (``parallel`` False) or two (True) while the block runs, and
    the fused steps built meanwhile planned for it (``engine.blas_parallel``). Where
    BLAS cannot run that many threads here (one core, OPENBLAS_NUM_THREADS=1, or no
    threadpoolctl), the plan's choice (bpcore.threads._blas_parallel, read when a step
    is built) is set instead: it decides which kernels run, not what a step computes,
    so that both ways run on every machine. The choice's rule itself is tested in
    test_threads.py."""
    threads = 2 if parallel else 1
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(bp.set_blas_threads(threads))
            reached = bp.blas_threads() == threads
        except ImportError:                                    # no threadpoolctl
            reached = False
        if not reached:
            patch = stack.enter_context(pytest.MonkeyPatch.context())
            patch.setattr(bp.threads, "_blas_parallel", lambda: parallel)
        yield


def _steps_beside_numpy(net, dtype, parallel, make_optimizer, reference, rng):
    """12 fused steps of the net planned for one BLAS thread or more (``parallel``;
    batch 40, MSE), each beside the plain NumPy step: ``reference(t, value, grad,
    state)`` is the update of one array, ``state`` its optimizer buffers (new,
    returned). The gradients are filled with NaN before the last step, so that
    ``grads`` shows which the step wrote.
    Returns the model, its optimizer, and per layer the parameter names, the NumPy
    values, optimizer buffers and last gradients (float64)."""
    model = bp.Model([bp.Dense(i, o, a) for i, o, a in NETS[net]], dtype=dtype, seed=0)
    optimizer = make_optimizer(model)
    keys = [("W", "b", "c") if a == "scaled_sigmoid" else ("W", "b") for *_, a in NETS[net]]
    layers = [dict({key: getattr(l, key).astype(np.float64) for key in names},
                   activation=a) for l, names, (*_, a) in zip(model.layers, keys, NETS[net])]
    states = [{key: () for key in names} for names in keys]
    k = NETS[net][-1][1]
    batches = [(rng.normal(size=(BATCH, 120)).astype(dtype), rng.normal(size=(BATCH, k)))
               for _ in range(3)]
    with blas_threads_planned(parallel):
        for step in range(12):
            X, y = batches[step % 3]
            if step == 11:
                model.grads[:] = np.nan      # which weight gradients the step writes
            value = model.train_step(X, y, bp.MSELoss(), optimizer)
            output, caches = ref.network_forward(layers, X.astype(np.float64))
            expected, grad_output = ref.mse(output, y)
            grads, _ = ref.network_backward(layers, caches, grad_output)
            for layer, grad, state, names in zip(layers, grads, states, keys):
                for key in names:
                    layer[key], state[key] = reference(step + 1, layer[key], grad[key],
                                                       state[key])
            np.testing.assert_allclose(value, expected, **TOLERANCE[dtype])
        assert model._fused.engine.blas_parallel == parallel
    return model, optimizer, list(zip(keys, layers, states, grads))


TOLERANCE = {np.float64: dict(rtol=1e-12, atol=1e-14), np.float32: dict(rtol=2e-4, atol=2e-5)}


@pytest.mark.parametrize("parallel", [False, True], ids=["1-thread", "threads"])
@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_momentum_sgd_through_blas_equals_numpy(dtype, net, parallel, rng):
    lr, momentum, tol = 0.05, 0.9, TOLERANCE[dtype]

    def reference(t, value, grad, state):
        value, buffer = ref.sgd_step(value, grad, state[0] if state else 0 * value, lr,
                                     momentum)
        return value, (buffer,)
    model, optimizer, layers = _steps_beside_numpy(
        net, dtype, parallel, lambda m: bp.SGD(m, lr=lr, momentum=momentum), reference, rng)
    velocity = optimizer.state["momentum_buffer"]
    for mine, (names, layer, state, grad) in zip(model.layers, layers):
        for key in names:
            np.testing.assert_allclose(getattr(mine, key), layer[key], **tol)
            start = _offset(model, getattr(mine, key))
            np.testing.assert_allclose(velocity[start:start + layer[key].size],
                                       state[key][0].ravel(), **tol)
        np.testing.assert_allclose(mine.db, grad["b"], **tol)
    # dW: where BLAS took the product (on this CPU), it went into the momentum buffer
    # instead; the own loops and the one-unit output layer write dW either way
    for i, (mine, (*_, grad)) in enumerate(zip(model.layers, layers)):
        through_blas = parallel and not _unit_output(net, i, dtype) and \
            not _dense.takes_own_loops(True, False, mine.n_in, mine.n_out, BATCH)
        if through_blas:
            assert np.isnan(mine.dW).all(), i
        else:
            np.testing.assert_allclose(mine.dW, grad["W"], **tol, err_msg=f"layer {i}")


# With more than one BLAS thread, the fused step's Adam pass is shared between the
# calling thread and bpcore's helper thread (_pool.h) over chunks of 32 KiB where
# the parameters fill more than two (the tanh net's 12,419 doubles, the scaled-unit
# net's 35,345 floats and doubles); each entry gets the one-thread update.
@pytest.mark.parametrize("parallel", [False, True], ids=["1-thread", "threads"])
@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adam_on_one_and_two_threads_equals_numpy(dtype, net, parallel, rng):
    lr, betas, weight_decay = 0.01, (0.8, 0.99), 0.01
    # Adam divides by the root of its second moment: where that is small, it scales a
    # gradient's last-bit differences up: 2e-14 off in 4e-3 after 12 steps in float64,
    # 5e-5 in float32 (one weight of 30,720), against about lr = 1e-2 per step that a
    # skipped or doubled update would be off by
    tol = (dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else
           dict(rtol=2e-4, atol=2e-4))

    def reference(t, value, grad, state):
        m, v = state if state else (0 * value, 0 * value)
        return (lambda p, m, v: (p, (m, v)))(*ref.adam_step(
            value, grad, m, v, t, lr, *betas, weight_decay=weight_decay))
    model, optimizer, layers = _steps_beside_numpy(
        net, dtype, parallel,
        lambda m: bp.Adam(m, lr=lr, betas=betas, weight_decay=weight_decay), reference, rng)
    for mine, (names, layer, state, grad) in zip(model.layers, layers):
        for key in names:
            np.testing.assert_allclose(getattr(mine, key), layer[key], **tol)
            start = _offset(model, getattr(mine, key))
            for buffer, expected in zip(("exp_avg", "exp_avg_sq"), state[key]):
                np.testing.assert_allclose(
                    optimizer.state[buffer][start:start + layer[key].size],
                    expected.ravel(), **tol)
            # Adam reads every gradient: the step wrote them all
            np.testing.assert_allclose(getattr(mine, "d" + key), grad[key], **tol)


def test_momentum_sgd_at_lr_zero_keeps_a_non_finite_gradient_out_of_its_buffer():
    # BLAS's axpy skips its work when alpha is 0: at lr 0 the momentum update keeps
    # the one pass, which writes lr * buf (NaN) into the weights, where fit's guard
    # sees it and skips the batch with everything restored
    with blas_threads_planned(True):
        model = bp.Model([bp.Dense(300, 300), bp.Dense(300, 300)], seed=0)
        optimizer = bp.SGD(model, lr=0.0, momentum=0.9)
        model.layers[0].W[:] = 0
        model.layers[0].W[0, :] = 1e7
        model.layers[1].W[:] = 1e-10
        params = model.params.copy()
        X = np.zeros((40, 300))
        X[:, 0] = 1e300                      # finite, but its logits overflow
        y = np.zeros(40, dtype=np.int64)
        model.fit(X, y, loss=bp.CrossEntropyLoss(reduction="sum"), optimizer=optimizer,
                  epochs=1, batch_size=40, verbose=0, on_nonfinite="skip")
    assert model._fused.engine.blas_parallel          # the step planned for BLAS threads
    # (300 x 300 at batch 40: BLAS takes the weight-gradient products on every CPU)
    assert not _dense.takes_own_loops(True, False, 300, 300, 40)
    np.testing.assert_array_equal(model.params, params)
    assert all(np.isfinite(buffer).all() for buffer in optimizer.state.values())


# A one-unit identity output under the squared error runs its forward, the loss and
# its backward in one call (unit_mse) where its inputs fill 1 to 4 vectors exactly:
# 4, 8, 12 or 16 doubles, 8, 16, 24 or 32 floats; 5 inputs, 24 and 32 doubles, and 4
# and 12 floats take the separate passes. The layer below reads its ReLU derivative
# off its output, or its cache.
@pytest.mark.parametrize("hidden", [16, 8, 32, 5, 4, 12, 24])
@pytest.mark.parametrize("batch", [100, 1, 3, 6])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov-wd", "adam", "rmsprop"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_step_one_unit_output(dtype, activation, optimizer, batch, hidden, rng):
    models = []
    for _ in range(2):
        model = bp.Model([bp.Dense(2, hidden, activation), bp.Dense(hidden, hidden, activation),
                          bp.Dense(hidden, 1)], dtype=dtype, seed=0)
        models.append(model)
    fused, plain = models
    loss = bp.MSELoss(reduction="sum" if batch == 6 else "mean")
    # rates at which 20 steps stay far from overflow (the summed loss: 6x smaller)
    lr = {"sgd": 0.01, "momentum": 0.005, "nesterov-wd": 0.005, "adam": 0.001,
          "rmsprop": 0.001}[optimizer] / (6 if batch == 6 else 1)
    make = {"sgd": lambda m: bp.SGD(m, lr=lr),
            "momentum": lambda m: bp.SGD(m, lr=lr, momentum=0.9),
            "nesterov-wd": lambda m: bp.SGD(m, lr=lr, momentum=0.9, nesterov=True,
                                            weight_decay=0.01),
            "adam": lambda m: bp.Adam(m, lr=lr),
            # no update inside the step: its own step() runs after, on every gradient
            "rmsprop": lambda m: bp.RMSprop(m, lr=lr)}[optimizer]
    opt_fused, opt_plain = make(fused), make(plain)
    batches = [(rng.normal(size=(batch, 2)).astype(dtype), rng.normal(size=(batch, 1)))
               for _ in range(3)]
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    step_side_by_side(fused, plain, opt_fused, opt_plain, loss, batches, 20, tol)
    for layer_fused, layer_plain in zip(fused.layers, plain.layers):
        np.testing.assert_allclose(layer_fused.db, layer_plain.db, **tol)
    if optimizer in ("adam", "rmsprop"):   # every gradient written: both read them all
        np.testing.assert_allclose(fused.grads, plain.grads, **tol)


@pytest.mark.parametrize("momentum", [0.0, 0.5])      # 0: the update folded into the product
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_fused_step_every_activation(activation, momentum, rng):
    fused, plain = pair(activation, np.float64, rng)
    X, y = rng.normal(size=(9, 5)), rng.integers(0, 3, 9)
    o1 = bp.SGD(fused, lr=0.1, momentum=momentum)
    o2 = bp.SGD(plain, lr=0.1, momentum=momentum)
    for _ in range(5):
        fused.train_step(X, y, bp.CrossEntropyLoss(), o1)
        plain.loss_and_grad(X, y, bp.CrossEntropyLoss())
        o2.step()
    np.testing.assert_allclose(fused.params, plain.params, rtol=1e-12, atol=1e-14)


def test_fused_step_equals_the_numpy_reference():
    """Independent oracle: a hand-written NumPy step of 2-16-16-1 ReLU, MSE, SGD."""
    rng = np.random.default_rng(3)
    model = bp.Model([bp.Dense(2, 16, "relu"), bp.Dense(16, 16, "relu"), bp.Dense(16, 1)],
                     seed=0)
    W = [l.W.copy() for l in model.layers]
    b = [l.b.copy() for l in model.layers]
    X, y = rng.normal(size=(100, 2)), rng.normal(size=(100, 1))
    optimizer = bp.SGD(model, lr=0.01)
    for _ in range(50):
        h1 = np.maximum(X @ W[0] + b[0], 0)
        h2 = np.maximum(h1 @ W[1] + b[1], 0)
        out = h2 @ W[2] + b[2]
        expected = np.mean((out - y) ** 2)
        d3 = 2 * (out - y) / out.size
        d2 = (d3 @ W[2].T) * (h2 > 0)
        d1 = (d2 @ W[1].T) * (h1 > 0)
        grads = [(X.T @ d1, d1.sum(0)), (h1.T @ d2, d2.sum(0)), (h2.T @ d3, d3.sum(0))]
        for i, (gW, gb) in enumerate(grads):
            W[i] -= 0.01 * gW
            b[i] -= 0.01 * gb
        assert model.train_step(X, y, bp.MSELoss(), optimizer) == pytest.approx(expected, rel=1e-12)
    for layer, Wi, bi in zip(model.layers, W, b):
        np.testing.assert_allclose(layer.W, Wi, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(layer.b, bi, rtol=1e-10, atol=1e-13)


def test_train_step_takes_keywords_and_the_unbound_form(rng):
    """train_step is defined in the Cython core and bound as a Model method: called by
    keywords, or unbound on the class, it is still the step of the two-call path."""
    X, y = rng.normal(size=(12, 5)), rng.integers(0, 3, 12)
    fused, plain = pair("relu", np.float64, rng)
    o1, o2 = bp.SGD(fused, lr=0.1, momentum=0.5), bp.SGD(plain, lr=0.1, momentum=0.5)
    loss = bp.CrossEntropyLoss()
    for i in range(4):
        if i % 2:
            value = bp.Model.train_step(fused, X, y, loss, o1)
        else:
            value = fused.train_step(optimizer=o1, loss=loss, target=y, X=X)
        expected, _ = plain.loss_and_grad(X, y, loss)
        o2.step()
        assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(fused.params, plain.params, rtol=1e-12, atol=1e-14)
    assert "One training step in one call" in bp.Model.train_step.__doc__


def test_other_optimizers_and_custom_losses_and_dropout_take_the_general_path(rng):
    X, y = rng.normal(size=(10, 5)), rng.integers(0, 3, 10)
    for make in (lambda m: bp.optim.AdamW(m, lr=0.01), lambda m: bp.optim.RMSprop(m, lr=0.01)):
        fused, plain = pair("relu", np.float64, rng)
        o1, o2 = make(fused), make(plain)
        for _ in range(5):
            fused.train_step(X, y, bp.CrossEntropyLoss(), o1)
            plain.loss_and_grad(X, y, bp.CrossEntropyLoss())
            o2.step()
        np.testing.assert_allclose(fused.params, plain.params, rtol=1e-12, atol=1e-14)

    def custom(output, target):
        r = output - target
        return float((r * r).mean()), 2 * r / r.size
    fused, plain = pair("relu", np.float64, rng)
    target = rng.normal(size=(10, 3))
    o1, o2 = bp.SGD(fused, lr=0.1), bp.SGD(plain, lr=0.1)
    fused.train_step(X, target, custom, o1)
    plain.train_step(X, target, bp.MSELoss(), o2)
    np.testing.assert_allclose(fused.params, plain.params, rtol=1e-12)


def test_fused_step_converts_other_layouts_and_dtypes(rng):
    fused, plain = pair("tanh", np.float32, rng)
    X = np.asfortranarray(rng.normal(size=(8, 5)))             # float64, Fortran order
    y = rng.integers(0, 3, 8).astype(np.int32)
    o1, o2 = bp.Adam(fused), bp.Adam(plain)
    fused.train_step(X, y, bp.CrossEntropyLoss(), o1)
    plain.train_step(np.ascontiguousarray(X, np.float32), y.astype(np.int64),
                     bp.CrossEntropyLoss(), o2)
    np.testing.assert_array_equal(fused.params, plain.params)


def misaligned(array):
    raw = np.zeros(array.nbytes + 1, np.uint8)[1:]
    out = raw.view(array.dtype).reshape(array.shape)
    out[...] = array
    assert not out.flags.aligned
    return out


@pytest.mark.parametrize("kind", ["byteswapped", "misaligned"])
@pytest.mark.parametrize("loss", ["mse", "ce-labels"])
def test_fused_step_takes_byteswapped_and_misaligned_input(kind, loss, rng):
    # the model's dtype and C order, but not as the kernels read memory: converted
    fused, plain = pair("relu", np.float64, rng)
    X = rng.normal(size=(8, 5))
    y = rng.normal(size=(8, 3)) if loss == "mse" else rng.integers(0, 3, 8)
    make = ((lambda a: a.astype(a.dtype.newbyteorder("S"))) if kind == "byteswapped"
            else misaligned)
    loss_fn = bp.MSELoss() if loss == "mse" else bp.CrossEntropyLoss()
    o1, o2 = bp.SGD(fused, lr=0.1), bp.SGD(plain, lr=0.1)
    for _ in range(2):               # the second call meets the built engine
        v1 = fused.train_step(make(X), make(y), loss_fn, o1)
        v2 = plain.train_step(X, y, loss_fn, o2)
        assert v1 == v2
        np.testing.assert_array_equal(fused.params, plain.params)
        np.testing.assert_array_equal(fused.predict(make(X)), plain.predict(X))


@pytest.mark.parametrize("case, match", [
    ("nan-X", "X contains NaN or infinity"),
    ("features", "X has 4 features, the model expects 5"),
    ("label-range", r"target labels must lie in \[0, 2\]"),
    ("batch", "target has 7 labels but the output has 8 samples"),
    ("complex-X", r"X must be a real numeric array \(float, integer or bool\); got dtype "
                  "complex128"),
])
def test_bad_input_to_the_fused_step_changes_nothing(case, match, rng):
    model, _ = pair("relu", np.float64, rng)
    optimizer = bp.Adam(model)
    X, y = rng.normal(size=(8, 5)), rng.integers(0, 3, 8)
    model.train_step(X, y, bp.CrossEntropyLoss(), optimizer)       # engine and state exist
    before = (model.params.copy(), model.grads.copy(), optimizer.state_dict())
    bad_X, bad_y = X.copy(), y.copy()
    if case == "nan-X":
        bad_X[3, 1] = np.nan
    elif case == "features":
        bad_X = X[:, :4]
    elif case == "label-range":
        bad_y[2] = 3
    elif case == "batch":
        bad_y = y[:7]
    else:
        bad_X = np.ones((8, 5), dtype=np.complex128)
    with pytest.raises((ValueError, TypeError), match=match):
        model.train_step(bad_X, bad_y, bp.CrossEntropyLoss(), optimizer)
    np.testing.assert_array_equal(model.params, before[0])
    np.testing.assert_array_equal(model.grads, before[1])
    after = optimizer.state_dict()
    assert after["steps"] == before[2]["steps"]
    for name in after["state"]:
        np.testing.assert_array_equal(after["state"][name], before[2]["state"][name])


def test_loaded_optimizer_state_is_used_by_the_fused_step(rng):
    fused, plain = pair("relu", np.float64, rng)
    X, y = rng.normal(size=(8, 5)), rng.integers(0, 3, 8)
    o1, o2 = bp.SGD(fused, lr=0.1, momentum=0.9), bp.SGD(plain, lr=0.1, momentum=0.9)
    for _ in range(3):
        fused.train_step(X, y, bp.CrossEntropyLoss(), o1)
        plain.train_step(X, y, bp.CrossEntropyLoss(), o2)
    state = o2.state_dict()
    state["state"]["momentum_buffer"][...] = 0.5              # replaces the buffers
    o1.load_state_dict(state)
    o2.load_state_dict(state)
    fused.train_step(X, y, bp.CrossEntropyLoss(), o1)
    plain.loss_and_grad(X, y, bp.CrossEntropyLoss())
    o2.step()
    np.testing.assert_allclose(fused.params, plain.params, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch", [1, 2, 300])
def test_fused_step_and_predict_at_any_batch_size(batch, rng):
    fused, plain = pair("relu", np.float64, rng)
    o1, o2 = bp.SGD(fused, lr=0.05, momentum=0.9), bp.SGD(plain, lr=0.05, momentum=0.9)
    for _ in range(10):
        X, y = rng.normal(size=(batch, 5)), rng.integers(0, 3, batch)
        fused.train_step(X, y, bp.CrossEntropyLoss(), o1)
        plain.loss_and_grad(X, y, bp.CrossEntropyLoss())
        o2.step()
        np.testing.assert_allclose(fused.params, plain.params, rtol=1e-12, atol=1e-14)
        out = fused.predict(X)
        W = [l.W for l in fused.layers]
        b = [l.b for l in fused.layers]
        h = np.maximum(X @ W[0] + b[0], 0)
        h = np.maximum(h @ W[1] + b[1], 0)
        np.testing.assert_allclose(out, h @ W[2] + b[2], rtol=1e-12, atol=1e-14)
        assert not np.shares_memory(out, fused.predict(X))   # a new array every call


def one_step_each_way(fused, plain, X, y, losses, optimizers):
    """train_step on ``fused``; loss_and_grad and step on ``plain``: the same loss
    value and parameters after."""
    v1 = fused.train_step(X, y, losses[0], optimizers[0])
    v2, _ = plain.loss_and_grad(X, y, losses[1])
    optimizers[1].step()
    assert v1 == pytest.approx(v2, rel=1e-12)
    np.testing.assert_allclose(fused.params, plain.params, rtol=1e-12, atol=1e-14)


def test_changed_hyperparameters_and_reduction_are_honoured(rng):
    fused, plain = pair("tanh", np.float64, rng)
    X, y = rng.normal(size=(8, 5)), rng.normal(size=(8, 3))
    loss_f, loss_p = bp.MSELoss(), bp.MSELoss()
    o1, o2 = bp.SGD(fused, lr=0.05), bp.SGD(plain, lr=0.05)

    def both():
        one_step_each_way(fused, plain, X, y, (loss_f, loss_p), (o1, o2))

    both()
    o1.momentum = o2.momentum = 0.9          # momentum switched on: a buffer appears
    both()
    both()
    o1.lr = o2.lr = 0.01
    o1.nesterov = o2.nesterov = True
    both()
    loss_f.reduction = loss_p.reduction = "sum"
    both()


def test_changed_adam_hyperparameters_and_step_count_are_honoured(rng):
    # the fused step reads the optimizer's scalars from C fields the optimizer keeps
    # current: every way of changing them must reach the next fused step
    fused, plain = pair("relu", np.float64, rng)
    X, y = rng.normal(size=(8, 5)), rng.normal(size=(8, 3))
    loss = bp.MSELoss()
    o1, o2 = bp.Adam(fused, lr=0.01), bp.Adam(plain, lr=0.01)

    def both():
        one_step_each_way(fused, plain, X, y, (loss, loss), (o1, o2))
        assert o1.steps == o2.steps

    both()
    for name, value in [("lr", 0.003), ("betas", (0.5, 0.9)), ("eps", 1e-3),
                        ("weight_decay", 0.1)]:
        setattr(o1, name, value)
        setattr(o2, name, value)
        both()
    o1.steps = o2.steps = 0                  # the bias correction starts over
    both()
    saved = o2.state_dict()                  # loaded: hyper-parameters and the count
    saved["hyperparameters"]["lr"] = 0.02
    saved["steps"] = 40
    o1.load_state_dict(saved)
    o2.load_state_dict(saved)
    both()
    assert o1.steps == 41 and o1.lr == 0.02


@pytest.mark.parametrize("value, error", [(-1, ValueError), (1.5, TypeError),
                                          (True, TypeError), ("3", TypeError)])
def test_bad_step_count_is_refused_and_changes_nothing(value, error, rng):
    model, _ = pair("relu", np.float64, rng)
    opt = bp.Adam(model, lr=0.01)
    model.train_step(rng.normal(size=(4, 5)), rng.normal(size=(4, 3)), bp.MSELoss(), opt)
    with pytest.raises(error, match="steps must be a non-negative integer"):
        opt.steps = value
    assert opt.steps == 1
    opt.steps = np.int64(7)
    assert opt.steps == 7 and type(opt.steps) is int


def test_tiny_and_wide_layers_take_both_paths_on_this_cpu():
    """By this CPU's rule, the hidden layer's dX product (delta.W^T, which carries the
    ReLU below in its store where the own loops take it) of the test below goes to
    bpcore's own loops at some of its shapes and to BLAS at others."""
    assert {_dense.takes_fused_loops(True, batch, width, width)
            for width in (16, 64, 70) for batch in (1, 9, 100)} == {True, False}


@pytest.mark.parametrize("width", [16, 64, 70])        # the one-pass loops: unrolled / generic
@pytest.mark.parametrize("batch", [1, 9, 100])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("second", ["leaky_relu", "relu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_step_on_tiny_and_wide_layers(width, batch, momentum, second, dtype, rng):
    # W1's shape and wider: the one-pass bias+relu and delta loops (a ReLU's
    # derivative read off its output where the layer above forms its delta), the
    # one-unit output layer, and dX through the transposed copy of W (small layers)
    # or the transposed product (the others)
    X = rng.normal(size=(batch, 2)).astype(dtype)
    y = rng.normal(size=(batch, 1)).astype(dtype)
    models = [bp.Model([bp.Dense(2, width, "relu"), bp.Dense(width, width, second),
                        bp.Dense(width, 1)], dtype=dtype, seed=0) for _ in range(2)]
    fused, plain = models
    o1, o2 = (bp.SGD(m, lr=0.01, momentum=momentum) for m in models)
    rtol, atol = (1e-12, 1e-14) if dtype == np.float64 else (2e-5, 1e-6)
    for _ in range(3):
        value = fused.train_step(X, y, bp.MSELoss(), o1)
        expected, _ = plain.loss_and_grad(X, y, bp.MSELoss())
        o2.step()
        np.testing.assert_allclose(value, expected, rtol=rtol)
    np.testing.assert_allclose(fused.params, plain.params, rtol=rtol, atol=atol)


@pytest.mark.parametrize("loss_name, bad, match", [
    ("mse", np.nan, "target contains NaN or infinity"),
    ("mse", -np.inf, "target contains NaN or infinity"),
    ("bce", 1.5, r"target of BCEWithLogitsLoss must lie in \[0, 1\]"),
    ("bce", -0.25, r"target of BCEWithLogitsLoss must lie in \[0, 1\]"),
    ("bce", np.inf, "target contains NaN or infinity"),
    ("poisson", -1.0, "target of PoissonLoss must be non-negative counts"),
    ("poisson", np.nan, "target contains NaN or infinity"),
])
@pytest.mark.parametrize("position", [0, 13, 39])     # the vectorised check's edges
def test_bad_target_to_the_built_fused_step_changes_nothing(loss_name, bad, match,
                                                            position, rng):
    model = bp.Model([bp.Dense(5, 8, "relu"), bp.Dense(8, 4)], seed=0)
    optimizer = bp.SGD(model, lr=0.1, momentum=0.9)
    loss = LOSSES[loss_name][0]()
    X = rng.normal(size=(10, 5))
    y = rng.uniform(size=(10, 4))
    model.train_step(X, y, loss, optimizer)            # the engine exists
    before = (model.params.copy(), model.grads.copy(),
              optimizer.state["momentum_buffer"].copy())
    bad_y = y.copy()
    bad_y.flat[position] = bad
    with pytest.raises(ValueError, match=match):
        model.train_step(X, bad_y, loss, optimizer)
    np.testing.assert_array_equal(model.params, before[0])
    np.testing.assert_array_equal(model.grads, before[1])
    np.testing.assert_array_equal(optimizer.state["momentum_buffer"], before[2])
    assert optimizer.steps == 1


def _in_two_threads(work):
    """work(0) and work(1) in two Python threads at once; their errors raised here."""
    errors = []

    def run(i):
        try:
            work(i)
        except Exception as error:           # reported by the main thread
            errors.append(error)
    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def _adam_steps_checked(model, optimizer, X, y, steps):
    """``steps`` fused Adam steps, each checked entry by entry against NumPy's Adam
    applied to the parameters and buffers from before the step and to the gradients
    the step wrote (every one, for Adam): the pass alone, whatever BLAS summed."""
    lr, (beta1, beta2), eps = optimizer.lr, optimizer.betas, optimizer.eps
    for _ in range(steps):
        before = [model.params.copy()] + [
            optimizer.state[name].copy() if name in optimizer.state else
            np.zeros_like(model.params) for name in ("exp_avg", "exp_avg_sq")]
        model.train_step(X, y, bp.MSELoss(), optimizer)
        expected = ref.adam_step(*[a.astype(np.float64) for a in before[:1]],
                                 model.grads.astype(np.float64),
                                 *[a.astype(np.float64) for a in before[1:]],
                                 optimizer.steps, lr, beta1, beta2, eps)
        # float32: within 1e-6 of an update of about lr = 1e-2 per entry (a skipped
        # or doubled chunk is off by about lr)
        tol = (dict(rtol=1e-13, atol=1e-16) if model.params.dtype == np.float64 else
               dict(rtol=1e-5, atol=1e-6))
        mine = [model.params, optimizer.state["exp_avg"], optimizer.state["exp_avg_sq"]]
        for ours, theirs in zip(mine, expected):
            np.testing.assert_allclose(ours, theirs, **tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adam_pass_shared_with_the_helper_thread_updates_every_entry_once(dtype, rng):
    # 300-300-300-4: 181,804 parameters, 45 to 23 chunks; at two BLAS threads the
    # helper takes some chunks of every pass it wakes for in time and none of the
    # others, and a second Python thread's model (below) finds it busy
    with blas_threads_planned(True):
        models = [bp.Model([bp.Dense(300, 300, "tanh"), bp.Dense(300, 300, "tanh"),
                            bp.Dense(300, 4)], dtype=dtype, seed=seed) for seed in (0, 1)]
        optimizers = [bp.Adam(m, lr=0.01) for m in models]
        data = [(rng.normal(size=(64, 300)).astype(dtype), rng.normal(size=(64, 4)))
                for _ in models]
        _adam_steps_checked(models[0], optimizers[0], *data[0], steps=20)
        assert models[0]._fused.engine.blas_parallel
        _in_two_threads(lambda i: _adam_steps_checked(models[i], optimizers[i], *data[i],
                                                      steps=20))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_adam_steps_in_a_forked_child_finish_and_are_right(rng):
    # only the forking thread survives fork: the child must neither wait for the
    # parent's helper, which does not exist in it, nor on a lock another thread held
    # at the fork (fork handlers hold the pool's locks across it), and its steps stay
    # right. Another Python thread runs shared passes all the while.
    with blas_threads_planned(True):
        model = bp.Model([bp.Dense(300, 300, "tanh"), bp.Dense(300, 4)], seed=0)
        optimizer = bp.Adam(model, lr=0.01)
        X, y = rng.normal(size=(64, 300)), rng.normal(size=(64, 4))
        _adam_steps_checked(model, optimizer, X, y, steps=3)     # the helper runs
        assert model._fused.engine.blas_parallel
        stop, errors = threading.Event(), []

        def passes():
            try:
                while not stop.is_set():
                    _adam_rows_checked(np.float32, 2, seed=0)
            except Exception as error:           # reported by the main thread
                errors.append(error)
        busy = threading.Thread(target=passes)
        busy.start()
        try:
            for _ in range(4):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # fork, threads
                    pid = os.fork()
                if pid == 0:                                             # the child
                    status = 1
                    try:
                        _adam_steps_checked(model, optimizer, X, y, steps=3)
                        status = 0
                    finally:
                        os._exit(status)
                # (a child stuck on a lock would hang here: no time limit, which a
                # slow machine could overrun)
                _, status = os.waitpid(pid, 0)
                assert os.waitstatus_to_exitcode(status) == 0
        finally:
            stop.set()
            busy.join()
        assert not errors, errors
        _adam_steps_checked(model, optimizer, X, y, steps=3)     # and the parent's


def _adam_rows_checked(dtype, rows, seed, chunks=20):
    """The shared Adam pass on ``rows`` buffer sets back to back (each ``chunks``
    chunks and 37 entries), every entry bit for bit as the one-thread pass (``_flat.adam``) and
    within rounding of NumPy's Adam; returns the helper's chunk count after them, and
    the passes after whose return it was still on its turn."""
    from bpcore import _engine, _flat
    rng = np.random.default_rng(seed)
    n = chunks * (32768 // np.dtype(dtype).itemsize) + 37
    lr, beta1, beta2, eps, l2, t = 0.01, 0.9, 0.999, 1e-8, 0.01, 3
    bc1, bc2 = 1 - beta1 ** t, 1 - beta2 ** t
    P, G, M = (rng.normal(size=(rows, n)).astype(dtype) for _ in range(3))
    V = rng.uniform(0.1, 1, size=(rows, n)).astype(dtype)      # (well away from 0)
    expected = [a.copy() for a in (P, M, V)]
    for i in range(rows):
        _flat.adam(expected[0][i], G[i], expected[1][i], expected[2][i], lr, beta1, beta2,
                    eps, l2, bc1, bc2)
    reference = ref.adam_step(P.astype(np.float64), G.astype(np.float64),
                              M.astype(np.float64), V.astype(np.float64), t, lr, beta1,
                              beta2, eps, l2)
    counts = _engine._adam_shared_rows(P, G, M, V, lr / bc1, beta1, beta2, eps, l2,
                                       1 / np.sqrt(bc2))
    for mine, one_thread, numpy_value in zip((P, M, V), expected, reference):
        np.testing.assert_array_equal(mine, one_thread)
        # (float32: m and v cancel, beta1 * m against (1 - beta1) * g, to about 1e-7
        # of the data's unit scale)
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13,
                                                                           atol=1e-14)
        np.testing.assert_allclose(mine, numpy_value, **tol)
    return counts


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_shared_adam_pass_equals_the_one_thread_pass_bit_for_bit(dtype):
    # Passes back to back (200 short ones, 30 long ones): a caller that returned
    # before the helper's last chunk was done would have the helper still writing (or
    # taking the next pass's chunks with this pass's buffers) while the next pass
    # runs. The helper must take part: passes are repeated until it has done chunks
    # (it starts on first use, and may wake too late for a pass, or not get a CPU on a
    # busy machine). No clock: it is woken for every pass and takes part as soon as
    # it runs during one, however slow the machine; the bound, in passes, only ends
    # the test should it never take part.
    # (The rule of _pool.h: a helper on glibc/musl Linux, when the thread that starts
    # it may use more than one CPU.)
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: there is no helper thread")
    if not sys.platform.startswith("linux"):
        pytest.skip("the helper thread is built on Linux only")
    before, late = _adam_rows_checked(dtype, 200, seed=0, chunks=4)
    for seed in range(1, 301):              # up to 9,000 long passes; 30 usually
        after, more_late = _adam_rows_checked(dtype, 30, seed)
        late += more_late
        if after > before:
            break
    assert after > before, "the helper thread took no chunk of 9,000 passes"
    # and no pass returned while the helper was still at work on it
    assert late == 0


def test_shared_adam_pass_from_two_python_threads():
    # one caller at a time shares its pass with the helper; the other finds it busy
    # and runs its pass alone: both right
    def work(seed):
        for _ in range(5):
            _adam_rows_checked(np.float32, 8, seed)
    _in_two_threads(work)


# (hidden width, batch): products of 4,096 to 2^18 multiply-adds, which CPUs with
# AVX-512 give to the own loops with their epilogues at widths 16, 24 and 32
# (fused_product_limit; at 6 rows the forward only, delta . W^T to BLAS) and to BLAS
# at 40 and 64; other CPUs to the own loops or BLAS by the plain rule
FUSED_SHAPES = [(16, 100), (24, 12), (32, 100), (32, 6), (40, 64), (64, 60)]


def test_fused_shapes_reach_beyond_the_plain_rule_on_this_cpu():
    """On a CPU with a fused limit, some of these shapes take the fused loops for
    products that the plain rule gives to BLAS (the rule itself: test_small_gemm.py)."""
    if not _dense.fused_product_limit():
        pytest.skip("this CPU's rule has no fused extension: the plain rule decides")
    assert any(_dense.takes_fused_loops(trans_b, batch, width, width)
               and not _dense.takes_own_loops(False, trans_b, batch, width, width)
               for width, batch in FUSED_SHAPES for trans_b in (False, True))


@pytest.mark.parametrize("width, batch", FUSED_SHAPES)
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "identity", "tanh", "sigmoid"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])       # 0: the update folded into dW's product
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_products_equal_the_numpy_reference(width, batch, activation, momentum,
                                                  dtype, rng):
    # forward: X.W with the bias and activation in the product's store (relu, leaky
    # relu, identity); backward: delta.W^T times the derivative below and its bias
    # gradient in the store (every activation with a derivative cache, and a ReLU's
    # read off its output); oracle: numpy_reference's forward, backward and SGD in
    # float64
    sizes = (3, width, width, 4)
    model = bp.Model([bp.Dense(sizes[0], width, activation),
                      bp.Dense(width, width, activation), bp.Dense(width, 4)],
                     dtype=dtype, seed=1)
    layers = [{"W": l.W.astype(np.float64), "b": l.b.astype(np.float64),
               "activation": l.activation} for l in model.layers]
    velocity = [{"W": np.zeros_like(l["W"]), "b": np.zeros_like(l["b"])} for l in layers]
    optimizer = bp.SGD(model, lr=0.02, momentum=momentum)
    for _ in range(4):
        X = rng.normal(size=(batch, sizes[0])).astype(dtype)
        y = rng.normal(size=(batch, 4)).astype(dtype)
        out, caches = ref.network_forward(layers, X.astype(np.float64))
        expected, grad_out = ref.mse(out, y.astype(np.float64))
        grads, _ = ref.network_backward(layers, caches, grad_out)
        for layer, grad, buf in zip(layers, grads, velocity):
            for name in ("W", "b"):
                layer[name], buf[name] = ref.sgd_step(layer[name], grad[name], buf[name],
                                                      0.02, momentum)
        value = model.train_step(X, y, bp.MSELoss(), optimizer)
        rtol = 1e-11 if dtype == np.float64 else 2e-4
        assert value == pytest.approx(expected, rel=rtol)
    atol = 1e-13 if dtype == np.float64 else 2e-5
    for layer, reference in zip(model.layers, layers):
        np.testing.assert_allclose(layer.W, reference["W"], rtol=rtol, atol=atol)
        np.testing.assert_allclose(layer.b, reference["b"], rtol=rtol, atol=atol)


# ---- the gradient factor a step folds into dL/doutput (a DistributedOptimizer's 1/size)

def _engine_of(model, X, y, loss):
    """The fused engine of ``model`` for (X, y, loss), its update not inside (RMSprop
    at lr 0 steps after the kernel and moves nothing)."""
    model.train_step(X, y, loss, bp.RMSprop(model, lr=0.0))
    engine = model._fused.engine
    assert not engine.fused_update
    return engine


# one output (not for cross-entropy, whose one class has no gradient): with MSE, the
# unit_mse kernel
@pytest.mark.parametrize("loss_name, n_out", [(name, n_out) for name in sorted(LOSSES)
                                              for n_out in (3, 1)
                                              if n_out == 3 or not name.startswith("ce")])
def test_the_engine_factor_scales_every_gradient_and_keeps_the_loss(loss_name, n_out, rng):
    # oracle: loss_and_grad's value and gradients on the same batch
    from bpcore import _engine
    make_loss, make_target = LOSSES[loss_name]
    model = bp.Model([bp.Dense(5, 8, "tanh"), bp.Dense(8, 16, "relu"), bp.Dense(16, n_out)],
                     seed=0)
    X, y, loss = rng.normal(size=(40, 5)), make_target(rng, 40, n_out), make_loss()
    engine = _engine_of(model, X, y, loss)
    expected, grads = model.loss_and_grad(X, y, loss)
    expected, grads, params = float(expected), grads.copy(), model.params.copy()
    assert np.any(grads != 0)
    for factor in (1.0, 0.5, 0.25, 0.3):
        value = engine.run(X, y, _engine.KEEP_GRADS, factor)
        np.testing.assert_array_equal(model.params, params)
        if factor in (1.0, 0.5, 0.25):
            # a power of two scales every rounding exactly
            np.testing.assert_allclose(model.grads, factor * grads, rtol=1e-12, atol=1e-300)
            reference = model.grads.copy()
            engine.run(X, y, _engine.KEEP_GRADS, 1.0)
            np.testing.assert_array_equal(reference, factor * model.grads)
            assert value == pytest.approx(expected, rel=1e-12)
            assert value == engine.run(X, y, _engine.KEEP_GRADS, 1.0)
        else:
            np.testing.assert_allclose(model.grads, factor * grads, rtol=1e-12,
                                       atol=1e-15 * np.abs(grads).max())
            assert value == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("factor", [0.0, -0.5, np.inf, np.nan])
def test_the_engine_refuses_a_factor_that_is_not_positive_and_finite(factor, rng):
    from bpcore import _engine
    model = bp.Model([bp.Dense(5, 8, "tanh"), bp.Dense(8, 3)], seed=0)
    X, y = rng.normal(size=(10, 5)), rng.integers(0, 3, 10)
    engine = _engine_of(model, X, y, bp.CrossEntropyLoss())
    params, grads = model.params.copy(), model.grads.copy()
    with pytest.raises(ValueError, match="factor must be positive and finite"):
        engine.run(X, y, _engine.KEEP_GRADS, factor)
    np.testing.assert_array_equal(model.params, params)
    np.testing.assert_array_equal(model.grads, grads)


class _Halving(bp.SGD):
    """An SGD that pairs step() with a prescaled form as a DistributedOptimizer does
    (bpcore.nn.fused.prescales): train_step folds 1/2 into the kernel's gradients and
    calls _step_prescaled(), which records them and steps on them."""

    seen: list = []

    def step(self):
        _Halving.seen.append(("step", self.model.grads.copy()))
        bp.SGD.step(self)

    _prescaled_step_pair = step

    def _fused_factor(self):
        return 0.5

    def _step_prescaled(self):
        _Halving.seen.append(("prescaled", self.model.grads.copy()))
        bp.SGD.step(self)


class _HalvingOverridden(_Halving):
    """The pairing broken by a step of its own: train_step calls it, unscaled."""

    def step(self):
        _Halving.seen.append(("own step", self.model.grads.copy()))
        bp.SGD.step(self)


@pytest.mark.parametrize("cls, called, factor", [(_Halving, "prescaled", 0.5),
                                                  (_HalvingOverridden, "own step", 1.0)])
def test_train_step_folds_a_paired_optimizers_factor_into_the_kernel(cls, called, factor,
                                                                      rng):
    # oracle: loss_and_grad's gradients and a plain SGD step on factor x them
    from bpcore.nn import fused
    model = bp.Model([bp.Dense(4, 8, "relu"), bp.Dense(8, 3)], seed=2)
    reference = bp.Model([bp.Dense(4, 8, "relu"), bp.Dense(8, 3)], seed=2)
    optimizer, plain = cls(model, lr=0.1), bp.SGD(reference, lr=0.1)
    assert fused.prescales(optimizer) == (cls is _Halving)
    assert not fused.prescales(plain)
    # the pairing without either half of the prescaled form is no pairing
    unpaired = type("Unpaired", (bp.SGD,), {"step": bp.SGD.step,
                                           "_prescaled_step_pair": bp.SGD.step,
                                           "_fused_factor": lambda self: 0.5})
    assert not fused.prescales(unpaired(model, lr=0.1))
    for _ in range(3):
        X, y = rng.normal(size=(12, 4)), rng.integers(0, 3, 12)
        _Halving.seen.clear()
        model.train_step(X, y, bp.CrossEntropyLoss(), optimizer)
        reference.loss_and_grad(X, y, bp.CrossEntropyLoss())
        reference.grads *= factor
        plain.step()
        assert [name for name, _ in _Halving.seen] == [called]
        np.testing.assert_allclose(_Halving.seen[0][1], reference.grads, rtol=1e-12,
                                   atol=1e-15)
        np.testing.assert_allclose(model.params, reference.params, rtol=1e-12, atol=1e-15)
    assert model._fused.prescaled == (cls is _Halving)
