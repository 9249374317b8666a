"""The fit loop: convergence, early stopping, resume, weights, dropout, guards, callbacks."""
import io
import sys

import numpy as np
import numpy_reference as ref
import pytest
from conftest import layer_dicts

import bpcore as bp
from bpcore.datasets import moons
from bpcore.nn.losses import LOSSES, CrossEntropyLoss, MSELoss
from bpcore.train import TrainingDiverged
from bpcore.train.callbacks import EarlyStopping, LambdaCallback, LearningRateScheduler


def moons_split(n=600, seed=0):
    X, y = moons(n, noise=0.1, seed=seed)
    cut = int(0.75 * n)
    return (X[:cut], y[:cut]), (X[cut:], y[cut:])


def classifier(seed=0, dropout=0.0, dtype=np.float64):
    return bp.Model([bp.Dense(2, 16, "relu", dropout=dropout), bp.Dense(16, 16, "relu"),
                     bp.Dense(16, 2)], dtype=dtype, seed=seed)


def test_fit_reaches_97_percent_on_two_moons():
    (X, y), (Xt, yt) = moons_split()
    model = classifier()
    history = model.fit(X, y, loss="cross_entropy", optimizer=bp.Adam(model, lr=0.01),
                        epochs=60, batch_size=32, seed=0, metrics=["accuracy"], verbose=0,
                        validation_data=(Xt, yt))
    held_out = (model.predict(Xt).argmax(axis=1) == yt).mean()
    assert held_out >= 0.97
    assert history["val_accuracy"][-1] == held_out
    assert history["loss"][-1] < history["loss"][0] / 5
    assert len(history["loss"]) == 60 and model.epochs_trained == 60


def test_early_stopping_stops_and_restores_the_best_weights():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 2)), rng.integers(0, 2, 40)      # pure noise: it overfits
    Xv, yv = rng.normal(size=(200, 2)), rng.integers(0, 2, 200)
    model = bp.Model([bp.Dense(2, 64, "relu"), bp.Dense(64, 2)], seed=0)
    snapshots = []
    recorder = LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(
        model.params.copy()))
    stopper = EarlyStopping(monitor="val_loss", patience=5)
    history = model.fit(X, y, loss="cross_entropy", optimizer=bp.Adam(model, lr=0.05),
                        epochs=500, batch_size=8, seed=1, validation_data=(Xv, yv),
                        callbacks=[recorder, stopper], verbose=0)
    val = history["val_loss"]
    best = int(np.argmin(val))
    assert len(val) < 500                                   # it stopped
    assert stopper.best_epoch == best and stopper.best == val[best]
    assert len(val) == best + 1 + 5                         # patience epochs after the best
    np.testing.assert_array_equal(model.params, snapshots[best])


def test_partial_fit_works_with_early_stopping_on_given_validation_set():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 2)), rng.integers(0, 2, 40)
    Xv, yv = rng.normal(size=(200, 2)), rng.integers(0, 2, 200)
    model = bp.Model([bp.Dense(2, 64, "relu"), bp.Dense(64, 2)], seed=0)
    optimizer = bp.Adam(model, lr=0.05)
    stopper = EarlyStopping(patience=3)
    val_losses, snapshots = [], []
    for call in range(300):
        logs = model.partial_fit(X, y, loss="cross_entropy", optimizer=optimizer,
                                 batch_size=8, seed=call, validation_data=(Xv, yv),
                                 callbacks=[stopper])
        val_losses.append(logs["val_loss"])
        snapshots.append(model.params.copy())
        if logs["stop_training"]:
            break
    assert logs["stop_training"] and call < 299
    best = int(np.argmin(val_losses))
    assert call == best + 3 and model.epochs_trained == call + 1
    np.testing.assert_array_equal(model.params, snapshots[best])


@pytest.mark.parametrize("make", [lambda m: bp.SGD(m, lr=0.05, momentum=0.9),
                                  lambda m: bp.Adam(m, lr=0.01)], ids=["sgd", "adam"])
