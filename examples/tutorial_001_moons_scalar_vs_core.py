"""Tutorial 001, micrograd style: a 2-16-16-1 ReLU MLP on two moons, two engines side by side.

Karpathy's micrograd trains this network with a scalar autograd engine. Here bpcore's
scalar engine (bpcore.scalar + bpcore.scalar.nn) and its Cython core start from the
same weights and take the same plain SGD steps on the same loss (binary
cross-entropy on the logit); each step prints both losses, how far apart the two
gradients are, and how long each engine took. Then the Cython core alone finishes
the training. The data: bpcore.datasets.moons, two noisy half circles made with
numpy (no scikit-learn).

Run from the repository root:  python examples/tutorial_001_moons_scalar_vs_core.py
"""
import gc
import statistics
import time

import numpy as np

import bpcore as bp
from bpcore.datasets import moons
from bpcore.scalar import nn as scalar_nn

SIDE_BY_SIDE_STEPS, TOTAL_STEPS, LR = 5, 300, 0.3


def scalar_step(mlp, params, rows, labels):
    """One SGD step on the scalar engine; returns the loss Value and the gradients."""
    scalar_loss = scalar_nn.bce_with_logits(mlp.forward(rows), labels)
    mlp.zero_grad()
    scalar_loss.backward()
    scalar_grads = [p.grad for p in params]
    for p in params:
        p.data -= LR * p.grad
    return scalar_loss, scalar_grads


def main():
    X, y = moons(n_samples=100, noise=0.1, seed=0)
    target = y.astype(np.float64)
    model = bp.Model([bp.Dense(2, 16, "relu"), bp.Dense(16, 16, "relu"), bp.Dense(16, 1)],
                     seed=0)
    loss = bp.BCEWithLogitsLoss()
    optimizer = bp.SGD(model, lr=LR)
    mlp = scalar_nn.MLP.from_model(model)
    params = mlp.parameters()                      # in model.params' order
    rows, labels = X.tolist(), target.tolist()
    print(f"two moons: {len(X)} points; network 2-16-16-1 (ReLU), {model.n_params} "
          f"parameters; plain SGD, lr {LR}\n")
    print(" step   loss (Cython core)   loss (scalar engine)   max |grad diff| / max |grad|"
          "   core ms   scalar ms")

    core_times, scalar_times = [], []
    for step in range(1, SIDE_BY_SIDE_STEPS + 1):
        start = time.perf_counter()
        value, grads = model.loss_and_grad(X, target, loss)
        optimizer.step()
        core_times.append(time.perf_counter() - start)

        start = time.perf_counter()
        scalar_loss, scalar_grads = scalar_step(mlp, params, rows, labels)
        scalar_times.append(time.perf_counter() - start)

        gap = np.abs(np.array(scalar_grads) - grads).max() / np.abs(grads).max()
        print(f" {step:4d}   {value:18.15f}   {scalar_loss.data:20.15f}   {gap:28.1e}"
              f"   {1e3 * core_times[-1]:7.3f}   {1e3 * scalar_times[-1]:9.1f}")

    n_nodes = len(scalar_loss.graph())
    ratio = statistics.median(scalar_times) / statistics.median(core_times)
    print(f"\nOne step of the scalar engine builds and walks a graph of {n_nodes} Values;")
    print(f"median step: scalar engine {1e3 * statistics.median(scalar_times):.0f} ms, "
          f"Cython core {1e3 * statistics.median(core_times):.3f} ms\n"
          f"-> the core is about {ratio:,.0f} times faster (this machine, this run).")
    drift = np.abs(np.array([p.data for p in params]) - model.params).max()
    print(f"after {SIDE_BY_SIDE_STEPS} steps the two parameter vectors differ by at most "
          f"{drift:.1e}")

    # Most of a scalar step is Python's cyclic garbage collector walking the ~10^5 live
    # objects of the graph. The graph has no cycles (results point to inputs only), so
    # reference counting frees it anyway and pausing the collector is safe.
    del scalar_loss
    paused = []
    gc.disable()
    try:
        for _ in range(2):
            start = time.perf_counter()
            scalar_step(mlp, params, rows, labels)
            paused.append(time.perf_counter() - start)
            value, _ = model.loss_and_grad(X, target, loss)    # keep the two in step
            optimizer.step()
    finally:
        gc.enable()
    print(f"with Python's garbage collector paused (gc.disable()) a scalar step takes "
          f"{1e3 * min(paused):.0f} ms: still about\n"
          f"{min(paused) / statistics.median(core_times):,.0f} times the core's.\n")

    for _ in range(SIDE_BY_SIDE_STEPS + 3, TOTAL_STEPS + 1):
        value, _ = model.loss_and_grad(X, target, loss)
        optimizer.step()
    accuracy = ((model.predict(X)[:, 0] > 0) == y).mean()
    print(f"the Cython core alone, to step {TOTAL_STEPS}: loss {value:.4f}, "
          f"training accuracy {accuracy:.0%}")
    estimate = TOTAL_STEPS * statistics.median(scalar_times)
    print(f"(the scalar engine would need about {estimate:.0f} s for those {TOTAL_STEPS} steps)")


if __name__ == "__main__":
    main()
