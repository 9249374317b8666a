"""Threads sharing one model (docs/reliability.md, "Threads").

Concurrent ``predict`` calls on one model are correct: each call runs on activation
buffers no other call is using, so every output is bit-identical to the same call
made alone (the oracle: the single-threaded results, computed first). Training one
model from two threads at once is refused: the call that finds another thread
training raises RuntimeError and changes nothing, so the model equals a
single-threaded run of the steps that succeeded.

A thread is held inside a training call deterministically (a custom loss or a
callback that waits on an Event), so the refusals do not depend on timing.
"""
import copy
import threading
import time

import numpy as np
import pytest

import bpcore as bp

rng = np.random.default_rng(0)
X = rng.normal(size=(64, 12))
Y = rng.normal(size=(64, 3))


def model_of(dtype=np.float64):
    # wide enough that a predict spends its time in kernels, with the GIL released
    return bp.Model([bp.Dense(12, 96, "relu"), bp.Dense(96, 96, "tanh"),
                     bp.Dense(96, 48, "scaled_sigmoid"), bp.Dense(48, 3)],
                    dtype=dtype, seed=1)


def run_threads(targets):
    errors = []

    def wrap(target):
        try:
            target()
        except BaseException as error:     # (reported by the test, not lost)
            errors.append(error)
    threads = [threading.Thread(target=wrap, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    return errors


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_concurrent_predicts_on_one_model_are_bit_identical_to_single_threaded(dtype):
    model = model_of(dtype)
    n_threads, calls = 8, 100
    sizes = [1, 7, 32, 256, 5, 32, 128]    # mixed batch sizes, repeated sizes shared
    inputs = [[rng.normal(size=(sizes[(t + c) % len(sizes)], 12)).astype(dtype)
               for c in range(calls)] for t in range(n_threads)]
    expected = [[model.predict(x) for x in xs] for xs in inputs]   # one thread
    results = [[None] * calls for _ in range(n_threads)]
    barrier = threading.Barrier(n_threads)

    def worker(t):
        def run():
            barrier.wait()
            for c, x in enumerate(inputs[t]):
                results[t][c] = model.predict(x)
        return run
    assert run_threads([worker(t) for t in range(n_threads)]) == []
    wrong = sum(not np.array_equal(results[t][c], expected[t][c])
                for t in range(n_threads) for c in range(calls))
    assert wrong == 0, f"{wrong} of {n_threads * calls} outputs differ"
    assert model._busy.readers == 0
    # and the model still trains and predicts as a fresh copy does
    twin = copy.deepcopy(model)
    opt, twin_opt = bp.Adam(model), bp.Adam(twin)
    model.train_step(X, Y, bp.MSELoss(), opt)
    twin.train_step(X, Y, bp.MSELoss(), twin_opt)
    np.testing.assert_array_equal(model.params, twin.params)
    np.testing.assert_array_equal(model.predict(X), twin.predict(X))


def test_concurrent_evaluate_with_one_loss_object_agrees_with_one_thread():
    """evaluate's loss value from four threads sharing one model and one Loss object:
    each call computes the value in a gradient buffer of its own (the loss's own buffer,
    shared, gave NaN in about half the calls at this size)."""
    big = np.random.default_rng(5).normal(size=(4096, 12))
    labels = np.arange(4096) % 3
    model = model_of()
    loss = bp.CrossEntropyLoss()
    expected = model.evaluate(big, labels, loss=loss)["loss"]
    got = []

    def run():
        for _ in range(30):
            got.append(model.evaluate(big, labels, loss=loss)["loss"])
    assert run_threads([run] * 4) == []
    assert got == [expected] * 120


def test_threads_training_their_own_models_with_one_loss_object_match_one_thread():
    """The two-call path (loss_and_grad, then step) on two models in two threads, with
    one shared Loss object: each thread's gradients are its own (the loss's reusable
    grad_output buffer is per thread), so each model equals the same steps alone.
    (With one buffer for both threads, both models came out different.)"""
    loss = bp.CrossEntropyLoss()
    big = np.random.default_rng(6).normal(size=(4096, 12))
    targets = [np.random.default_rng(s).integers(0, 64, 4096) for s in (7, 8)]

    def wide():
        return bp.Model([bp.Dense(12, 64, "relu"), bp.Dense(64, 64)], seed=1)

    def train(model, target):
        opt = bp.SGD(model, lr=1e-3)
        for _ in range(50):
            model.loss_and_grad(big, target, loss)
            opt.step()
    alone = [wide(), wide()]
    for model, target in zip(alone, targets):
        train(model, target)
    shared = [wide(), wide()]
    assert run_threads([lambda m=m, t=t: train(m, t) for m, t in zip(shared, targets)]) == []
    for got, expected in zip(shared, alone):
        np.testing.assert_array_equal(got.params, expected.params)
    copied = copy.deepcopy(loss)        # a copy has buffers of its own, and the same math
    output = big[:, :8] @ np.ones((8, 64))
    assert copied.reduction == loss.reduction
    assert copied(output, targets[0])[0] == loss(output, targets[0])[0]


def test_concurrent_predict_labels_proba_and_evaluate_agree_with_one_thread():
    model = model_of()
    labels = np.arange(64) % 3
    model.fit(X, labels, loss="cross_entropy", epochs=1, verbose=0, seed=0)
    expected = (model.predict_labels(X), model.predict_proba(X),
                model.evaluate(X, labels, metrics=["accuracy"]))
    out = []

    def run():
        for _ in range(20):
            out.append((model.predict_labels(X), model.predict_proba(X),
                        model.evaluate(X, labels, metrics=["accuracy"])))
    assert run_threads([run] * 4) == []
    for got in out:
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
        assert got[2] == expected[2]


class Held:
    """A custom loss (MSE) whose first call waits until released: the thread calling
    it holds the model's training claim meanwhile."""

    def __init__(self):
        self.inside, self.release = threading.Event(), threading.Event()

    def __call__(self, output, target):
        if not self.inside.is_set():
            self.inside.set()
            assert self.release.wait(timeout=60)
        diff = output - target
        return float((diff ** 2).mean()), 2 * diff / diff.size


def others_are_refused(model, optimizer, holder_call, what):
    """Run ``holder_call`` in a thread held inside a training call; meanwhile every
    training call and predict from this thread must raise RuntimeError naming
    ``what`` and change nothing. Returns the errors raised."""
    held = Held()
    thread_errors = []

    def hold():
        try:
            holder_call(held)
        except BaseException as error:
            thread_errors.append(error)
            held.inside.set()
    thread = threading.Thread(target=hold)
    thread.start()
    assert held.inside.wait(timeout=60)
    params, grads = model.params.copy(), model.grads.copy()
    steps = optimizer.steps
    state = {k: v.copy() for k, v in optimizer.state.items()}
    attempts = [
        lambda: model.train_step(X, Y, bp.MSELoss(), optimizer),
        lambda: model.train_step(X, Y, bp.MSELoss(), optimizer, keep_grads=True),
        lambda: model.loss_and_grad(X, Y, bp.MSELoss()),
        lambda: model.forward(X),
        lambda: model.backward(np.ones((64, 3))),
        lambda: model.zero_grad(),
        lambda: optimizer.step(),
        lambda: optimizer.zero_grad(),
        lambda: model.fit(X, Y, loss="mse", optimizer=optimizer, epochs=1, verbose=0),
        lambda: model.partial_fit(X, Y, loss="mse", optimizer=optimizer),
        lambda: model.predict(X),
        lambda: model.evaluate(X, Y, loss="mse"),
    ]
    messages = []
    try:
        for attempt in attempts:
            with pytest.raises(RuntimeError, match="another thread is training it") as e:
                attempt()
            messages.append(str(e.value))
            np.testing.assert_array_equal(model.params, params)
            np.testing.assert_array_equal(model.grads, grads)
            assert optimizer.steps == steps
            assert all(np.array_equal(optimizer.state[k], v) for k, v in state.items())
    finally:
        held.release.set()
        thread.join(timeout=120)
    assert thread_errors == []
    assert all(f"({what})" in m for m in messages), messages
    return messages


@pytest.mark.parametrize("name", ["adam", "momentum", "rmsprop"])
def test_training_from_a_second_thread_is_refused_while_one_trains(name):
    make = {"adam": lambda m: bp.Adam(m, lr=0.01),
            "momentum": lambda m: bp.SGD(m, lr=0.01, momentum=0.9),
            "rmsprop": lambda m: bp.RMSprop(m, lr=0.01)}[name]
    model = model_of()
    optimizer = make(model)
    oracle = copy.deepcopy(model)
    oracle_opt = make(oracle)
    # held inside loss_and_grad (a custom loss), inside train_step's two-call path,
    # and inside fit (its per-epoch callback)
    others_are_refused(model, optimizer,
                       lambda held: model.loss_and_grad(X, Y, held), "loss_and_grad")
    oracle.loss_and_grad(X, Y, _released())
    others_are_refused(model, optimizer,
                       lambda held: model.train_step(X, Y, held, optimizer), "train_step")
    oracle.train_step(X, Y, _released(), oracle_opt)

    def fit_held(held):
        def on_epoch_end(epoch, logs):
            held(np.zeros(1), np.zeros(1))
        model.fit(X, Y, loss="mse", optimizer=optimizer, epochs=2, batch_size=16,
                  verbose=0, seed=3, callbacks=[on_epoch_end])
    others_are_refused(model, optimizer, fit_held, "fit")
    oracle.fit(X, Y, loss="mse", optimizer=oracle_opt, epochs=2, batch_size=16, verbose=0,
               seed=3)
    # only the holder's steps happened: as a single-threaded run of them
    np.testing.assert_array_equal(model.params, oracle.params)
    assert optimizer.steps == oracle_opt.steps
    for k in oracle_opt.state:
        np.testing.assert_array_equal(optimizer.state[k], oracle_opt.state[k])


def _released():
    held = Held()
    held.inside.set()
    return held


def test_the_training_thread_may_predict_and_nest_its_own_calls():
    # a claim is re-entrant on its own thread: fit's callbacks predict and evaluate
    model = model_of()
    seen = []

    def on_epoch_end(epoch, logs):
        seen.append(model.predict(X[:5]))
        seen.append(model.evaluate(X, Y, loss="mse")["loss"])
    model.fit(X, Y, loss="mse", epochs=2, verbose=0, seed=0, callbacks=[on_epoch_end],
              validation_data=(X, Y))
    assert len(seen) == 4 and model._busy.trainer is None
    np.testing.assert_array_equal(seen[2], model.predict(X[:5]))


@pytest.mark.parametrize("name", ["adam", "momentum"])
def test_two_threads_hammering_train_step_equal_one_thread_running_the_steps_taken(name):
    make = {"adam": lambda m: bp.Adam(m, lr=1e-3),
            "momentum": lambda m: bp.SGD(m, lr=1e-3, momentum=0.9)}[name]
    model = model_of()
    optimizer = make(model)
    oracle = copy.deepcopy(model)
    oracle_opt = make(oracle)
    loss = bp.MSELoss()
    taken, refused = [], []
    barrier = threading.Barrier(2)

    def trainer():
        barrier.wait()
        for _ in range(150):
            try:
                taken.append(model.train_step(X, Y, loss, optimizer))
            except RuntimeError as error:
                assert "another thread is training it (train_step)" in str(error)
                refused.append(1)
    assert run_threads([trainer, trainer]) == []
    assert len(taken) + len(refused) == 300
    for _ in range(len(taken)):        # the same batch each time: order does not matter
        oracle.train_step(X, Y, loss, oracle_opt)
    assert optimizer.steps == oracle_opt.steps == len(taken)
    np.testing.assert_array_equal(model.params, oracle.params)
    for k in oracle_opt.state:
        np.testing.assert_array_equal(optimizer.state[k], oracle_opt.state[k])


def test_predict_threads_during_training_in_another_thread_are_refused_not_wrong():
    # predicts that overlap another thread's training are refused; the ones that run
    # give exactly the output of the parameters of some step (never a torn mix)
    model = model_of()
    optimizer = bp.SGD(model, lr=1e-3)
    oracle = copy.deepcopy(model)
    oracle_opt = bp.SGD(oracle, lr=1e-3)
    loss = bp.MSELoss()
    n_steps = 60
    possible = [oracle.predict(X)]
    for _ in range(n_steps):
        oracle.train_step(X, Y, loss, oracle_opt)
        possible.append(oracle.predict(X))
    outputs, refusals = [], []
    done = threading.Event()

    def train():
        try:
            for _ in range(n_steps):
                while True:
                    try:
                        model.train_step(X, Y, loss, optimizer)
                        break
                    except RuntimeError as error:
                        assert "running predict on it" in str(error)
                        time.sleep(0.0002)
        finally:
            done.set()

    def predict():
        while not done.is_set():
            try:
                outputs.append(model.predict(X))
            except RuntimeError as error:
                assert "another thread is training it (train_step)" in str(error)
                refusals.append(1)
            time.sleep(0.0002)      # (room for the trainer: refusals are not queued)
    assert run_threads([train, predict, predict]) == []
    np.testing.assert_array_equal(model.params, oracle.params)
    for output in outputs:
        assert any(np.array_equal(output, p) for p in possible)