def test_resumed_fit_equals_uninterrupted_run_bit_for_bit(make):
    (X, y), (Xv, yv) = moons_split(300)
    options = dict(loss="cross_entropy", batch_size=20, seed=7, verbose=0,
                   validation_data=(Xv, yv))
    full = classifier(seed=3, dropout=0.2)
    full.fit(X, y, optimizer=make(full), epochs=8, **options)

    first = classifier(seed=3, dropout=0.2)
    optimizer = make(first)
    first.fit(X, y, optimizer=optimizer, epochs=5, **options)
    saved_params, saved_state = first.params.copy(), optimizer.state_dict()

    resumed = classifier(seed=99, dropout=0.2)              # other init, then restored
    resumed.params[...] = saved_params
    optimizer = make(resumed)
    optimizer.load_state_dict(saved_state)
    resumed.fit(X, y, optimizer=optimizer, epochs=8, initial_epoch=5, **options)
    np.testing.assert_array_equal(resumed.params, full.params)


def full_batch_gradient(model, X, y, weight):
    layers = layer_dicts(model)
    out, caches = ref.network_forward(layers, X)
    _, grad_out = ref.cross_entropy(out, y, weight)
    grads, _ = ref.network_backward(layers, caches, grad_out)
    return np.concatenate([np.concatenate([g["W"].ravel(), g["b"]]) for g in grads])


@pytest.mark.parametrize("class_weight", [{0: 1.0, 1: 3.0}, "balanced"])
def test_class_and_sample_weights_change_the_gradient_as_the_formula_says(class_weight):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 2))
    y = (rng.uniform(size=30) < 0.3).astype(np.int64)       # imbalanced
    sample_weight = rng.uniform(0.5, 2.0, size=30)
    if class_weight == "balanced":
        per_class = 30 / (2 * np.bincount(y))
    else:
        per_class = np.array([1.0, 3.0])
    weight = sample_weight * per_class[y]
    model = bp.Model([bp.Dense(2, 5, "tanh"), bp.Dense(5, 2)], seed=0)
    start = model.params.copy()
    expected = full_batch_gradient(model, X, y, weight)
    assert not np.allclose(expected, full_batch_gradient(model, X, y, None))
    # one full-batch SGD step with lr 1 moves the parameters by minus the gradient
    model.fit(X, y, loss="cross_entropy", optimizer=bp.SGD(model, lr=1.0), epochs=1,
              batch_size=30, shuffle=False, sample_weight=sample_weight,
              class_weight=class_weight, verbose=0)
    np.testing.assert_allclose(start - model.params, expected, rtol=1e-10, atol=1e-14)


def test_dropout_is_seeded_in_training_and_off_at_predict():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 2))
    a, b = classifier(seed=1, dropout=0.5), classifier(seed=1, dropout=0.5)
    plain = classifier(seed=1)
    np.testing.assert_array_equal(a.params, plain.params)
    # predict: no dropout, deterministic, equal to the model without dropout
    np.testing.assert_array_equal(a.predict(X), plain.predict(X))
    np.testing.assert_array_equal(a.predict(X), a.predict(X))
    # training forward: seeded masks, different from call to call
    first = a.forward(X).copy()
    np.testing.assert_array_equal(first, b.forward(X))
    assert not np.array_equal(first, a.forward(X))
    a.eval()
    np.testing.assert_array_equal(a.forward(X), plain.forward(X))
    a.train()
    # inverted dropout: about half the first layer's units dropped, survivors scaled by 2
    a.forward(X)
    mask = a._cache.U[0]
    assert set(np.unique(mask)) <= {0.0, 2.0}
    assert abs((mask == 0).mean() - 0.5) < 0.02


