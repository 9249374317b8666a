"""One training step of bpcore beside the preallocated NumPy step, per workload.

Run:  pytest benches --benchmark-columns=median,iqr,rounds   (one group per workload;
compare the rows of a group, not absolute times). With --benchmark-disable each bench
runs once, and the checks below keep the NumPy peer honest (it must do bpcore's math)
and bpcore's fused ``train_step`` too (it must do the two-call path's math).
No test here asserts a timing.

Implementations: "bpcore" is ``loss_and_grad`` + ``optimizer.step()`` (two calls),
"bpcore-train_step" the fused ``model.train_step``, "numpy" the preallocated NumPy
step. The workloads are benches/README.md's at sizes CI can smoke-run (W3 is 512 wide at
batch 128 here; benches/compare.py times the real W3 and the whole S series). W1b
also times batch-1 prediction: ``model.predict`` beside the NumPy forward pass.

Every timed round is the same step from the same state: parameters and optimizer
state are restored (untimed) before each round. Left to run for thousands of steps on
one fixed batch, W2 memorises it and its gradients vanish: with Adam the float32
softmax saturates within a few thousand steps, the NumPy step's loss and gradients
become exactly zero while bpcore's keep shrinking, and the bench would time two
different degenerate steps.
"""
import time

import numpy as np
import pytest

from .numpy_step import NumpyStep
from .workloads import WORKLOADS, assert_same_training, bpcore_step, numpy_step

WARMUP_STEPS = 5           # the first step allocates workspaces and optimizer state
SECONDS_PER_BENCH = 1.0    # timed rounds are sized to about this much stepping
ROUNDS = (100, 5000)       # ... within these bounds


class Restorer:
    """Copies of the arrays and step count a step changes; calling it puts them back."""

    def __init__(self, counter, arrays):
        self.counter, self.arrays = counter, list(arrays)
        self.saved = [a.copy() for a in self.arrays]
        self.steps = counter.steps

    def __call__(self):
        for array, saved in zip(self.arrays, self.saved):
            np.copyto(array, saved)
        self.counter.steps = self.steps


IMPLEMENTATIONS = ("bpcore", "bpcore-train_step", "numpy")


def make_step(workload, implementation, X, y):
    """Return (step, restore): step(X, y) of the implementation, from bpcore's seed 0."""
    model, optimizer, step = bpcore_step(workload, fused=implementation == "bpcore-train_step")
    params, counter = model.params, optimizer
    if implementation == "numpy":
        peer = numpy_step(workload, [(l.W, l.b) for l in model.layers])
        params, counter, step = peer.params, peer, peer.step
    for _ in range(WARMUP_STEPS):      # optimizer state exists only after the first step
        step(X, y)
    return step, Restorer(counter, [params, *counter.state.values()])


def rounds_for(step, restore, X, y):
    """Rounds that take about SECONDS_PER_BENCH of stepping (timed on a few steps)."""
    start = time.perf_counter()
    for _ in range(10):
        restore()
        step(X, y)
    per_step = (time.perf_counter() - start) / 10
    return int(np.clip(SECONDS_PER_BENCH / per_step, *ROUNDS))


@pytest.mark.benchmark(disable_gc=True)
@pytest.mark.parametrize("workload,implementation",
                         [(w, impl) for w in WORKLOADS for impl in IMPLEMENTATIONS])
def test_step(benchmark, blas_threads, workload, implementation):
    workload = WORKLOADS[workload]
    X, y = workload.data()
    step, restore = make_step(workload, implementation, X, y)
    benchmark.group = workload.id
    benchmark.extra_info.update(blas_threads=blas_threads, batch=workload.batch,
                                sizes="-".join(map(str, workload.sizes)))
    rounds = 1 if benchmark.disabled else rounds_for(step, restore, X, y)
    value = benchmark.pedantic(step, args=(X, y), setup=restore, rounds=rounds,
                               warmup_rounds=min(rounds, 20), iterations=1)
    assert np.isfinite(value)


PREDICT_WORKLOADS = [w for w in WORKLOADS if w.startswith("W1b")]


@pytest.mark.benchmark(disable_gc=True)
@pytest.mark.parametrize("workload,implementation",
                         [(w, impl) for w in PREDICT_WORKLOADS for impl in ("bpcore", "numpy")])
def test_predict(benchmark, blas_threads, workload, implementation):
    """Inference on one batch: bpcore's ``predict`` (returns a new array) beside the
    NumPy step's ``forward`` (writes its own buffers)."""
    workload = WORKLOADS[workload]
    X, _ = workload.data()
    model, _, _ = bpcore_step(workload)
    predict = model.predict
    if implementation == "numpy":
        predict = numpy_step(workload, [(l.W, l.b) for l in model.layers]).forward
    for _ in range(WARMUP_STEPS):
        predict(X)
    benchmark.group = f"{workload.id}-predict"
    benchmark.extra_info.update(blas_threads=blas_threads, batch=workload.batch,
                                sizes="-".join(map(str, workload.sizes)))
    rounds = 1 if benchmark.disabled else ROUNDS[1]
    output = benchmark.pedantic(predict, args=(X,), rounds=rounds,
                                warmup_rounds=min(rounds, 20), iterations=1)
    assert output.shape == (workload.batch, workload.sizes[-1])


