"""One table of bad calls across the whole public API (the error contract of
docs/reliability.md, "Errors").

Each row is a call with one bad argument. It must raise the stated exception type,
its message must name the argument (as a whole word), and it must leave every
model's parameters and gradients, every optimizer's ``state_dict()`` (hyper-parameters,
step count, buffers) and the models' training flags, epoch counts, classes and fit
losses bit for bit as they were. ``tests/test_bad_input.py`` holds the finer tables of
the model's arrays and losses; this one walks every entry point once or more.
"""
import math
import os
import re
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

import bpcore as bp
from bpcore.optim import schedules

N, N_IN, N_OUT = 8, 3, 2


def make_world():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(N, N_IN))
    y = rng.normal(size=(N, N_OUT))
    labels = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    model = bp.Model([bp.Dense(N_IN, 5, "tanh"), bp.Dense(5, N_OUT)], seed=0)
    model32 = bp.Model([bp.Dense(N_IN, 4, "relu"), bp.Dense(4, N_OUT)], dtype=np.float32,
                       seed=1)
    other = bp.Model([bp.Dense(N_IN, N_OUT)], seed=2)
    optimizers = SimpleNamespace(
        sgd=bp.SGD(model, lr=0.05, momentum=0.9), adam=bp.Adam(model, lr=0.01),
        adamw=bp.AdamW(model), rmsprop=bp.RMSprop(model, momentum=0.5, centered=True),
        rprop=bp.Rprop(model), adam32=bp.Adam(model32), other=bp.SGD(other))
    for opt in (optimizers.sgd, optimizers.adam, optimizers.adamw, optimizers.rmsprop,
                optimizers.rprop):
        model.loss_and_grad(X, y, bp.MSELoss())
        opt.step()
    model32.loss_and_grad(X, y, bp.MSELoss())
    optimizers.adam32.step()
    model.fit(X, labels, loss="cross_entropy", optimizer=optimizers.adam, epochs=1,
              verbose=0, seed=0)
    model.loss_and_grad(X, labels, bp.CrossEntropyLoss())      # live, non-zero gradients
    return SimpleNamespace(X=X, y=y, labels=labels, model=model, model32=model32,
                           other=other, opt=optimizers,
                           schedule=schedules.StepLR(optimizers.sgd, step_size=2))


def snapshot(world):
    models = {name: (m.params.copy(), m.grads.copy(), m.training, m.epochs_trained,
                     None if m.classes is None else m.classes.copy(), m.fit_loss)
              for name, m in (("model", world.model), ("model32", world.model32),
                              ("other", world.other))}
    optimizers = {name: opt.state_dict() for name, opt in vars(world.opt).items()}
    return models, optimizers, world.schedule.state_dict()


def assert_unchanged(before, after):
    for name, (params, grads, training, epochs, classes, fit_loss) in before[0].items():
        now = after[0][name]
        assert now[0].tobytes() == params.tobytes(), f"{name}.params changed"
        assert now[1].tobytes() == grads.tobytes(), f"{name}.grads changed"
        assert now[2:4] == (training, epochs), f"{name}'s training flag or epochs changed"
        assert (now[4] is None) == (classes is None), f"{name}.classes changed"
        if classes is not None:
            assert now[4].tolist() == classes.tolist(), f"{name}.classes changed"
        assert now[5] is fit_loss, f"{name}.fit_loss changed"
    for name, state in before[1].items():
        now = after[1][name]
        assert now["hyperparameters"] == state["hyperparameters"], f"{name} hyperparameters"
        assert now["steps"] == state["steps"], f"{name} steps"
        assert now["state"].keys() == state["state"].keys(), f"{name} buffers"
        for key, buffer in state["state"].items():
            assert now["state"][key].tobytes() == buffer.tobytes(), f"{name} {key}"
    assert after[2] == before[2], "schedule state"


def fit(w, **kwargs):
    args = dict(loss="cross_entropy", optimizer=w.opt.adam, epochs=1, verbose=0, seed=0)
    return w.model.fit(w.X, w.labels, **{**args, **kwargs})


def _state_with_steps(w, steps):
    state = w.opt.adam.state_dict()
    state["hyperparameters"]["lr"] = 0.5          # would be set first, before the fix
    state["steps"] = steps
    return w.opt.adam.load_state_dict(state)


def _sklearn(kind):
    pytest.importorskip("sklearn")
    from bpcore.sklearn import MLPClassifier, MLPRegressor
    return MLPClassifier if kind == "classifier" else MLPRegressor