def test_dropout_gradients_equal_reference_with_the_same_mask():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(12, 2)), rng.integers(0, 2, 12)
    model = bp.Model([bp.Dense(2, 6, "scaled_sigmoid", dropout=0.3), bp.Dense(6, 2)], seed=0)
    model.layers[0].c[...] = rng.uniform(0.5, 1.5, 6)
    model.loss_and_grad(X, y, bp.CrossEntropyLoss())
    mask = model._cache.U[0].copy()
    L0, L1 = model.layers
    g = ref.sigmoid(X @ L0.W + L0.b)
    h = L0.c * g * mask
    out = h @ L1.W + L1.b
    _, dout = ref.cross_entropy(out, y)
    dh = dout @ L1.W.T
    dz = dh * mask * L0.c * g * (1 - g)
    np.testing.assert_allclose(L1.dW, h.T @ dout, rtol=1e-12)
    np.testing.assert_allclose(L0.dW, X.T @ dz, rtol=1e-12)
    np.testing.assert_allclose(L0.db, dz.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(L0.dc, (dh * mask * g).sum(axis=0), rtol=1e-12)


def test_l2_penalty_adds_to_loss_and_weight_gradients_only():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(10, 2)), rng.integers(0, 2, 10)
    model = bp.Model([bp.Dense(2, 4, "tanh"), bp.Dense(4, 2)], seed=0)
    model.layers[0].b[...] = 0.3
    start = model.params.copy()
    plain = full_batch_gradient(model, X, y, None)
    penalty = np.concatenate([np.concatenate([l.W.ravel() * 0.1, np.zeros_like(l.b)])
                              for l in model.layers])
    history = model.fit(X, y, loss="cross_entropy", optimizer=bp.SGD(model, lr=1.0), epochs=1,
                        batch_size=10, shuffle=False, l2=0.1, verbose=0)
    np.testing.assert_allclose(start - model.params, plain + penalty, rtol=1e-10, atol=1e-14)
    probe = bp.Model([bp.Dense(2, 4, "tanh"), bp.Dense(4, 2)])
    probe.params[...] = start
    value = bp.CrossEntropyLoss()(probe.predict(X), y)[0]
    squares = sum((l.W ** 2).sum() for l in probe.layers)
    np.testing.assert_allclose(history["loss"][0], value + 0.05 * squares, rtol=1e-12)


def test_gradient_accumulation_equals_the_larger_batch():
    (X, y), _ = moons_split(256)
    a, b = classifier(seed=4), classifier(seed=4)
    a.fit(X[:192], y[:192], loss="cross_entropy", optimizer=bp.SGD(a, lr=0.1), epochs=3,
          batch_size=32, seed=5, verbose=0)
    b.fit(X[:192], y[:192], loss="cross_entropy", optimizer=bp.SGD(b, lr=0.1), epochs=3,
          batch_size=16, accumulate=2, seed=5, verbose=0)
    np.testing.assert_allclose(b.params, a.params, rtol=1e-12, atol=1e-14)


def test_custom_loss_callable_trains_like_the_builtin():
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(64, 2)), rng.normal(size=(64, 1))

    def squared_error(output, target):
        residual = output - target
        return float(np.mean(residual ** 2)), 2 * residual / residual.size

    a = bp.Model([bp.Dense(2, 8, "tanh"), bp.Dense(8, 1)], seed=0)
    b = bp.Model([bp.Dense(2, 8, "tanh"), bp.Dense(8, 1)], seed=0)
    ha = a.fit(X, y, loss=squared_error, optimizer=bp.SGD(a, lr=0.1), epochs=5, seed=1,
               verbose=0)
    hb = b.fit(X, y, loss=bp.MSELoss(), optimizer=bp.SGD(b, lr=0.1), epochs=5, seed=1,
               verbose=0)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-12)


def nan_after(calls):
    """A custom MSE loss that turns NaN on its ``calls``-th call (0-based)."""
    count = [0]

    def loss(output, target):
        count[0] += 1
        residual = output - target
        if count[0] > calls:
            return float("nan"), residual * np.nan
        return float(np.mean(residual ** 2)), 2 * residual / residual.size
    return loss


