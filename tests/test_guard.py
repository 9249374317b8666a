"""What ``model.grads`` holds after ``train_step``, and fit's divergence guard inside the
fused kernel: a step whose loss or gradient is not finite, or whose update would
overflow, changes nothing (parameters, optimizer buffers, step count).

Oracles: ``loss_and_grad`` on a twin model (the gradients at the parameters before the
step), NumPy's SGD and Adam (tests/numpy_reference.py) for the update, and ``fit`` with
the same loss wrapped in a callable, which takes the two-call path (``loss_and_grad``
then ``optimizer.step()`` under the guard's copies) instead of the fused step.
"""
import numpy as np
import numpy_reference as ref
import pytest
from conftest import randomize
from test_train_step import blas_threads_planned

import bpcore as bp
from bpcore import _dense, _engine
from bpcore.train import TrainingDiverged

OPTIMIZERS = {
    "sgd": lambda m, lr=0.05: bp.SGD(m, lr=lr),
    "sgd-wd": lambda m, lr=0.05: bp.SGD(m, lr=lr, weight_decay=0.01),
    "momentum": lambda m, lr=0.05: bp.SGD(m, lr=lr, momentum=0.9),
    "nesterov": lambda m, lr=0.05: bp.SGD(m, lr=lr, momentum=0.9, nesterov=True,
                                          weight_decay=0.01),
    "adam": lambda m, lr=0.01: bp.Adam(m, lr=lr),
}
# "small": every product small enough for bpcore's own loops at these batches; "wide":
# at batch 40 some products go to BLAS (checked below); "unit": a one-unit identity
# output under MSE, which the fused step runs in a kernel of its own
NETS = {
    "small": [(5, 8, "tanh"), (8, 6, "relu"), (6, 3, "identity")],
    "wide": [(120, 96, "tanh"), (96, 8, "tanh"), (8, 3, "identity")],
    "unit": [(5, 16, "scaled_sigmoid"), (16, 16, "relu"), (16, 1, "identity")],
    "relu": [(5, 8, "relu"), (8, 6, "relu"), (6, 3, "identity")],
    "linear": [(1, 1, "identity")],
}
# batch 1 and 3: SGD forms weight gradients inside its update unless told to keep them
BATCHES = [1, 3, 40]
TOL = {np.float64: dict(rtol=1e-11, atol=1e-13), np.float32: dict(rtol=2e-4, atol=2e-5)}


def twins(net, dtype, seed=7):
    models = []
    for _ in range(2):
        model = bp.Model([bp.Dense(i, o, a) for i, o, a in NETS[net]], dtype=dtype, seed=0)
        randomize(model, np.random.default_rng(seed))
        models.append(model)
    return models


def data(net, batch, dtype, rng):
    n_in, k = NETS[net][0][0], NETS[net][-1][1]
    return rng.normal(size=(batch, n_in)).astype(dtype), rng.normal(size=(batch, k))


def snapshot(model, optimizer):
    return (model.params.copy(), optimizer.steps,
            {name: buf.copy() for name, buf in optimizer.state.items()})


def assert_unchanged(model, optimizer, before):
    params, steps, state = before
    np.testing.assert_array_equal(model.params, params)
    assert optimizer.steps == steps
    assert set(optimizer.state) == set(state)
    for name, buf in state.items():
        np.testing.assert_array_equal(optimizer.state[name], buf)


def test_the_wide_net_takes_blas_products_at_batch_40():
    # derived from this CPU's rule: the wide net's first weight-gradient product at
    # batch 40 goes to BLAS, the small net's products to bpcore's own loops
    n_in, n_out, _ = NETS["wide"][0]
    assert not _dense.takes_own_loops(True, False, n_in, n_out, 40)
    for n_in, n_out, _ in NETS["small"]:
        for batch in BATCHES:
            assert _dense.takes_own_loops(True, False, n_in, n_out, batch)