T, V = TypeError, ValueError
# (id, call(world, tmp_path), exception type, the argument the message must name)
ROWS = [
    # ---- layers and models
    ("Dense-2**62x4", lambda w, t: bp.Dense(2**62, 4), V, "n_in"),
    ("Dense-n_out-bool", lambda w, t: bp.Dense(3, True), T, "n_out"),
    ("Dense-dropout-1", lambda w, t: bp.Dense(3, 2, dropout=1.0), V, "dropout"),
    ("Model-params-overflow", lambda w, t: bp.Model([bp.Dense(2**30, 2**29),
                                                     bp.Dense(2**29, 2**30)]), V, "layers"),
    ("Model-seed-float", lambda w, t: bp.Model([bp.Dense(2, 2)], seed=1.5), V, "seed"),
    ("train-mode-str", lambda w, t: w.model.train("no"), T, "mode"),
    ("train-mode-int", lambda w, t: w.model.train(0), T, "mode"),
    ("to_dot-values-str", lambda w, t: w.model.to_dot(values="yes"), T, "values"),
    ("loss_and_grad-accumulate-str",
     lambda w, t: w.model.loss_and_grad(w.X, w.y, bp.MSELoss(), accumulate="yes"), T,
     "accumulate"),
    ("loss_and_grad-accumulate-int",
     lambda w, t: w.model.loss_and_grad(w.X, w.y, bp.MSELoss(), accumulate=1), T,
     "accumulate"),
    ("train_step-keep_grads-str",
     lambda w, t: w.model.train_step(w.X, w.y, bp.MSELoss(), w.opt.sgd, keep_grads="no"),
     T, "keep_grads"),
    ("train_step-optimizer-of-other",
     lambda w, t: w.model.train_step(w.X, w.y, bp.MSELoss(), w.opt.other), T, "optimizer"),
    ("train_step-X-nan",
     lambda w, t: w.model.train_step(np.full((N, N_IN), np.nan), w.y, bp.MSELoss(),
                                     w.opt.adam), V, "X"),
    ("train_step-target-shape",
     lambda w, t: w.model.train_step(w.X, w.y[:, :1], bp.MSELoss(), w.opt.adam), V,
     "target"),
    ("predict-float32-X-1e300",
     lambda w, t: w.model32.predict(np.full((2, N_IN), 1e300)), V, "X"),
    ("forward-float32-X-1e300",
     lambda w, t: w.model32.forward(np.full((2, N_IN), -1e300)), V, "X"),
    ("predict_proba-loss-mse", lambda w, t: w.model.predict_proba(w.X, loss="mse"), V,
     "loss"),
    # ---- fit, partial_fit, evaluate
    ("fit-shuffle-str", lambda w, t: fit(w, shuffle="no"), T, "shuffle"),
    ("fit-shuffle-int", lambda w, t: fit(w, shuffle=0), T, "shuffle"),
    ("fit-y-None", lambda w, t: w.model.fit(w.X, None, loss="mse", optimizer=w.opt.adam,
                                            verbose=0), T, "y"),
    ("fit-y-scalar", lambda w, t: w.model.fit(w.X, 3.0, loss="mse", optimizer=w.opt.adam,
                                              verbose=0), V, "y"),
    ("fit-y-None-custom-loss",
     lambda w, t: w.model.fit(w.X, None, loss=lambda o, y: (0.0, o), optimizer=w.opt.adam,
                              verbose=0), T, "y"),
    ("fit-y-shape", lambda w, t: w.model.fit(w.X, np.ones((N, 3)), loss="mse",
                                             optimizer=w.opt.adam, verbose=0), V, "y"),
    ("fit-y-nan", lambda w, t: w.model.fit(w.X, np.where(w.y > 1, np.nan, w.y), loss="mse",
                                           optimizer=w.opt.adam, verbose=0), V, "y"),
    ("fit-y-probabilities-negative",
     lambda w, t: w.model.fit(w.X, -np.abs(w.y), loss="cross_entropy",
                              optimizer=w.opt.adam, verbose=0), V, "y"),
    ("fit-float32-X-1e300",
     lambda w, t: w.model32.fit(np.full((N, N_IN), 1e300), w.y, loss="mse",
                                optimizer=w.opt.adam32, verbose=0), V, "X"),
    ("fit-float32-y-1e300",
     lambda w, t: w.model32.fit(w.X, np.full((N, N_OUT), 1e300), loss="mse",
                                optimizer=w.opt.adam32, verbose=0), V, "y"),
    ("fit-float32-weight-1e300",
     lambda w, t: w.model32.fit(w.X, w.y, loss="mse", optimizer=w.opt.adam32, verbose=0,
                                sample_weight=np.full(N, 1e300)), V, "sample_weight"),
    ("fit-weight-sum-overflows",
     lambda w, t: fit(w, sample_weight=np.full(N, 1e308)), V, "sample_weight"),
    ("fit-class_weight-times-sample_weight-overflows",
     lambda w, t: fit(w, class_weight={0: 1e300, 1: 1.0}, sample_weight=np.full(N, 1e300)),
     V, "class_weight"),
    ("fit-class_weight-str", lambda w, t: fit(w, class_weight="even"), V, "class_weight"),
    ("fit-class_weight-unknown-label", lambda w, t: fit(w, class_weight={7: 1.0}), V,
     "class_weight"),
    ("fit-batch_size-0", lambda w, t: fit(w, batch_size=0), V, "batch_size"),
    ("fit-batch_size-bool", lambda w, t: fit(w, batch_size=True), T, "batch_size"),
    ("fit-batch_size-float", lambda w, t: fit(w, batch_size=4.0), T, "batch_size"),
    ("fit-epochs-0", lambda w, t: fit(w, epochs=0), V, "epochs"),
    ("fit-initial_epoch-beyond", lambda w, t: fit(w, initial_epoch=3), V, "initial_epoch"),
    ("fit-accumulate-0", lambda w, t: fit(w, accumulate=0), V, "accumulate"),
    ("fit-accumulate-bool", lambda w, t: fit(w, accumulate=True), T, "accumulate"),
    ("fit-l2-negative", lambda w, t: fit(w, l2=-1.0), V, "l2"),
    ("fit-l2-nan", lambda w, t: fit(w, l2=math.nan), V, "l2"),
    ("fit-on_nonfinite", lambda w, t: fit(w, on_nonfinite="ignore"), V, "on_nonfinite"),
    ("fit-verbose-3", lambda w, t: fit(w, verbose=3), V, "verbose"),
    ("fit-seed-negative", lambda w, t: fit(w, seed=-1), V, "seed"),
    ("fit-seed-str", lambda w, t: fit(w, seed="0"), V, "seed"),
    ("fit-validation_split-1", lambda w, t: fit(w, validation_split=1.0), V,
     "validation_split"),
    ("fit-validation_split-tiny", lambda w, t: fit(w, validation_split=0.01), V,
     "validation_split"),
    ("fit-validation_data-one", lambda w, t: fit(w, validation_data=(w.X,)), V,
     "validation_data"),
    ("fit-validation_data-y-label", lambda w, t: fit(w, validation_data=(w.X, w.labels + 5)),
     V, "validation_data y"),
    ("fit-validation_order", lambda w, t: fit(w, validation_split=0.5,
                                              validation_order="first"), V,
     "validation_order"),
    ("fit-metrics-unknown", lambda w, t: fit(w, metrics=["f1"]), V, "metrics"),
    ("fit-callbacks-int", lambda w, t: fit(w, callbacks=[3]), T, "callbacks"),
    ("fit-optimizer-name", lambda w, t: fit(w, optimizer="nadam"), V, "optimizer"),
    ("fit-optimizer-of-other", lambda w, t: fit(w, optimizer=w.opt.other), V, "optimizer"),
    ("fit-optimizer-int", lambda w, t: fit(w, optimizer=3), T, "optimizer"),
    ("fit-loss-name", lambda w, t: fit(w, loss="mae"), V, "loss"),
    ("fit-loss-int", lambda w, t: fit(w, loss=3), T, "loss"),
    ("fit-classes-wrong", lambda w, t: fit(w, classes=[0, 1, 2]), V, "classes"),
    ("fit-y-labels-three-classes",
     lambda w, t: w.model.fit(w.X, np.arange(N) % 3, loss="cross_entropy",
                              optimizer=w.opt.adam, verbose=0), V, "y"),
    ("partial_fit-shuffle-str",
     lambda w, t: w.model.partial_fit(w.X, w.labels, loss="cross_entropy",
                                      optimizer=w.opt.adam, shuffle="yes"), T, "shuffle"),
    ("partial_fit-y-unseen-label",
     lambda w, t: w.model.partial_fit(w.X, w.labels + 4, loss="cross_entropy",
                                      optimizer=w.opt.adam), V, "y"),
    ("evaluate-metrics-labels-out-of-range",
     lambda w, t: bp.Model([bp.Dense(N_IN, N_OUT)], seed=0).evaluate(
         w.X, np.array([0, 1, 2, 5, 0, 1, 0, 1]), metrics=["accuracy"]), V, "y"),
    ("evaluate-metrics-labels-fractional",
     lambda w, t: bp.Model([bp.Dense(N_IN, N_OUT)], seed=0).evaluate(
         w.X, np.full(N, 0.5), metrics=["accuracy"]), V, "y"),
    ("evaluate-metrics-y-shape",
     lambda w, t: bp.Model([bp.Dense(N_IN, N_OUT)], seed=0).evaluate(
         w.X, np.ones((N, 3)), metrics=["mse"]), V, "y"),
    ("evaluate-metrics-y-str",
     lambda w, t: bp.Model([bp.Dense(N_IN, N_OUT)], seed=0).evaluate(
         w.X, np.full(N, "a"), metrics=["mae"]), T, "y"),
    ("evaluate-y-None", lambda w, t: w.model.evaluate(w.X, None), T, "y"),
    ("evaluate-y-label-unseen", lambda w, t: w.model.evaluate(w.X, w.labels + 9), V, "y"),
    ("evaluate-y-mse-shape", lambda w, t: w.model.evaluate(w.X, w.y[:, :1], loss="mse"), V,
     "y"),
    ("evaluate-batch_size-0", lambda w, t: w.model.evaluate(w.X, w.labels, batch_size=0), V,
     "batch_size"),
    ("evaluate-weight-negative",
     lambda w, t: w.model.evaluate(w.X, w.labels, sample_weight=-np.ones(N)), V,
     "sample_weight"),
    # ---- optimizers
    ("SGD-nesterov-str", lambda w, t: bp.SGD(w.model, momentum=0.5, nesterov="yes"), T,
     "nesterov"),
    ("RMSprop-centered-int", lambda w, t: bp.RMSprop(w.model, centered=1), T, "centered"),
    ("RMSprop-alpha-1", lambda w, t: bp.RMSprop(w.model, alpha=1.0), V, "alpha"),
    ("Rprop-etas", lambda w, t: bp.Rprop(w.model, etas=(1.5, 1.2)), V, "etas[0]"),
    ("Rprop-step_sizes", lambda w, t: bp.Rprop(w.model, step_sizes=(2.0, 1.0)), V,
     "step_sizes"),
    ("AdamW-weight_decay-nan", lambda w, t: bp.AdamW(w.model, weight_decay=math.nan), V,
     "weight_decay"),
    ("Adam-model-None", lambda w, t: bp.Adam(None), T, "model"),
    ("steps-2**70", lambda w, t: setattr(w.opt.adam, "steps", 2**70), V, "steps"),
    ("steps-2**63", lambda w, t: setattr(w.opt.sgd, "steps", 2**63), V, "steps"),
    ("steps-negative", lambda w, t: setattr(w.opt.rprop, "steps", -1), V, "steps"),
    ("steps-float", lambda w, t: setattr(w.opt.adam, "steps", 3.0), T, "steps"),
    ("steps-bool", lambda w, t: setattr(w.opt.adam, "steps", True), T, "steps"),
    ("lr-str", lambda w, t: setattr(w.opt.adam, "lr", "fast"), T, "lr"),
    ("momentum-nan", lambda w, t: setattr(w.opt.sgd, "momentum", math.nan), V, "momentum"),
    ("load_state_dict-steps-2**63", lambda w, t: _state_with_steps(w, 2**63), V,
     "state_dict['steps']"),
    ("load_state_dict-steps-2**70", lambda w, t: _state_with_steps(w, 2**70), V,
     "state_dict['steps']"),
    ("register_optimizer-name", lambda w, t: bp.register_optimizer("my opt", bp.SGD), V,
     "name"),
    ("register_optimizer-cls", lambda w, t: bp.register_optimizer("mine", object), T, "cls"),
    ("register_optimizer-taken", lambda w, t: bp.register_optimizer("adam", bp.Adam), V,
     "optimizer name"),
    ("clip_grad_norm-error_if_nonfinite-str",
     lambda w, t: bp.clip_grad_norm(w.model, 1.0, error_if_nonfinite="no"), T,
     "error_if_nonfinite"),
    ("clip_grad_norm-max_norm-0", lambda w, t: bp.clip_grad_norm(w.model, 0.0), V,
     "max_norm"),
    ("clip_grad_value-0", lambda w, t: bp.clip_grad_value(w.model, 0.0), V, "clip_value"),
    ("clip_grad_value-model", lambda w, t: bp.clip_grad_value(w.opt.sgd, 1.0), T, "model"),
    # ---- schedules
    ("StepLR-step_size-0", lambda w, t: bp.StepLR(w.opt.sgd, step_size=0), V, "step_size"),
    ("StepLR-optimizer", lambda w, t: bp.StepLR(w.model, step_size=1), T, "optimizer"),
    ("ExponentialLR-gamma-0", lambda w, t: bp.ExponentialLR(w.opt.sgd, gamma=0.0), V,
     "gamma"),
    ("CosineLR-total_epochs-0", lambda w, t: bp.CosineLR(w.opt.sgd, total_epochs=0), V,
     "total_epochs"),
    ("LambdaLR-fn-int", lambda w, t: bp.LambdaLR(w.opt.sgd, 3), T, "fn"),
    ("ReduceLROnPlateau-mode", lambda w, t: bp.ReduceLROnPlateau(w.opt.sgd, mode="up"), V,
     "mode"),
    ("ReduceLROnPlateau-factor-1", lambda w, t: bp.ReduceLROnPlateau(w.opt.sgd, factor=1.0),
     V, "factor"),
    ("schedule-load_state_dict-None", lambda w, t: w.schedule.load_state_dict(None), T,
     "state_dict"),
    # ---- callbacks
    ("EarlyStopping-patience-0", lambda w, t: bp.EarlyStopping(patience=0), V, "patience"),
    ("EarlyStopping-restore-str", lambda w, t: bp.EarlyStopping(restore_best_weights="no"),
     T, "restore_best_weights"),
    ("ModelCheckpoint-save_best_only-int",
     lambda w, t: bp.ModelCheckpoint(os.path.join(t, "m.bpc"), save_best_only=1), T,
     "save_best_only"),
    ("ModelCheckpoint-save_optimizer-str",
     lambda w, t: bp.ModelCheckpoint(os.path.join(t, "m.bpc"), save_optimizer="yes"), T,
     "save_optimizer"),
    ("LearningRateScheduler-int", lambda w, t: bp.LearningRateScheduler(3), T, "schedule"),
    ("LambdaCallback-int", lambda w, t: bp.LambdaCallback(on_epoch_end=3), T,
     "on_epoch_end"),
    # ---- checkpoints
    ("save-path-None", lambda w, t: w.model.save(None), T, "path"),
    ("save-path-folder", lambda w, t: w.model.save(t), IsADirectoryError, "path"),
    ("save-optimizer-of-other", lambda w, t: w.model.save(os.path.join(t, "m.bpc"),
                                                          w.opt.other), V, "optimizer"),
    ("save-progress-str", lambda w, t: w.model.save(os.path.join(t, "m.bpc"),
                                                    progress="x"), T, "progress"),
    ("save-progress-not-json", lambda w, t: w.model.save(os.path.join(t, "m.bpc"),
                                                         progress={"a": object()}), T,
     "progress"),
    ("load-None", lambda w, t: bp.load(None), T, "path"),
    ("load-int", lambda w, t: bp.load(3), T, "path"),
    ("load_checkpoint-bytes", lambda w, t: bp.load_checkpoint(b"m.bpc"), T, "path"),
    # ---- minimize, gradcheck, threads
    ("minimize-method", lambda w, t: bp.minimize(w.model, w.X, w.y, "mse", method="nope"),
     V, "method"),
    ("minimize-l2", lambda w, t: bp.minimize(w.model, w.X, w.y, "mse", l2=-1.0), V, "l2"),
    ("minimize-y-None", lambda w, t: bp.minimize(w.model, w.X, None, "mse"), T, "y"),
    ("minimize-y-shape", lambda w, t: bp.minimize(w.model, w.X, w.y[:, :1], "mse"), V, "y"),
    ("gradcheck-loss", lambda w, t: bp.gradcheck(w.model, w.X, w.y, "mse"), T, "loss"),
    ("set_blas_threads-0", lambda w, t: bp.set_blas_threads(0), V, "n"),
    ("set_blas_threads-str", lambda w, t: bp.set_blas_threads("2"), T, "n"),
    # ---- interop
    ("to_torch-model", lambda w, t: _interop("to_torch")("model"), T, "model"),
    ("state_dict-model", lambda w, t: _interop("state_dict")(3), T, "model"),
    ("load_state_dict-strict-str",
     lambda w, t: _interop("load_state_dict")(w.model, {}, strict="yes"), T, "strict"),
    ("load_state_dict-shape",
     lambda w, t: _interop("load_state_dict")(w.model, {"0.weight": np.ones((2, 2))}), V,
     "0.weight"),
    ("save_safetensors-path-None",
     lambda w, t: _safetensors("save_safetensors")(w.model, None), T, "path"),
    ("save_safetensors-model", lambda w, t: _safetensors("save_safetensors")(
        "model", os.path.join(t, "m.safetensors")), T, "model"),
    ("load_safetensors-None", lambda w, t: _safetensors("load_safetensors")(None), T,
     "path"),
    # ---- scikit-learn estimators
    ("MLPClassifier-shuffle-str", lambda w, t: _sklearn("classifier")(
        shuffle="no", max_iter=1).fit(w.X, w.labels), V, "shuffle"),
    ("MLPClassifier-hidden_layer_sizes-0", lambda w, t: _sklearn("classifier")(
        hidden_layer_sizes=(0,), max_iter=1).fit(w.X, w.labels), V, "hidden_layer_sizes"),
    ("MLPClassifier-y-None", lambda w, t: _sklearn("classifier")(max_iter=1).fit(w.X, None),
     V, "y"),
    ("MLPRegressor-X-nan", lambda w, t: _sklearn("regressor")(max_iter=1).fit(
        np.full((N, N_IN), np.nan), w.y), V, "NaN"),
    ("MLPRegressor-predict-unfitted",
     lambda w, t: _sklearn("regressor")().predict(w.X), V, "MLPRegressor"),
]