def test_divergence_raises_and_keeps_the_last_finite_weights():
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(40, 2)), rng.normal(size=(40, 1))
    model = bp.Model([bp.Dense(2, 4, "tanh"), bp.Dense(4, 1)], seed=0)
    reference = bp.Model([bp.Dense(2, 4, "tanh"), bp.Dense(4, 1)], seed=0)
    ok_loss = nan_after(10 ** 9)
    reference.fit(X[:30], y[:30], loss=ok_loss, optimizer=bp.SGD(reference, lr=0.1),
                  epochs=1, batch_size=10, shuffle=False, verbose=0)   # three good steps
    with pytest.raises(TrainingDiverged, match="epoch 0, batch 3: the loss is nan"):
        model.fit(X, y, loss=nan_after(3), optimizer=bp.SGD(model, lr=0.1), epochs=1,
                  batch_size=10, shuffle=False, verbose=0)
    np.testing.assert_array_equal(model.params, reference.params)


def test_overflowing_step_is_undone():
    X, y = np.array([[1.0, 1.0]]), np.array([[1e300]])
    model = bp.Model([bp.Dense(2, 1)], seed=0)
    start = model.params.copy()
    with pytest.raises(TrainingDiverged):
        model.fit(X, y, loss="mse", optimizer=bp.SGD(model, lr=1e10), epochs=1, verbose=0)
    assert np.isfinite(model.params).all()
    np.testing.assert_array_equal(model.params, start)


def test_nonfinite_steps_can_be_skipped():
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(40, 2)), rng.normal(size=(40, 1))
    model = bp.Model([bp.Dense(2, 4, "tanh"), bp.Dense(4, 1)], seed=0)
    reference = bp.Model([bp.Dense(2, 4, "tanh"), bp.Dense(4, 1)], seed=0)
    reference.fit(X[:20], y[:20], loss=nan_after(10 ** 9), optimizer=bp.SGD(reference, lr=0.1),
                  epochs=1, batch_size=10, shuffle=False, verbose=0)
    history = model.fit(X, y, loss=nan_after(2), optimizer=bp.SGD(model, lr=0.1), epochs=1,
                        batch_size=10, shuffle=False, on_nonfinite="skip", verbose=0)
    assert history["skipped_steps"] == [2.0]
    np.testing.assert_array_equal(model.params, reference.params)


def test_callables_and_batch_callbacks_can_stop_training():
    (X, y), _ = moons_split(200)
    model = classifier()
    history = model.fit(X, y, loss="cross_entropy", epochs=50, verbose=0, seed=0,
                        callbacks=[lambda epoch, logs: epoch == 2])
    assert len(history["loss"]) == 3
    batches = []
    model.fit(X, y, loss="cross_entropy", epochs=50, verbose=0, seed=0, batch_size=10,
              callbacks=[LambdaCallback(on_batch_end=lambda b, logs: batches.append(b) or b == 4)])
    assert batches == [0, 1, 2, 3, 4]


def test_learning_rate_schedule_callable_sets_lr_each_epoch():
    (X, y), _ = moons_split(100)
    model = classifier()
    optimizer = bp.SGD(model, lr=1.0)
    history = model.fit(X, y, loss="cross_entropy", optimizer=optimizer, epochs=4, verbose=0,
                        callbacks=[LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))])
    np.testing.assert_allclose(history["lr"], [0.1, 0.05, 0.1 / 3, 0.025])


def test_evaluate_equals_loss_of_predict_and_metrics():
    (X, y), _ = moons_split(100)
    model = classifier()
    scores = model.evaluate(X, y, loss="cross_entropy", metrics=["accuracy"], batch_size=7)
    output = model.predict(X)
    assert scores["loss"] == pytest.approx(bp.CrossEntropyLoss()(output, y)[0], rel=1e-12)
    assert scores["accuracy"] == (output.argmax(axis=1) == y).mean()


def test_metrics_agree_with_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    from bpcore.train import metrics as bm
    rng = np.random.default_rng(8)
    out, target = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    assert bm.mean_squared_error(out, target) == \
        pytest.approx(metrics.mean_squared_error(target, out))
    assert bm.mean_absolute_error(out, target) == \
        pytest.approx(metrics.mean_absolute_error(target, out))
    assert bm.r2_score(out, target) == pytest.approx(metrics.r2_score(target, out))
    labels = rng.integers(0, 3, 50)
    assert bm.accuracy(out, labels) == metrics.accuracy_score(labels, out.argmax(axis=1))
    logits, binary = rng.normal(size=(50, 1)), rng.integers(0, 2, 50)
    assert bm.accuracy(logits, binary) == metrics.accuracy_score(binary, logits[:, 0] > 0)


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("verbose, tty, expect_bar, expect_lines",
                         [(0, True, False, 0), (1, False, False, 0), (1, True, True, 2),
                          (2, False, False, 2)])