@pytest.mark.parametrize("workload", PREDICT_WORKLOADS)
def test_predict_matches_numpy_forward(workload):
    workload = WORKLOADS[workload]
    X, _ = workload.data()
    model, _, _ = bpcore_step(workload)
    peer = numpy_step(workload, [(l.W, l.b) for l in model.layers])
    np.testing.assert_allclose(model.predict(X), peer.forward(X), rtol=1e-12, atol=1e-14)


CHECKS = list(WORKLOADS.values())
CHECKS += [w.with_dtype(np.float64) for w in CHECKS if w.dtype != np.float64]


@pytest.mark.parametrize("fused", [False, True], ids=["two-call", "train_step"])
@pytest.mark.parametrize("workload", CHECKS, ids=lambda w: w.id)
def test_numpy_step_matches_bpcore(workload, fused):
    """After 20 steps from the same weights both give the same weights and losses."""
    X, y = workload.data()
    model, _, step = bpcore_step(workload, fused=fused)
    peer = numpy_step(workload, [(l.W, l.b) for l in model.layers])
    values, peer_values = [], []
    for _ in range(20):
        values.append(step(X, y))
        peer_values.append(peer.step(X, y))
    assert_same_training(values, [(l.W, l.b) for l in model.layers],
                         peer_values, list(zip(peer.W, peer.b)), workload.dtype)


# ------------------------------------------- the NumPy step's own math, independently
def reference_loss(pairs, X, y, activation, loss):
    """The loss of a network written out plainly (new arrays, no bias trick)."""
    f = {"relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
         "tanh": np.tanh}[activation]
    a = X
    for W, b in pairs[:-1]:
        a = f(a @ W + b)
    out = a @ pairs[-1][0] + pairs[-1][1]
    if loss == "mse":
        return np.mean((out - y) ** 2)
    shifted = out - out.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=1))
    return np.mean(log_sum - shifted[np.arange(len(y)), y])


def small_problem(activation, loss, seed=0):
    """A NumpyStep on a 3-5-4-k float64 network, batch 7, and its (X, y)."""
    rng = np.random.default_rng(seed)
    k = 2 if loss == "mse" else 3
    sizes, n = (3, 5, 4, k), 7
    weights = [(rng.normal(size=(i, o)), rng.normal(0, 0.5, o))
               for i, o in zip(sizes[:-1], sizes[1:])]
    step = NumpyStep(sizes, n, loss=loss, activation=activation, weights=weights)
    X = rng.normal(size=(n, sizes[0]))
    y = rng.normal(size=(n, k)) if loss == "mse" else rng.integers(0, k, n)
    return step, X, y


def gradients(step, X, y):
    """(loss value, [(dW, db)]) of one forward, loss and backward of the NumPy step."""
    value = step.loss_and_delta(step.forward(X), y)
    step.backward()
    return value, [(dWb[:-1].copy(), dWb[-1].copy()) for dWb in step.dWb]


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_numpy_step_gradients_match_central_differences(activation, loss):
    step, X, y = small_problem(activation, loss)
    value, grads = gradients(step, X, y)
    pairs = list(zip(step.W, step.b))
    assert value == pytest.approx(reference_loss(pairs, X, y, activation, loss), rel=1e-12)
    h = 1e-6
    for tensors, (dW, db) in zip(pairs, grads):
        for tensor, analytic in zip(tensors, (dW, db)):
            numeric = np.empty_like(analytic)
            for index in np.ndindex(tensor.shape):        # writes into step.params
                saved = tensor[index]
                tensor[index] = saved + h
                plus = reference_loss(pairs, X, y, activation, loss)
                tensor[index] = saved - h
                minus = reference_loss(pairs, X, y, activation, loss)
                tensor[index] = saved
                numeric[index] = (plus - minus) / (2 * h)
            np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_numpy_step_matches_pytorch_autograd(activation, loss):
    torch = pytest.importorskip("torch")
    step, X, y = small_problem(activation, loss, seed=1)
    params = [(torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True))
              for W, b in zip(step.W, step.b)]
    f = torch.sigmoid if activation == "sigmoid" else torch.tanh
    a = torch.from_numpy(X)
    for W, b in params[:-1]:
        a = f(a @ W + b)
    out = a @ params[-1][0] + params[-1][1]
    target = torch.from_numpy(y)
    expected = (torch.nn.functional.mse_loss(out, target) if loss == "mse"
                else torch.nn.functional.cross_entropy(out, target))
    expected.backward()
    value, grads = gradients(step, X, y)
    assert value == pytest.approx(expected.item(), rel=1e-12)
    for (dW, db), (W, b) in zip(grads, params):
        np.testing.assert_allclose(dW, W.grad.numpy(), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(db, b.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_numpy_step_keeps_its_ones_columns_and_rejects_an_unknown_activation():
    step, X, y = small_problem("sigmoid", "mse")
    step.step(X, y)
    for inputs in step.inputs:
        np.testing.assert_array_equal(inputs[:, -1], 1.0)
    with pytest.raises(ValueError, match="activation must be one of .* got 'gelu'"):
        NumpyStep((3, 5, 2), 7, activation="gelu")