def _interop(name):
    from bpcore.interop import torch as bt
    if name in ("to_torch", "load_state_dict"):     # (both import torch first)
        pytest.importorskip("torch")
    return getattr(bt, name)


def _safetensors(name):
    from bpcore.interop import safetensors as bs
    return getattr(bs, name)


@pytest.mark.parametrize("call, exc, argument",
                         [pytest.param(call, exc, arg, id=name)
                          for name, call, exc, arg in ROWS])
def test_bad_call_is_named_and_changes_nothing(call, exc, argument, tmp_path):
    world = make_world()
    before = snapshot(world)
    listing = sorted(os.listdir(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no NumPy warning leaks before the error
        with pytest.raises(exc) as caught:
            call(world, str(tmp_path))
    message = str(caught.value)
    assert re.search(rf"(?<![\w.]){re.escape(argument)}(?!\w)", message), message
    assert_unchanged(before, snapshot(world))
    assert sorted(os.listdir(tmp_path)) == listing        # no file written, none left


def test_the_table_walks_every_public_entry_point():
    """Every public callable of ``bpcore`` appears in some row (by the name the rows
    call it with), so a new entry point without a bad-input row fails here."""
    covered = " ".join(name for name, *_ in ROWS)
    exempt = {"ACTIVATIONS", "Checkpoint", "CheckpointError", "GradCheckResult", "History",
              "Callback", "Loss", "MSELoss", "BCEWithLogitsLoss", "CrossEntropyLoss",
              "PoissonLoss", "Optimizer", "TrainingDiverged", "blas_threads",
              "SupportsStep",
              "get_include", "build_info"}     # (take no arguments)
    names = {"Adam": "Adam-", "AdamW": "AdamW", "SGD": "SGD", "Model": "Model",
             "Dense": "Dense", "RMSprop": "RMSprop", "Rprop": "Rprop", "StepLR": "StepLR",
             "ExponentialLR": "ExponentialLR", "CosineLR": "CosineLR", "LambdaLR": "LambdaLR",
             "ReduceLROnPlateau": "ReduceLROnPlateau", "EarlyStopping": "EarlyStopping",
             "ModelCheckpoint": "ModelCheckpoint", "LambdaCallback": "LambdaCallback",
             "LearningRateScheduler": "LearningRateScheduler", "load": "load-",
             "load_checkpoint": "load_checkpoint", "minimize": "minimize",
             "gradcheck": "gradcheck", "clip_grad_norm": "clip_grad_norm",
             "clip_grad_value": "clip_grad_value", "register_optimizer": "register_optimizer",
             "set_blas_threads": "set_blas_threads"}
    for public in bp.__all__:
        if public in exempt:
            continue
        assert public in names and names[public] in covered, f"no row for bp.{public}"
    for method in ("train", "to_dot", "loss_and_grad", "train_step", "predict", "forward",
                   "predict_proba", "fit", "partial_fit", "evaluate", "save"):
        assert f"{method}-" in covered, f"no row for Model.{method}"