def test_progress_bar_only_on_a_terminal(monkeypatch, verbose, tty, expect_bar, expect_lines):
    stream = FakeTerminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    (X, y), _ = moons_split(100)
    model = classifier()
    model.fit(X, y, loss="cross_entropy", epochs=2, verbose=verbose, batch_size=10)
    text = stream.getvalue()
    assert ("[" in text) == expect_bar
    assert text.count("\n") == expect_lines
    if expect_lines:
        assert "epoch 2/2" in text and "loss" in text and "samples/s" in text


@pytest.mark.parametrize("options, error, match", [
    (dict(batch_size=0), ValueError, "batch_size must be a positive integer; got 0"),
    (dict(loss="hinge"), ValueError, "loss must be one of"),
    (dict(optimizer="lbfgs"), ValueError, "optimizer must be one of"),
    (dict(validation_split=1.5), ValueError,
     r"validation_split must be a finite number in \[0.0, 1.0\); got 1.5"),
    (dict(metrics=["f1"]), ValueError, "metrics must be names among"),
    (dict(on_nonfinite="ignore"), ValueError, "on_nonfinite must be one of"),
    (dict(class_weight={5: 1.0}), ValueError, "class_weight has key 5"),
    (dict(y=np.zeros(7, np.int64)), ValueError, "y has 7 samples but X has 75"),
    (dict(epochs=-1), ValueError, "epochs must be a positive integer; got -1"),
])
def test_bad_fit_arguments_raise_and_change_nothing(options, error, match):
    (X, y), _ = moons_split(100)
    model = classifier()
    optimizer = bp.Adam(model)
    before = model.params.copy()
    kwargs = dict(loss="cross_entropy", optimizer=optimizer, epochs=2, verbose=0)
    y = options.pop("y", y)
    kwargs.update(options)
    with pytest.raises(error, match=match):
        model.fit(X, y, **kwargs)
    np.testing.assert_array_equal(model.params, before)
    assert optimizer.state == {} and model.epochs_trained == 0


def test_checkpoint_callback_resumes_bit_for_bit(tmp_path):
    from bpcore.train.callbacks import ModelCheckpoint
    (X, y), (Xv, yv) = moons_split(300)
    options = dict(loss="cross_entropy", batch_size=20, verbose=0, validation_data=(Xv, yv))
    full = classifier(seed=3, dropout=0.1)
    full.fit(X, y, optimizer=bp.Adam(full, lr=0.01), epochs=7, seed=11, **options)

    path = tmp_path / "run.bpc"
    interrupted = classifier(seed=3, dropout=0.1)
    stop_after_4 = LambdaCallback(on_epoch_end=lambda epoch, logs: epoch == 3)
    interrupted.fit(X, y, optimizer=bp.Adam(interrupted, lr=0.01), epochs=7, seed=11,
                    callbacks=[ModelCheckpoint(path), stop_after_4], **options)
    checkpoint = bp.load_checkpoint(path)
    progress = checkpoint.progress
    assert progress["epoch"] == 4 and progress["seed"] == 11
    assert len(progress["history"]["val_loss"]) == 4
    resumed = checkpoint.model
    resumed.fit(X, y, optimizer=checkpoint.optimizer, epochs=7, initial_epoch=progress["epoch"],
                seed=progress["seed"], **options)
    np.testing.assert_array_equal(resumed.params, full.params)