@pytest.mark.parametrize("parallel", [False, True], ids=["1-thread", "threads"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_keep_grads_leaves_this_steps_gradients(dtype, name, net, batch, parallel, rng):
    # three steps; before each, grads are filled with NaN so that every entry must be
    # written; after each, grads equal loss_and_grad's at the parameters before it,
    # and the parameters the twin's after optimizer.step()
    model, twin = twins(net, dtype)
    optimizer, twin_optimizer = OPTIMIZERS[name](model), OPTIMIZERS[name](twin)
    loss, tol = bp.MSELoss(), TOL[dtype]
    with blas_threads_planned(parallel):
        for _ in range(3):
            X, y = data(net, batch, dtype, rng)
            model.grads[:] = np.nan
            value = model.train_step(X, y, loss, optimizer, keep_grads=True)
            expected, grads = twin.loss_and_grad(X, y, loss)
            np.testing.assert_allclose(value, expected, **tol)
            np.testing.assert_allclose(model.grads, grads, **tol)
            twin_optimizer.step()
            np.testing.assert_allclose(model.params, twin.params, **tol)
        assert model._fused is not None and model._fused.engine.blas_parallel == parallel
    assert optimizer.steps == twin_optimizer.steps == 3


@pytest.mark.parametrize("keep_grads", [False, True])
def test_keep_grads_changes_no_step(keep_grads, rng):
    # the update is the same with and without keep_grads (plain SGD at batch 3 folds
    # it into the products without): NumPy's SGD on loss_and_grad's gradient
    model, twin = twins("small", np.float64)
    X, y = data("small", 3, np.float64, rng)
    optimizer = bp.SGD(model, lr=0.1)
    model.train_step(X, y, bp.MSELoss(), optimizer, keep_grads=keep_grads)
    _, grads = twin.loss_and_grad(X, y, bp.MSELoss())
    expected, _ = ref.sgd_step(twin.params, grads, None, 0.1)
    np.testing.assert_allclose(model.params, expected, rtol=1e-12, atol=1e-14)


def test_train_step_refuses_a_bad_keep_grads_without_changing_anything():
    model = bp.Model([bp.Dense(2, 3, "tanh"), bp.Dense(3, 1)], seed=0)
    optimizer = bp.SGD(model, lr=0.1)
    before = snapshot(model, optimizer)
    with pytest.raises(TypeError):
        model.train_step(np.ones((2, 2)), np.ones((2, 1)), bp.MSELoss(), optimizer,
                         keep_grads=object())
    assert_unchanged(model, optimizer, before)


# ---------------------------------------------------------------- the guard in the kernel
def _large_inputs(dtype):
    """(input scale, target) such that, with a first layer whose weights are 0, the
    loss is finite and the first layer's weight gradient is not: the output is far
    from a target whose square still fits the loss (computed in float64), and the
    inputs times the output's error overflow the element type."""
    return (1e160, 1e150) if dtype == np.float64 else (1e30, 1e18)


def bad_step(case, net, batch, dtype, rng):
    """(X, y, lr) for a step that must not be taken, and the reason the oracle gives."""
    X, y = data(net, batch, dtype, rng)
    lr = None
    if case == "loss":
        # the largest finite inputs: overflowing pre-activations in the first layer
        # (ReLU for "relu"), then inf or inf - inf in the next
        X = np.full_like(X, np.finfo(dtype).max)
    elif case == "gradient":
        scale, target = _large_inputs(dtype)
        X = (X * scale).astype(dtype)
        y = np.full_like(y, target)
    else:                                             # "update": lr * g overflows
        y = y + 100.0
        lr = float(np.finfo(dtype).max)
    return X, y, lr


@pytest.mark.parametrize("parallel", [False, True], ids=["1-thread", "threads"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("case", ["loss", "gradient", "update"])
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_guarded_step_that_must_not_be_taken_changes_nothing(dtype, name, case, batch,
                                                             parallel, rng):
    net = "small"
    model, twin = twins(net, dtype)
    optimizer = OPTIMIZERS[name](model)
    twin_optimizer = OPTIMIZERS[name](twin)
    loss = bp.MSELoss()
    with blas_threads_planned(parallel):
        for _ in range(2):                           # optimizer state that is not zero
            X, y = data(net, batch, dtype, rng)
            assert model._guarded_step(X, y, loss, optimizer) is not None
            twin.train_step(X, y, loss, twin_optimizer)
        X, y, lr = bad_step(case, net, batch, dtype, rng)
        saved = model.params.copy()
        if case == "loss":
            # the second layer's outputs at the largest finite value, summed up by the
            # third: an infinite output
            X, y = data(net, batch, dtype, rng)
            for m in (model, twin):
                m.layers[1].W[...] = 0
                m.layers[1].b[...] = np.finfo(dtype).max
                m.layers[2].W[...] = 1
        if case == "gradient":
            for m in (model, twin):
                m.layers[0].W[...] = 0
                m.layers[1].b[...] = 100.0          # every ReLU unit on
        if lr is not None:
            optimizer.lr = twin_optimizer.lr = lr
        before = snapshot(model, optimizer)
        with np.errstate(all="ignore"):
            # the oracle: what loss_and_grad and NumPy's update make of this step
            value, grads = twin.loss_and_grad(X, y, loss)
            grads = grads.copy()
            if isinstance(twin_optimizer, bp.Adam):
                new, *_ = ref.adam_step(twin.params, grads,    # in the element type
                                        twin_optimizer.state["exp_avg"],
                                        twin_optimizer.state["exp_avg_sq"],
                                        twin_optimizer.steps + 1, twin_optimizer.lr)
            else:
                new, _ = ref.sgd_step(twin.params, grads,
                                      twin_optimizer.state.get("momentum_buffer"),
                                      twin_optimizer.lr, twin_optimizer.momentum,
                                      twin_optimizer.weight_decay, twin_optimizer.nesterov)
            if case == "loss":
                assert not np.isfinite(value)
            elif case == "gradient":
                assert np.isfinite(value) and not np.isfinite(grads).all()
            else:
                assert np.isfinite(value) and np.isfinite(grads).all()
                assert not np.isfinite(new.astype(dtype)).all()
            model.grads[:] = np.nan
            assert model._guarded_step(X, y, loss, optimizer) is None
        status = model._fused.engine.status
        assert status == (_engine.STEP_UNSAFE if case == "update" else _engine.STEP_NONFINITE)
        assert_unchanged(model, optimizer, before)
        if case == "update":                         # this step's gradients, kept
            np.testing.assert_allclose(model.grads, grads, **TOL[dtype])
        else:
            assert not np.isfinite(model.grads).all()
        # and the next finite step is taken as on the twin
        optimizer.lr = twin_optimizer.lr = OPTIMIZERS[name](twin).lr
        model.params[:] = saved
        X, y = data(net, batch, dtype, rng)
        assert model._guarded_step(X, y, loss, optimizer) is not None
        assert optimizer.steps == before[1] + 1


def _wrapped(loss):
    return lambda output, target: loss(output, target)


@pytest.mark.parametrize("on_nonfinite", ["raise", "skip"])
@pytest.mark.parametrize("parallel", [False, True], ids=["1-thread", "threads"])
@pytest.mark.parametrize("case", ["loss", "gradient"])
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_fit_with_a_nonfinite_batch_equals_the_two_call_fit(dtype, name, case,
                                                                  parallel, on_nonfinite):
    # batch 2 of 4 is bad: the fused fit raises the same error or skips the same batch
    # as the two-call fit, and leaves the same parameters, optimizer state and step
    # count (those of the two good batches before it, or of all three good ones)
    # (the gradient case: a linear unit with weight 0 and inputs that make its
    # gradient overflow, its loss finite)
    rng = np.random.default_rng(3)
    net = "relu" if case == "loss" else "linear"
    good = [data(net, 10, dtype, rng) for _ in range(3)]
    X_bad, y_bad, _ = bad_step(case, net, 10, dtype, rng)
    X = np.concatenate([good[0][0], good[1][0], X_bad, good[2][0]])
    y = np.concatenate([good[0][1], good[1][1], y_bad, good[2][1]])
    results = []
    for wrapped in (False, True):
        model = twins(net, dtype)[0]
        if case == "gradient":
            model.params[:] = 0
        optimizer = OPTIMIZERS[name](model)
        # (the two-call fit's loss: NumPy's MSE, which takes a non-finite output)
        loss = ref.mse if wrapped else bp.MSELoss()
        options = dict(loss=loss, optimizer=optimizer,
                       batch_size=10, shuffle=False, verbose=0, on_nonfinite=on_nonfinite)
        with blas_threads_planned(parallel), np.errstate(all="ignore"):
            if on_nonfinite == "raise":
                with pytest.raises(TrainingDiverged, match="epoch 0, batch 2: ") as error:
                    model.fit(X, y, **options)
                outcome = str(error.value)
            else:
                outcome = model.fit(X, y, **options).history
        assert (model._fused is None) == wrapped              # the path taken
        results.append((outcome, snapshot(model, optimizer), model.grads.copy()))
    (outcome, state, grads), (expected, expected_state, expected_grads) = results
    if on_nonfinite == "raise":
        assert outcome == expected
    else:                                    # the logs, to rounding (the epoch's loss)
        assert outcome.keys() == expected.keys() and expected["skipped_steps"] == [1.0]
        for key in expected:
            np.testing.assert_allclose(outcome[key], expected[key], rtol=1e-6)
    assert state[1] == expected_state[1] == (3 if on_nonfinite == "skip" else 2)
    tol = TOL[dtype]
    np.testing.assert_allclose(state[0], expected_state[0], **tol)
    for name in expected_state[2]:
        np.testing.assert_allclose(state[2][name], expected_state[2][name], **tol)
    if on_nonfinite == "skip":                 # the last step's gradients, kept
        np.testing.assert_allclose(grads, expected_grads, **tol)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_fit_with_an_overflowing_update_restores_as_the_two_call_fit(dtype, name):
    # finite loss and gradients, an update that overflows: both paths raise that the
    # step made a parameter non-finite, with the model and optimizer as before it
    rng = np.random.default_rng(4)
    X, y = data("small", 20, dtype, rng)
    y = y + 100.0
    for wrapped in (False, True):
        model = twins("small", dtype)[0]
        optimizer = OPTIMIZERS[name](model, lr=float(np.finfo(dtype).max))
        before = snapshot(model, optimizer)
        loss = bp.MSELoss()
        with pytest.raises(TrainingDiverged, match="epoch 0, batch 0: the optimizer step "
                                                   "made a parameter non-finite"), \
                np.errstate(all="ignore"):
            model.fit(X, y, loss=_wrapped(loss) if wrapped else loss, optimizer=optimizer,
                      batch_size=10, shuffle=False, verbose=0, on_nonfinite="skip")
        assert_unchanged(model, optimizer, (before[0], 0, {}))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_fit_leaves_the_last_steps_gradients(name):
    # after fit, grads hold the gradient of the last batch at the parameters before its
    # step (fit keeps the gradients, whatever the optimizer folds in train_step)
    rng = np.random.default_rng(5)
    X, y = data("small", 23, np.float64, rng)
    model, twin = twins("small", np.float64)
    optimizer = OPTIMIZERS[name](model)
    model.fit(X[:20], y[:20], loss="mse", optimizer=optimizer, batch_size=10,
              shuffle=False, verbose=0)
    before = model.params.copy()
    model.fit(X[20:], y[20:], loss="mse", optimizer=optimizer, batch_size=10,
              shuffle=False, verbose=0)
    twin.params[:] = before
    _, grads = twin.loss_and_grad(X[20:], y[20:], bp.MSELoss())
    np.testing.assert_allclose(model.grads, grads, rtol=1e-12, atol=1e-14)
