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