def test_checkpoint_callback_save_best_only(tmp_path):
    from bpcore.train.callbacks import ModelCheckpoint
    (X, y), (Xv, yv) = moons_split(200)
    model = classifier()
    snapshots = []
    history = model.fit(X, y, loss="cross_entropy", optimizer=bp.SGD(model, lr=0.5), epochs=6,
                        seed=2, verbose=0, validation_data=(Xv, yv),
                        callbacks=[LambdaCallback(on_epoch_end=lambda e, l: snapshots.append(
                            model.params.copy())),
                            ModelCheckpoint(tmp_path / "best.bpc", save_best_only=True)])
    best = int(np.argmin(history["val_loss"]))
    np.testing.assert_array_equal(bp.load(tmp_path / "best.bpc").params, snapshots[best])


def nan_value_on_call(k):
    """MSE whose value (not gradient) is NaN on its k-th call (1-based)."""
    count = [0]

    def loss(output, target):
        count[0] += 1
        residual = output - target
        value = float(np.mean(residual ** 2))
        return (float("nan") if count[0] == k else value), 2 * residual / residual.size
    return loss


@pytest.mark.parametrize("accumulate", [1, 2])
def test_nonfinite_loss_inside_an_accumulation_group_stops_training(accumulate):
    # the NaN is on the first batch of a group of two: the group's step is not taken
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(40, 2)), rng.normal(size=(40, 1))
    model = bp.Model([bp.Dense(2, 4, "tanh"), bp.Dense(4, 1)], seed=0)
    start = model.params.copy()
    with pytest.raises(TrainingDiverged, match="the loss is nan"):
        model.fit(X, y, loss=nan_value_on_call(1), optimizer=bp.SGD(model, lr=0.1),
                  batch_size=10, shuffle=False, accumulate=accumulate, verbose=0)
    np.testing.assert_array_equal(model.params, start)


def test_undone_step_also_undoes_the_optimizer_state():
    # the step that made a parameter non-finite is undone entirely: parameters, step
    # count and the momentum buffer it created
    model = bp.Model([bp.Dense(2, 1)], seed=0)
    opt = bp.SGD(model, lr=1e200, momentum=0.9)
    with pytest.raises(TrainingDiverged, match="restored"):
        model.fit(np.array([[1.0, 1.0]]), np.array([[1e150]]), loss="mse", optimizer=opt,
                  epochs=1, verbose=0)
    assert opt.steps == 0
    assert not np.any(opt.state.get("momentum_buffer", np.zeros(1)))


def test_undone_step_restores_existing_optimizer_buffers_in_place():
    rng = np.random.default_rng(8)
    model = bp.Model([bp.Dense(2, 3, "tanh"), bp.Dense(3, 1)], seed=0)
    opt = bp.SGD(model, lr=0.01, momentum=0.9)
    model.fit(rng.normal(size=(20, 2)), rng.normal(size=(20, 1)), loss="mse",
              optimizer=opt, batch_size=5, epochs=1, verbose=0)
    saved, params = opt.state_dict(), model.params.copy()
    buffer = opt.state["momentum_buffer"]
    assert np.any(buffer) and saved["steps"] == 4
    opt.lr = 1e200
    with pytest.raises(TrainingDiverged, match="restored"):
        model.fit(np.array([[1.0, 1.0]]), np.array([[1e150]]), loss="mse", optimizer=opt,
                  epochs=1, verbose=0)
    assert opt.steps == 4 and opt.state["momentum_buffer"] is buffer
    np.testing.assert_array_equal(buffer, saved["state"]["momentum_buffer"])
    np.testing.assert_array_equal(model.params, params)


@pytest.mark.parametrize("make_optimizer", [
    lambda m: bp.SGD(m, lr=0.1), lambda m: bp.SGD(m, lr=0.05, momentum=0.9),
    lambda m: bp.Adam(m, lr=0.01)], ids=["sgd", "momentum", "adam"])
@pytest.mark.parametrize("loss_name", ["mse", "cross_entropy", "poisson"])
def test_fit_on_the_fused_step_equals_fit_on_loss_and_grad(make_optimizer, loss_name):
    # a bpcore Loss takes the fused train_step; the same Loss wrapped in a callable
    # takes loss_and_grad + optimizer.step()
    rng = np.random.default_rng(9)
    X = rng.normal(size=(50, 3))
    y = {"mse": rng.normal(size=(50, 2)), "cross_entropy": rng.integers(0, 2, 50),
         "poisson": rng.poisson(1.5, size=(50, 2)).astype(float)}[loss_name]
    loss = LOSSES[loss_name]()
    histories, models = [], []
    for wrapped in (False, True):
        model = bp.Model([bp.Dense(3, 8, "relu"), bp.Dense(8, 2)], seed=0)
        fn = (lambda output, target: loss(output, target)) if wrapped else loss_name
        histories.append(model.fit(X, y, loss=fn, optimizer=make_optimizer(model), epochs=3,
                                   batch_size=16, seed=1, verbose=0))
        models.append(model)
    assert models[0]._fused is not None and models[1]._fused is None   # the paths taken
    np.testing.assert_allclose(models[0].params, models[1].params, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-12)


@pytest.mark.parametrize("on_nonfinite", ["raise", "skip"])
def test_fused_fit_undoes_a_step_with_an_infinite_loss(on_nonfinite):
    # the fused step has already updated when the infinite loss comes back: the
    # parameters and Adam's state (created by that very step) are restored
    rng = np.random.default_rng(10)
    X, y = rng.normal(size=(30, 2)), rng.normal(size=(30, 1))
    y[20:] = 1e200                                   # (output - 1e200)^2 overflows
    model = bp.Model([bp.Dense(2, 4, "tanh"), bp.Dense(4, 1)], seed=0)
    reference = bp.Model([bp.Dense(2, 4, "tanh"), bp.Dense(4, 1)], seed=0)
    ref_opt = bp.Adam(reference, lr=0.01)
    reference.fit(X[:20], y[:20], loss="mse", optimizer=ref_opt, batch_size=10,
                  shuffle=False, verbose=0)
    opt = bp.Adam(model, lr=0.01)
    options = dict(loss="mse", optimizer=opt, batch_size=10, shuffle=False, verbose=0,
                   on_nonfinite=on_nonfinite)
    if on_nonfinite == "raise":
        with pytest.raises(TrainingDiverged, match="epoch 0, batch 2: the loss is inf"):
            model.fit(X, y, **options)
    else:
        assert model.fit(X, y, **options)["skipped_steps"] == [1.0]
    assert model._fused is not None                     # the fused path was taken
    np.testing.assert_array_equal(model.params, reference.params)
    assert opt.steps == ref_opt.steps == 2
    for name in ref_opt.state:
        np.testing.assert_array_equal(opt.state[name], ref_opt.state[name])


def _wrapped(loss):
    return lambda output, target: loss(output, target)


def _small_data(k=1, labels=False):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2))
    y = rng.integers(0, k, 20) if labels else rng.normal(size=(20, k))
    return X, y


def assert_fit_equals_two_call_fit(X, y, n_out, make_loss, prepare=lambda model: None,
                                   **options):
    """fit with the loss as given equals fit with it wrapped in a callable (which
    forces loss_and_grad + optimizer.step()): same epoch losses and weights."""
    results = []
    for wrapped in (False, True):
        model = bp.Model([bp.Dense(2, 4, "tanh"), bp.Dense(4, n_out)], seed=0)
        prepare(model)
        loss = make_loss()
        history = model.fit(X, y, loss=_wrapped(loss) if wrapped else loss,
                            optimizer=bp.SGD(model, lr=0.1), batch_size=10, seed=0,
                            verbose=0, **options)
        results.append((history["loss"], model.params.copy()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12, atol=1e-14)


def test_fused_plain_sgd_guard_trips_on_stale_nonfinite_weight_grads():
    # plain SGD folds its update into the product and leaves dW unwritten: a NaN an
    # earlier call left in dW must not make the fused fit's finite steps diverge
    X, y = _small_data()
    assert_fit_equals_two_call_fit(
        X, y, 1, MSELoss, prepare=lambda model: model.loss_and_grad(
            X, y, lambda o, t: (float("nan"), np.full(o.shape, np.nan))))


def test_fused_plain_sgd_skips_an_infinite_weight_gradient_in_skip_mode():
    # finite loss and bias gradient, infinite dW = x * delta (1e200 * 2e110): a
    # gradient that is not finite, skipped as such, though the fused plain-SGD step
    # only shows it as an infinite W
    X, y = np.array([[1e200], [0.0]]), np.array([[1e110], [0.0]])
    histories = []
    for wrapped in (False, True):
        model = bp.Model([bp.Dense(1, 1)], seed=0)
        model.params[:] = 0.0
        loss = MSELoss()
        histories.append(model.fit(X, y, loss=_wrapped(loss) if wrapped else loss,
                                   optimizer=bp.SGD(model, lr=0.1), batch_size=2, seed=0,
                                   verbose=0, on_nonfinite="skip").history)
        np.testing.assert_array_equal(model.params, 0.0)
    assert histories[1]["skipped_steps"] == [1.0]
    assert histories[0]["skipped_steps"] == histories[1]["skipped_steps"]


class _HalfCrossEntropy(CrossEntropyLoss):
    """A Loss subclass overriding compute (e.g. a label-smoothing or scaled loss)."""

    def compute(self, output, target, weight, scale):
        value, grad = super().compute(output, target, weight, scale)
        grad *= 0.5
        return value * 0.5, grad


def test_fit_honours_a_loss_subclass_compute():
    # a Loss subclass is computed by its own compute, in fit as in loss_and_grad
    X, y = _small_data(3, labels=True)
    assert_fit_equals_two_call_fit(X, y, 3, _HalfCrossEntropy, epochs=2)


class _MAELoss(MSELoss):
    """A Loss subclass with its own kernel."""

    def _kernel_for(self, target):
        def kernel(output, target, weight, grad, scale):
            diff = output - target
            grad[...] = np.sign(diff) * scale
            return float(np.abs(diff).sum() * scale)
        return kernel


def test_fit_accepts_a_loss_subclass_with_its_own_kernel():
    # a Loss subclass with its own kernel trains in fit as in loss_and_grad
    X, y = _small_data()
    assert_fit_equals_two_call_fit(X, y, 1, _MAELoss)


class _StrictSGD(bp.SGD):
    """A custom optimizer that refuses non-finite gradients."""

    def step(self):
        bp.clip_grad_norm(self.model, 1.0, error_if_nonfinite=True)
        super().step()


def test_custom_optimizer_step_is_not_run_on_a_nonfinite_step_in_skip_mode():
    # an optimizer's own step() never runs on a non-finite loss or gradient: the
    # batch is skipped
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 2)), rng.normal(size=(20, 1))
    y[10:] = 1e200                                   # (output - 1e200)^2 overflows
    histories = []
    for wrapped in (False, True):
        model = bp.Model([bp.Dense(2, 4, "tanh"), bp.Dense(4, 1)], seed=0)
        loss = MSELoss()
        histories.append(model.fit(X, y, loss=_wrapped(loss) if wrapped else loss,
                                   optimizer=_StrictSGD(model, lr=0.1), batch_size=10,
                                   shuffle=False, seed=0, verbose=0,
                                   on_nonfinite="skip").history)
    assert histories[1]["skipped_steps"] == [1.0]
    assert histories[0] == histories[1]


def test_train_step_computes_a_loss_subclass_by_its_own_compute():
    X, y = _small_data(3, labels=True)
    models = [bp.Model([bp.Dense(2, 4, "tanh"), bp.Dense(4, 3)], seed=0) for _ in range(2)]
    o1, o2 = (bp.SGD(m, lr=0.1) for m in models)
    value = models[0].train_step(X, y, _HalfCrossEntropy(), o1)
    expected, _ = models[1].loss_and_grad(X, y, _HalfCrossEntropy())
    o2.step()
    fresh = bp.Model([bp.Dense(2, 4, "tanh"), bp.Dense(4, 3)], seed=0)
    full, _ = CrossEntropyLoss()(fresh.predict(X), y)       # before any step
    assert value == pytest.approx(0.5 * full, rel=1e-12) and value == expected
    np.testing.assert_array_equal(models[0].params, models[1].params)
