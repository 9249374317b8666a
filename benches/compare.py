"""bpcore's fused train_step beside its peers, interleaved, on the workloads of benches/README.md.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benches/compare.py \\
        [--threads 1] [--quick] [--rounds N] [--only W1,S] [--plot benches/scaling.png]

(unset the two OPENBLAS_ variables in benchmark commands only: benches/README.md.)

Peers, each skipped when its package is missing:
  bpcore      ``model.train_step(X, y, loss, optimizer)``; predict rows: ``model.predict``
  NumPy       benches/numpy_step.py, the preallocated hand-written step; predict rows:
              its ``forward``
  (every peer has the workload's hidden activation: ReLU, W4 sigmoid, W5 tanh; the
  matmul-only floor has none: it is the products alone)
  PyTorch     eager, float32/float64 as the workload, ``zero_grad``, forward, loss,
              ``backward``, ``torch.optim`` SGD/Adam ``step`` (defaults), ``loss.item()``;
              predict rows: the module under ``torch.inference_mode``
  JAX         the whole step (forward, value_and_grad, SGD/Adam update) under one
              ``jax.jit``, parameters and optimizer state donated, the loss awaited
              every step (bpcore returns it every step); predict rows: a jitted forward
  sklearn     ``MLPRegressor``/``MLPClassifier.partial_fit`` on the batch (one epoch
              of one minibatch: one step, plus its input checks), W1, W2 and S
              (activation "relu", or "logistic"/"tanh" for a sigmoid/tanh workload)
  GEMM floor  not a peer: the FLOPs of those products divided by the machine's gemm
              rate measured in the same run (1024^3, best of 7), the bound benches/README.md
              names (approximate: larger products can run a little faster).
  matmul-only the step's matrix products alone, the BLAS calls bpcore's step makes
              (forward X.W per layer; backward X^T.delta per layer, added into W by
              plain SGD and into the momentum buffer by SGD with momentum on several
              BLAS threads, and delta.W^T for all but the first), in bpcore's row-major
              layout (``MatmulPeer``): ``scipy.linalg.blas`` sgemm/dgemm (SciPy's
              OpenBLAS, the one bpcore links), preallocated operands, ``overwrite_c``
              (checked: Fortran-ordered, no copy). The column to read against the
              targets (W2: bpcore <= 1.25 x matmul-only with momentum).

Rows: W1, W1b (step, and predict beside the NumPy forward), W2 momentum, W2 Adam, W3
(--quick: 1024-1024-1024-10 at batch 256, 3 rounds everywhere, for CI smoke), S at
batch 1, 8, 32, 128, 512, 2048, plotted log-log to --plot, then W4 (W1 with sigmoid
hidden layers) and W5 (64-128-10 tanh, float32, batch 64, Adam). Then the F rows
(``--only F``): ``fit`` against a bare loop of ``train_step`` over the same batches,
FIT_EPOCHS epochs per run, F1 two moons (2-16-16-2, float64, batch 32, Adam) and F2
W2's network (float32, batch 128, Adam); both must end with the same parameters.

Every peer starts from bpcore's initial weights (seed 0) except scikit-learn (its own
initialisation, not checked). Before timing, each workload checks that bpcore's losses
and weights after 5 steps equal the NumPy step's (and PyTorch's and JAX's) from the same
start: float64 element-wise (1e-10) after the first and the last step; float32 in norm
and nearly element-wise (``assert_close_float32``: ReLU ties), plus the float64 twin
of the workload element-wise. A bpcore that differs from NumPy fails the run (exit
status 1, its row not timed); a PyTorch or JAX that differs is left out of its row.

Timing: peers run interleaved, A B C ... A B C ..., one block of steps each per round;
before every block the peer's parameters and optimizer state are restored (untimed),
so every round times the same steps from the same state. Every peer's block is
sized to about 10 ms of stepping (1 to 10,000 steps), so that the same disturbances
(the switch from the other peers, the machine's noise) weigh the same on every peer;
the figure is the median over rounds of the block's time per step, and a ratio is
the median over rounds of the two peers' ratio within the round (``paired_ratio``:
a slow phase of the machine longer than a round cancels), bpcore/matmul-only with
its quartiles; matmul-only runs right after bpcore in every round, so that the pair
the targets read are timed back to back. The garbage
collector is off for a workload's whole timing, after one full collection. With more
than one thread, every block follows 0.15 s of its own peer's untimed steps
(``warm_up``): the libraries' worker threads spin for up to 0.1 s after their last
call, and on two CPUs one peer's spinning workers would slow the next peer's block.
Threads are pinned for every library:
threadpoolctl on every BLAS and OpenMP runtime loaded (NumPy's and SciPy's OpenBLAS,
PyTorch's and scikit-learn's OpenMP), ``torch.set_num_threads``, and for JAX
``--xla_cpu_multi_thread_eigen=false`` in XLA_FLAGS at one thread plus its intra-op
pool sized by starting the backend on ``--threads`` CPUs (``start_jax``).
"""
import argparse
import copy
import datetime
import gc
import math
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):              # run as a script: make `benches` importable
    sys.path.insert(0, str(HERE.parent))

import bpcore as bp  # noqa: E402
from benches.small_gemm import one_blas_thread  # noqa: E402
from benches.workloads import (  # noqa: E402
    SCALING_BATCHES,
    W1,
    W1B,
    W2_ADAM,
    W2_MOMENTUM,
    W4,
    W5,
    assert_same_training,
    bpcore_model,
    numpy_step,
    scaling,
    w3,
)

CHECK_STEPS = 5
BLOCK_SECONDS = 0.010
BLOCK_STEPS = (1, 10000)
FIT_EPOCHS = 10
PEERS = ("bpcore", "NumPy", "PyTorch", "JAX jit", "sklearn", "matmul-only")


# ---------------------------------------------------------------------------- peers
class Peer:
    """One implementation of a workload's step (or predict) on a fixed batch.

    ``run()`` does one step (or one prediction) and returns once it is done;
    ``restore()`` puts parameters and optimizer state back to where timing starts;
    ``weights()`` the current list of (W, b) as NumPy arrays (for the check).
    """

    def run(self):
        raise NotImplementedError

    def restore(self):
        pass

    def weights(self):
        return None


class BpcorePeer(Peer):
    def __init__(self, workload, X, y, predict=False):
        self.model = model = bpcore_model(workload, seed=0)
        self.initial = [(l.W.copy(), l.b.copy()) for l in model.layers]
        if predict:
            predict_fn = model.predict
            self.run = lambda: predict_fn(X)
            return
        loss = bp.MSELoss() if workload.loss == "mse" else bp.CrossEntropyLoss()
        if workload.optimizer == "sgd":
            self.optimizer = bp.SGD(model, lr=workload.lr, momentum=workload.momentum)
        else:
            self.optimizer = bp.Adam(model, lr=workload.lr)
        train_step, optimizer = model.train_step, self.optimizer
        self.run = lambda: train_step(X, y, loss, optimizer)

    def save(self):
        self.saved = [self.model.params.copy()]
        self.saved += [v.copy() for v in self.optimizer.state.values()]
        self.saved_steps = self.optimizer.steps

    def restore(self):
        arrays = [self.model.params, *self.optimizer.state.values()]
        for array, saved in zip(arrays, self.saved):
            np.copyto(array, saved)
        self.optimizer.steps = self.saved_steps

    def weights(self):
        return [(l.W, l.b) for l in self.model.layers]


class NumpyPeer(Peer):
    def __init__(self, workload, X, y, initial, predict=False):
        self.step = step = numpy_step(workload, initial)
        self.run = (lambda: step.forward(X)) if predict else (lambda: step.step(X, y))

    def save(self):
        self.arrays = [self.step.params, *self.step.state.values()]
        self.saved = [a.copy() for a in self.arrays]
        self.saved_steps = self.step.steps

    def restore(self):
        for array, saved in zip(self.arrays, self.saved):
            np.copyto(array, saved)
        self.step.steps = self.saved_steps

    def weights(self):
        return list(zip(self.step.W, self.step.b))


class TorchPeer(Peer):
    def __init__(self, workload, X, y, initial, predict=False):
        import torch
        import torch.nn.functional as F
        dtype = torch.float64 if workload.dtype == np.float64 else torch.float32
        sizes = workload.sizes
        activation = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid,
                      "tanh": torch.nn.Tanh}[workload.activation]
        modules = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            linear = torch.nn.Linear(n_in, n_out, dtype=dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(initial[i][0].T)))
                linear.bias.copy_(torch.from_numpy(initial[i][1]))
            modules.append(linear)
            if i < len(sizes) - 2:
                modules.append(activation())
        self.net = net = torch.nn.Sequential(*modules)
        self.linears = [m for m in modules if isinstance(m, torch.nn.Linear)]
        Xt = torch.from_numpy(X)
        if predict:
            def run():
                with torch.inference_mode():
                    return net(Xt)
            self.run = run
            return
        yt = torch.from_numpy(y)
        if workload.optimizer == "sgd":
            opt = torch.optim.SGD(net.parameters(), lr=workload.lr,
                                  momentum=workload.momentum)
        else:
            opt = torch.optim.Adam(net.parameters(), lr=workload.lr)
        self.opt = opt
        loss_fn = F.mse_loss if workload.loss == "mse" else F.cross_entropy

        def run():
            opt.zero_grad()
            loss = loss_fn(net(Xt), yt)
            loss.backward()
            opt.step()
            return loss.item()
        self.run = run

    def save(self):
        self.saved = [p.detach().clone() for p in self.net.parameters()]
        self.saved_state = {p: {k: (v.clone() if hasattr(v, "clone") else v)
                                for k, v in s.items()} for p, s in self.opt.state.items()}

    def restore(self):
        import torch
        with torch.no_grad():
            for p, saved in zip(self.net.parameters(), self.saved):
                p.copy_(saved)
            for p, state in self.opt.state.items():         # in place: same tensors
                for k, v in state.items():
                    if hasattr(v, "copy_"):
                        v.copy_(self.saved_state[p][k])
                    else:
                        state[k] = self.saved_state[p][k]

    def weights(self):
        return [(l.weight.detach().numpy().T, l.bias.detach().numpy()) for l in self.linears]


class JaxPeer(Peer):
    def __init__(self, workload, X, y, initial, predict=False):
        import jax
        import jax.numpy as jnp
        self.jax, self.jnp = jax, jnp
        n_layers = len(workload.sizes) - 1
        activation = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid,
                      "tanh": jnp.tanh}[workload.activation]

        def forward(params, x):
            for i, (W, b) in enumerate(params):
                x = x @ W + b
                if i < n_layers - 1:
                    x = activation(x)
            return x

        self.initial = [(np.array(W), np.array(b)) for W, b in initial]
        Xj = jnp.asarray(X)
        if predict:
            fwd = jax.jit(forward)
            params = self.put(self.initial)
            self.run = lambda: fwd(params, Xj).block_until_ready()
            return
        yj = jnp.asarray(y)

        def loss_fn(params, x, t):
            out = forward(params, x)
            if workload.loss == "mse":
                return jnp.mean((out - t) ** 2)
            logp = jax.nn.log_softmax(out, axis=1)
            return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=1))

        lr, mom = workload.lr, workload.momentum
        b1, b2, eps = 0.9, 0.999, 1e-8
        adam = workload.optimizer == "adam"

        def step(params, state, x, t):
            value, grads = jax.value_and_grad(loss_fn)(params, x, t)
            if adam:
                m, v, k = state
                k = k + 1
                m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
                v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
                c1, c2 = 1 - b1 ** k, jnp.sqrt(1 - b2 ** k)
                params = jax.tree.map(lambda p, m, v: p - (lr / c1) * m / (jnp.sqrt(v) / c2 + eps),
                                      params, m, v)
                return params, (m, v, k), value
            if mom:
                state = jax.tree.map(lambda s, g: mom * s + g, state, grads)
                grads = state
            params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
            return params, state, value

        self.adam, self.mom, self.dtype = adam, mom, workload.dtype
        jitted = jax.jit(step, donate_argnums=(0, 1))
        self.restore()

        def run():
            self.params, self.state, value = jitted(self.params, self.state, Xj, yj)
            return value.block_until_ready()
        self.run = run

    def put(self, pairs):
        return [(self.jnp.array(W), self.jnp.array(b)) for W, b in pairs]

    def save(self):
        self.initial = [(np.array(W), np.array(b)) for W, b in self.params]
        self.saved_state = self.jax.tree.map(np.array, self.state)

    def restore(self):
        if not hasattr(self, "saved_state"):       # the start: zero state
            zeros = [(np.zeros_like(W), np.zeros_like(b)) for W, b in self.initial]
            if self.adam:
                self.saved_state = (zeros, copy.deepcopy(zeros), np.array(0, self.dtype))
            else:
                self.saved_state = zeros if self.mom else ()
        self.params = self.put(self.initial)
        self.state = self.jax.tree.map(self.jnp.array, self.saved_state)

    def weights(self):
        return [(np.asarray(W), np.asarray(b)) for W, b in self.params]


class SklearnPeer(Peer):
    #: scikit-learn's names of the workloads' activations
    ACTIVATIONS = {"relu": "relu", "sigmoid": "logistic", "tanh": "tanh"}

    def __init__(self, workload, X, y):
        from sklearn.neural_network import MLPClassifier, MLPRegressor
        options = dict(hidden_layer_sizes=workload.sizes[1:-1],
                       activation=self.ACTIVATIONS[workload.activation],
                       solver="adam" if workload.optimizer == "adam" else "sgd",
                       alpha=0.0, batch_size=workload.batch,
                       learning_rate_init=workload.lr, shuffle=False, random_state=0)
        if workload.optimizer == "sgd":
            options.update(momentum=workload.momentum, nesterovs_momentum=False)
        if workload.loss == "mse":
            self.model = MLPRegressor(**options)
            target, extra = y.ravel(), {}
        else:
            self.model = MLPClassifier(**options)
            target, extra = y, {"classes": np.arange(workload.sizes[-1])}
        self.model.partial_fit(X, target, **extra)         # builds weights and state
        self.X, self.target = X, target

    def save(self):
        self.saved = copy.deepcopy(self.model)

    def restore(self):
        model = self.current = copy.deepcopy(self.saved)
        X, target = self.X, self.target
        self.run = lambda: model.partial_fit(X, target)


class MatmulPeer(Peer):
    """The matrix products of the step (or of the forward pass) and nothing else: the
    BLAS calls bpcore's step makes, with its operands' layout and its beta.

    bpcore's arrays are row-major, so each product C = op(A) . op(B) is BLAS's
    column-major C^T = op(B)^T . op(A)^T, and the transposes (``.T``) of C-ordered
    arrays are the Fortran-ordered operands: forward Z = X . W, backward dX = delta . W^T
    (all but the first layer) and X^T . delta, which plain SGD adds into W (alpha
    -lr, beta 1: here into a separate W-shaped buffer, so that the other products keep
    their inputs), SGD with momentum with more than one BLAS thread into its momentum
    buffer (beta = momentum; ``blas_parallel``, None: bpcore's own choice), and the
    other optimizers write to dW (beta 0). Not mirrored, where
    bpcore makes fewer or other calls: its own loops on small products (here BLAS
    takes every product), the copied W^T it multiplies by on small layers, the
    one-unit MSE output layer done in one pass without a product (W1, W1b), and the
    update of SGD with momentum or weight decay at batch sizes up to 4, which forms
    each weight's gradient itself (no dW product)."""

    def __init__(self, workload, predict=False, blas_parallel=None):
        from scipy.linalg import blas
        dtype = np.dtype(workload.dtype)
        gemm = blas.dgemm if dtype == np.float64 else blas.sgemm
        rng = np.random.default_rng(0)
        n, sizes = workload.batch, workload.sizes

        def rows(shape):                    # C-ordered, as bpcore's buffers
            return rng.normal(0, 0.1, shape).astype(dtype)
        acts = [rows((n, w)) for w in sizes]                     # X, then each layer's A
        Ws = [rows((i, o)) for i, o in zip(sizes[:-1], sizes[1:])]
        deltas = [rows((n, o)) for o in sizes[1:]]
        dWs = [rows(W.shape) for W in Ws]
        dXs = [rows((n, i)) for i in sizes[:-1]]
        if blas_parallel is None:
            blas_parallel = bp.threads._blas_parallel()     # as Model.train_step reads it
        fold = workload.optimizer == "sgd" and not workload.momentum
        into_velocity = (workload.optimizer == "sgd" and workload.momentum and blas_parallel
                         and workload.lr != 0)
        alpha, beta = ((-workload.lr, 1.0) if fold else
                       (1.0, workload.momentum) if into_velocity else (1.0, 0.0))
        # (A, B, C, trans A, trans B, alpha, beta) of BLAS's column-major call
        calls = [(Ws[l].T, acts[l].T, acts[l + 1].T, 0, 0, 1.0, 0.0)       # Z = X . W
                 for l in range(len(Ws))]
        if not predict:
            for l in range(len(Ws) - 1, -1, -1):
                if l > 0:                                                   # delta . W^T
                    calls.append((Ws[l].T, deltas[l].T, dXs[l].T, 1, 0, 1.0, 0.0))
                calls.append((deltas[l].T, acts[l].T, dWs[l].T, 0, 1, alpha, beta))
        for a, b, c, ta, tb, alpha_, beta_ in calls:
            # Fortran-ordered operands are passed as they are; the output is checked
            if not (a.flags.f_contiguous and b.flags.f_contiguous) or \
                    gemm(alpha_, a, b, beta_, c, ta, tb, 1) is not c:
                raise RuntimeError("scipy.linalg.blas would copy an operand: not a pure "
                                   "product")
        self.calls = calls
        self.flops = sum(2 * c.shape[0] * c.shape[1] * (a.shape[0] if ta else a.shape[1])
                         for a, b, c, ta, *_ in calls)

        def run():
            for a, b, c, ta, tb, alpha_, beta_ in calls:
                gemm(alpha_, a, b, beta_, c, ta, tb, 1)
        self.run = run


class FitEpochsPeer(Peer):
    """F rows: ``model.fit`` over FIT_EPOCHS epochs of the workload's data, without
    shuffling (the same batches as the bare loop), ``verbose=0``; one run is the
    whole call, set-up included, so the set-up is spread over FIT_EPOCHS epochs."""

    def __init__(self, model, optimizer, loss, X, y, batch):
        self.model, self.optimizer = model, optimizer
        fit = model.fit
        self.run = lambda: fit(X, y, loss=loss, optimizer=optimizer, epochs=FIT_EPOCHS,
                               batch_size=batch, shuffle=False, verbose=0)

    save = BpcorePeer.save
    restore = BpcorePeer.restore


class BareLoopPeer(Peer):
    """F rows: FIT_EPOCHS passes of ``model.train_step`` over the same batches (views
    sliced once), nothing else."""

    def __init__(self, model, optimizer, loss, X, y, batch):
        self.model, self.optimizer = model, optimizer
        batches = [(X[i:i + batch], y[i:i + batch]) for i in range(0, len(X), batch)]
        step = model.train_step

        def run():
            for _ in range(FIT_EPOCHS):
                for Xb, yb in batches:
                    step(Xb, yb, loss, optimizer)
        self.run = run

    save = BpcorePeer.save
    restore = BpcorePeer.restore


def fit_rows():
    """[(label, sizes, dtype, batch, optimizer, lr, X, y)] of the F rows: F1, two
    moons (benches/README.md), and F2, W2's network on 2,560 of its samples."""
    rng = np.random.default_rng(0)
    t = rng.uniform(0, np.pi, 3200)                     # two moons, as scikit-learn draws them
    upper = rng.random(3200) < 0.5
    X = np.where(upper[:, None], np.c_[np.cos(t), np.sin(t)],
                 np.c_[1 - np.cos(t), 0.5 - np.sin(t)]) + rng.normal(0, 0.1, (3200, 2))
    y = upper.astype(np.int64)
    rows = [("F1 fit, two moons", (2, 16, 16, 2), np.float64, 32, "adam", 1e-3, X, y)]
    X2 = rng.random((2560, 784)).astype(np.float32)
    y2 = rng.integers(0, 10, 2560)
    rows.append(("F2 fit, W2 Adam", W2_ADAM.sizes, np.float32, 128, "adam", 1e-3, X2, y2))
    return rows


def fit_overhead(only, rounds, threads):
    """Print the F rows: a ``fit`` epoch against a bare ``train_step`` loop over the
    same batches (target: at most 1.25)."""
    rows = fit_rows()
    if only:
        wanted = [w.strip().lower() for w in only.split(",")]
        rows = [r for r in rows if any(r[0].lower().startswith(w) for w in wanted)]
    if not rows:
        return
    print()
    print("| workload | epochs per run | fit µs per epoch | bare loop µs per epoch "
          "| fit / bare (quartiles) |")
    print("|---|---|---|---|---|")
    for label, sizes, dtype, batch, _opt, lr, X, y in rows:
        peers = {}
        for name, kind in (("fit", FitEpochsPeer), ("bare", BareLoopPeer)):
            layers = [bp.Dense(a, b, "relu") for a, b in zip(sizes[:-2], sizes[1:-1])]
            model = bp.Model(layers + [bp.Dense(sizes[-2], sizes[-1])], dtype=dtype, seed=0)
            optimizer = bp.Adam(model, lr=lr)
            peer = kind(model, optimizer, bp.CrossEntropyLoss(), X.astype(dtype), y, batch)
            peer.run()                       # the first epochs build the workspaces
            peers[name] = peer
        # the gate: both did the same arithmetic on the same batches
        if not np.array_equal(peers["fit"].model.params, peers["bare"].model.params):
            print(f"| {label} | CHECK FAILED: fit and the bare loop trained differently |")
            continue
        for peer in peers.values():
            peer.save()
        samples = interleaved_samples(peers, rounds, threads)
        ratio, low, high = paired_ratio(samples["fit"], samples["bare"])
        fit_us = statistics.median(samples["fit"]) / FIT_EPOCHS
        bare_us = statistics.median(samples["bare"]) / FIT_EPOCHS
        print(f"| {label} | {FIT_EPOCHS} | {fmt_us(fit_us)} | {fmt_us(bare_us)} "
              f"| {ratio:.3f} ({low:.2f}–{high:.2f}) |", flush=True)


def gemm_call_overhead(dtype, calls=1000):
    """µs of one scipy.linalg.blas gemm call on 1x1 operands: the call's own cost."""
    from scipy.linalg import blas
    gemm = blas.dgemm if np.dtype(dtype) == np.float64 else blas.sgemm
    one = np.ones((1, 1), dtype, order="F")
    best = math.inf
    for _ in range(20):
        start = time.perf_counter()
        for _ in range(calls):
            gemm(1.0, one, one, 0.0, one, 0, 0, 1)
        best = min(best, time.perf_counter() - start)
    return best / calls * 1e6


def peak_gemm_rate(dtype, size=1024):
    """FLOP/s of the best of several square gemm calls of ``size``: the machine's GEMM
    limit with the threads in effect (benches/README.md: the GEMM-bound floor of a step is
    its product FLOPs divided by this rate)."""
    from scipy.linalg import blas
    gemm = blas.dgemm if np.dtype(dtype) == np.float64 else blas.sgemm
    rng = np.random.default_rng(0)
    a, b = (np.asfortranarray(rng.normal(size=(size, size)).astype(dtype)) for _ in "ab")
    c = np.asfortranarray(np.zeros((size, size), dtype))
    best = math.inf
    for _ in range(7):
        start = time.perf_counter()
        gemm(1.0, a, b, 0.0, c, 0, 0, 1)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


# float64 rows whose step runs on one thread at any BLAS thread count (every product
# below OpenBLAS's threading threshold, or in bpcore's own loops): compared with one
# core's GEMM rate too
ONE_THREAD_ROWS = ("W1", "W1b step", "W4 sigmoid")


def one_thread_rate(dtype):
    """peak_gemm_rate on one BLAS thread."""
    with one_blas_thread():
        return peak_gemm_rate(dtype)


# ------------------------------------------------------------------------ timing
WARMUP_SECONDS = 0.15        # with threads > 1: untimed steps before every block


def warm_up(peer, seconds):
    """Run the peer's own steps for ``seconds`` from its saved state, untimed (the
    caller restores the state again before timing).

    A library's worker threads keep spinning after its last call before they sleep:
    OpenBLAS's for 2**28 cycles by default (0.11 s measured here), libgomp's and
    XLA's for less. With more than one thread per library, the previous peer's
    spinning workers take the CPUs from the next peer's block: on 2 vCPUs a SciPy
    sgemm on two threads ran 2x slower right after a NumPy matmul on two threads,
    and PyTorch's W2 step read 35-55 ms instead of 2-4 ms. Waiting for those threads
    to go quiet is not enough either: a vCPU left idle for 0.1 s comes back slowly
    (2-thread sgemm blocks 40% slower and twice as spread after a 0.12 s pause).
    So with more than one thread every block follows WARMUP_SECONDS of the same
    peer's steps, longer than any of those spins: the block finds the other
    libraries' workers asleep and its own CPUs busy, as in a training loop. Where
    one step takes longer than WARMUP_SECONDS (W3) that is one more step per block:
    a 2-thread W3 row takes about twice as long."""
    peer.restore()
    run = peer.run                     # (restore may rebind run: read it afterwards)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()


def block_size(peer):
    """Steps per block: about BLOCK_SECONDS of stepping, within BLOCK_STEPS."""
    peer.restore()
    peer.run()
    start = time.perf_counter()
    count = 0
    while count < 3 or time.perf_counter() - start < BLOCK_SECONDS / 4:
        peer.run()
        count += 1
    per_step = (time.perf_counter() - start) / count
    return int(np.clip(round(BLOCK_SECONDS / per_step), *BLOCK_STEPS))


def interleaved_samples(peers, rounds, threads=1, block_sizes=None):
    """{name: [µs per step of each round's block]}, the peers run in turn, round
    after round; with more than one thread every block after ``warm_up`` of its peer.

    ``block_sizes``: {name: steps per block} to use instead of timing each peer's
    (``block_size``); benches/distributed.py passes sizes its MPI ranks agreed on, so
    that every rank runs the same number of collective steps.

    The garbage collector is off for the whole timing, calibration included (as
    ``timeit`` turns it off), after one full collection. A full collection before
    every round, as this script first did, walks every object of a process that has
    PyTorch and JAX loaded, and the steps after it ran slower for a millisecond or
    two (W1 on bpcore: 13 µs per step for the first 60 steps after a collection,
    9.5 µs after 150 steps, 6.5 µs without the collection), which weighed on the
    peers with the shortest blocks."""
    samples = {name: [] for name in peers}
    warm = WARMUP_SECONDS if threads > 1 else 0.0
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        sizes = dict(block_sizes) if block_sizes is not None else {}
        for name, peer in peers.items():
            if name in sizes:
                continue
            if warm:
                warm_up(peer, warm)
            sizes[name] = block_size(peer)
        for _ in range(rounds):
            for name, peer in peers.items():
                if warm:
                    warm_up(peer, warm)
                peer.restore()             # (may rebind run: read it afterwards)
                steps, run = sizes[name], peer.run
                start = time.perf_counter()
                for _ in range(steps):
                    run()
                elapsed = time.perf_counter() - start
                samples[name].append(elapsed / steps * 1e6)
    finally:
        if was_enabled:
            gc.enable()
    return samples


def paired_ratio(numerator, denominator):
    """(median, lower quartile, upper quartile) of the per-round ratios
    numerator[i] / denominator[i] of two peers' blocks timed in the same rounds.

    Both blocks of a round run within the same round (at most about a second apart,
    several seconds for W3 at two threads; bpcore and matmul-only back to back), so a
    slow phase of a shared machine that lasts
    longer than that weighs on both and cancels in their ratio; the ratio of the two
    peers' medians mixes blocks from different rounds. The peers run in the same
    order every round, so what comes from the order does not cancel. The quartiles
    show how far the rounds spread."""
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError("paired_ratio needs two equally long, non-empty series; got "
                         f"{len(numerator)} and {len(denominator)} values")
    ratios = [a / b for a, b in zip(numerator, denominator)]
    if len(ratios) == 1:
        return ratios[0], ratios[0], ratios[0]
    low, middle, high = statistics.quantiles(ratios, n=4, method="inclusive")
    return middle, low, high


# ---------------------------------------------------------------------- workloads
def make_peers(workload, available, predict=False, sklearn=True):
    """{name: peer} of the installed peers, all but scikit-learn from bpcore's start."""
    X, y = workload.data()
    bpcore_peer = BpcorePeer(workload, X, y, predict)
    initial = [(W.copy(), b.copy()) for W, b in bpcore_peer.initial]
    peers = {"bpcore": bpcore_peer, "NumPy": NumpyPeer(workload, X, y, initial, predict)}
    if "PyTorch" in available:
        peers["PyTorch"] = TorchPeer(workload, X, y, initial, predict)
    if "JAX jit" in available:
        peers["JAX jit"] = JaxPeer(workload, X, y, initial, predict)
    if sklearn and "sklearn" in available and not predict and \
            (workload.id == "W1" or workload.id.startswith(("W2", "S-"))):
        peers["sklearn"] = SklearnPeer(workload, X, y)
    return peers


def assert_close_float32(values, weights, peer_values, peer_weights, peer, first_step):
    """The float32 gate: losses element-wise (1e-4); every tensor in relative
    Frobenius norm (1e-3 after the first step, 1e-2 after several), and after the
    first step also element-wise (1e-4 plus 1e-3 of the tensor's largest element)
    with at most one element in a thousand allowed outside.

    An element-wise gate alone fails correct float32 code: two summation orders put
    a pre-activation within rounding of zero on either side of the ReLU now and then
    (W3: about one unit in 4 million per step), which changes one sample's share of
    one bias gradient (~1/batch of it: 4.6 % of one element, seen) and one column of a
    weight gradient; from there the weights drift apart (a 1024-wide W3 bias vector:
    1.2e-3 of its norm after 5 steps). A tie also reaches every unit of the layers
    below through delta . W^T: with two BLAS threads, one ReLU of W3's second layer
    (of 2 million) fell on the other side of zero than in float64 and NumPy, and
    moved 496 of the first layer's 4096 biases by up to 4e-4 of the largest, while
    every product and pass of that step matched a float64 product of its actual
    inputs to float32 rounding; hence 1e-3 of the largest element, not 1e-4. A wrong
    scale, transpose, vector tail or optimizer term moves far more elements, or the
    norm, by far more; and the float64 twin of every float32 workload checks the
    math element-wise to 1e-10.
    """
    np.testing.assert_allclose(np.asarray(peer_values, np.float64),
                               np.asarray(values, np.float64), rtol=1e-4,
                               atol=1e-4 * abs(float(values[0])),
                               err_msg=f"{peer}: loss values of the steps")
    rtol_norm = 1e-3 if first_step else 1e-2
    for i, ((W, b), (peer_W, peer_b)) in enumerate(zip(weights, peer_weights)):
        for name, got, expected in (("W", peer_W, W), ("b", peer_b, b)):
            where = f"{peer}: layers.{i}.{name}"
            expected = np.asarray(expected, np.float64)
            got = np.asarray(got, np.float64)
            error, scale = np.linalg.norm(got - expected), np.linalg.norm(expected)
            if not error <= rtol_norm * scale:
                raise AssertionError(f"{where}: relative norm of the difference "
                                     f"{error / scale:.2e} > {rtol_norm:.0e}")
            if first_step:
                limit = 1e-4 * np.abs(expected) + 1e-3 * np.abs(expected).max()
                outside = int(np.count_nonzero(~(np.abs(got - expected) <= limit)))
                if outside > expected.size // 1000:
                    raise AssertionError(f"{where}: {outside} of {expected.size} elements "
                                         f"differ by more than 1e-4 (allowed: "
                                         f"{expected.size // 1000})")


def check(peers, workload, steps=CHECK_STEPS):
    """{name: reason} of the peers whose training differs from bpcore's.

    Every peer but scikit-learn runs ``steps`` steps (or one prediction) from the
    same start. float64: losses and weights element-wise after the first and the last
    step (``assert_same_training``); float32: ``assert_close_float32`` after both.
    """
    failed = {}
    checked = [name for name in peers if name != "sklearn"]
    if workload is None:                                      # predict rows
        expected = np.asarray(peers["bpcore"].run())
        rtol = 1e-10 if expected.dtype == np.float64 else 1e-4
        for name in checked[1:]:
            try:
                np.testing.assert_allclose(np.asarray(peers[name].run()), expected,
                                           rtol=rtol, atol=rtol * np.abs(expected).max())
            except AssertionError as error:
                failed[name] = f"predict differs from bpcore's: {error}"
        return failed
    float32 = np.dtype(workload.dtype) == np.float32
    runs = {name: [] for name in checked}
    for step in range(steps):
        for name in checked:
            runs[name].append(float(peers[name].run()))
        if step not in (0, steps - 1):
            continue
        snapshot = {name: [(np.array(W), np.array(b)) for W, b in peers[name].weights()]
                    for name in checked}
        for name in checked[1:]:
            if name in failed:
                continue
            try:
                if float32:
                    assert_close_float32(runs["bpcore"], snapshot["bpcore"], runs[name],
                                         snapshot[name], name, first_step=step == 0)
                else:
                    assert_same_training(runs["bpcore"], snapshot["bpcore"], runs[name],
                                         snapshot[name], workload.dtype, peer=name)
            except AssertionError as error:
                failed[name] = f"after {step + 1} step(s): {error}"
    return failed


def build_peers(workload, available, predict=False):
    """({name: peer} ready to time, {name: reason} of the checks that failed).

    The peers are checked against bpcore first on the workload itself, then, for a
    float32 workload, on its float64 twin (the same math to 1e-10: a wrong algorithm
    cannot hide in float32 noise). NumPy differing from bpcore fails bpcore (NumPy is
    the reference): the row is not timed. A PyTorch or JAX peer that differs is left
    out of the row.
    """
    peers = make_peers(workload, available, predict)
    failed = check(peers, None if predict else workload)
    if not predict and np.dtype(workload.dtype) == np.float32:
        twins = make_peers(workload.with_dtype(np.float64), available, sklearn=False)
        for name, reason in check(twins, workload.with_dtype(np.float64)).items():
            failed.setdefault(name, f"float64 twin: {reason}")
        del twins
        gc.collect()
    if "NumPy" in failed:           # bpcore is the one compared: the others say nothing
        return {}, {"bpcore": f"differs from the NumPy step {failed['NumPy']}"}
    for name in failed:
        peers.pop(name, None)
    for peer in peers.values():
        if predict:                     # nothing changes: nothing to restore
            peer.restore = lambda: None
        else:
            peer.save()                 # timing starts from the state after the check
            peer.restore()
    # matmul-only runs right after bpcore in every round: the pair whose ratio the
    # targets read are timed back to back, not several other peers' blocks apart
    peers = {"bpcore": peers.pop("bpcore"), "matmul-only": MatmulPeer(workload, predict),
             **peers}
    return peers, failed


def workload_list(quick, only):
    """[(row label, workload, predict?)] in table order."""
    rows = [("W1", W1, False), ("W1b step", W1B, False), ("W1b predict", W1B, True),
            ("W2 momentum", W2_MOMENTUM, False), ("W2 Adam", W2_ADAM, False)]
    if quick:
        rows.append(("W3 (quick: 1024 wide, batch 256)", w3(1024, 256, "W3-quick"), False))
    else:
        rows.append(("W3", w3(), False))
    rows += [(f"S batch {b}", scaling(b), False) for b in SCALING_BATCHES]
    rows += [("W4 sigmoid", W4, False), ("W5 tanh", W5, False)]
    if only:
        wanted = [w.strip().lower() for w in only.split(",")]
        rows = [r for r in rows if any(r[0].lower().startswith(w) or r[1].id.lower() == w
                                       for w in wanted)]
    return rows


# ------------------------------------------------------------------------ report
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(threads, xla_flags, available):
    lines = [f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
             f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} "
             f"{platform.release()}, Python {platform.python_version()}",
             f"threads: {threads} per library (BLAS and OpenMP via threadpoolctl, "
             f"torch.set_num_threads, XLA_FLAGS and JAX's pool)"]
    versions = [f"bpcore {bp.__version__}", f"numpy {np.__version__}"]
    import scipy
    versions.append(f"scipy {scipy.__version__}")
    for _name, module in available.items():
        versions.append(f"{module.__name__} {module.__version__}")
    lines.append("versions: " + ", ".join(versions))
    forced = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ]
    lines.append("OpenBLAS variables: " + (", ".join(f"{v}={os.environ[v]} (SET: forced "
                                                      "kernel, not the machine's best)"
                                                      for v in forced) or "unset"))
    try:
        import threadpoolctl
        for info in threadpoolctl.threadpool_info():
            path = info.get("filepath", "")        # e.g. numpy.libs/..., scipy.libs/...
            lib = os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))
            lines.append(f"  {info.get('user_api')}: {info.get('internal_api')} "
                         f"{info.get('version')} architecture={info.get('architecture')} "
                         f"num_threads={info.get('num_threads')} ({lib})")
    except ImportError:
        lines.append("  threadpoolctl not installed: BLAS threads NOT pinned")
    if "PyTorch" in available:
        torch = available["PyTorch"]
        backend = next((line.strip() for line in torch.__config__.parallel_info().splitlines()
                        if "Math Kernel Library" in line), "BLAS: see torch.__config__.show()")
        lines.append(f"  PyTorch: {backend}; torch.get_num_threads()={torch.get_num_threads()}")
    if "JAX jit" in available:
        jax = available["JAX jit"]
        lines.append(f"  JAX: XLA CPU backend ({jax.devices()[0]}), XLA_FLAGS={xla_flags!r}")
    return lines


def fmt_us(value):
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def print_table(results, names):
    """The markdown table of ``results``: [(label, {name: [µs per round]}, {name:
    reason it failed its check}, GEMM floor µs)]. Times are medians over rounds;
    ratios are ``paired_ratio`` medians, bpcore/matmul with its quartiles."""
    peers = [n for n in names if n not in ("bpcore", "matmul-only")]
    header = ["workload", "bpcore µs"] + [f"{n} µs (×bpcore)" for n in peers] + \
        ["matmul-only µs", "bpcore/matmul (quartiles)", "GEMM floor µs"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for label, samples, notes, floor in results:
        if "bpcore" not in samples:
            print(f"| {label} | not timed: bpcore failed its check (CHECK FAILED above) |")
            continue
        base = samples["bpcore"]
        cells = [label, fmt_us(statistics.median(base))]
        for name in peers:
            if name in samples:
                ratio = paired_ratio(samples[name], base)[0]
                cells.append(f"{fmt_us(statistics.median(samples[name]))} (×{ratio:.2f})")
            else:
                cells.append("wrong" if name in notes else "-")
        matmul = samples.get("matmul-only")
        if matmul:
            ratio, low, high = paired_ratio(base, matmul)
            cells += [fmt_us(statistics.median(matmul)),
                      f"{ratio:.3f} ({low:.2f}–{high:.2f})"]
        else:
            cells += ["-", "-"]
        cells.append(fmt_us(floor))
        print("| " + " | ".join(cells) + " |")


def plot(series, path, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib): no plot written")
        return
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    markers = dict(zip(PEERS, "os^vDx"))
    for name, points in series.items():
        if not points:
            continue
        batches, times = zip(*sorted(points))
        style = "--" if name == "matmul-only" else "-"
        ax.plot(batches, times, style, marker=markers.get(name, "."), label=name,
                linewidth=2.2 if name == "bpcore" else 1.3)
    ax.set_xscale("log", base=2)
    ticks = sorted({b for points in series.values() for b, _ in points})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("time per training step (µs, median)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot: {path}")


# -------------------------------------------------------------------------- main
def start_jax(threads):
    """Import JAX and start its CPU backend with an intra-op pool of ``threads``.

    XLA_FLAGS cannot size that pool (``--xla_cpu_multi_thread_eigen=false`` leaves it
    at one thread per CPU, and W3's products ran on both CPUs here: CPU time twice
    wall time). XLA sizes it from the CPUs the process may run on when the backend
    starts, so the backend starts with the calling thread held to ``threads`` CPUs;
    every thread of the process is then let back onto all of them.
    """
    import jax
    jax.config.update("jax_enable_x64", True)          # W1, W1b are float64
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if allowed is None or threads >= len(allowed):
        jax.devices()
        return jax
    os.sched_setaffinity(0, sorted(allowed)[:threads])
    try:
        jax.devices()
        jax.numpy.zeros(1).block_until_ready()
    finally:
        for task in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(task), allowed)
            except OSError:
                pass
    return jax


def load_peers(threads):
    """{peer name: module} of the installed peers (imported before pinning threads)."""
    available = {}
    try:
        available["JAX jit"] = start_jax(threads)
    except ImportError:
        pass
    try:
        import torch
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:
            pass
        available["PyTorch"] = torch
    except ImportError:
        pass
    try:
        import sklearn
        import sklearn.neural_network  # noqa: F401  (loads its OpenMP runtime)
        available["sklearn"] = sklearn
    except ImportError:
        pass
    return available


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int,
                        default=int(os.environ.get("BPCORE_BENCH_THREADS", "1")))
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke: W3 at 1024 wide, batch 256, and few rounds")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds per workload (default 30, W3 15; --quick 3)")
    parser.add_argument("--only", default="",
                        help="comma-separated row prefixes or ids, e.g. W1,W2,S")
    parser.add_argument("--plot", default=str(HERE / "scaling.png"),
                        help="PNG of the S series (default: scaling.png beside this "
                             "script); empty for none")
    args = parser.parse_args(argv)

    # XLA reads its flags when JAX starts its backend: set them before importing jax
    # (the intra-op pool's size is set apart: start_jax).
    if args.threads == 1:
        xla = "--xla_cpu_multi_thread_eigen=false"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + xla).strip()
    os.environ.setdefault("XLA_FLAGS", "")
    available = load_peers(args.threads)
    import scipy.linalg.blas  # noqa: F401  (bpcore's BLAS, loaded for pinning)
    limits = None
    try:
        import threadpoolctl
        limits = threadpoolctl.threadpool_limits(limits=args.threads)   # BLAS and OpenMP
    except ImportError:
        pass
    warnings.filterwarnings("ignore", message=".*[Dd]onat.*")   # backends without donation
    warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")

    for line in describe_machine(args.threads, os.environ["XLA_FLAGS"], available):
        print(line)
    print(f"matmul-only: scipy.linalg.blas sgemm/dgemm (SciPy's OpenBLAS, bpcore's), "
          f"bpcore's calls on its row-major operands, overwrite_c; one call costs "
          f"{gemm_call_overhead(np.float64):.2f} µs (dgemm) / "
          f"{gemm_call_overhead(np.float32):.2f} µs (sgemm) on 1x1 operands")
    rates = {np.dtype(t): peak_gemm_rate(t) for t in (np.float64, np.float32)}
    print(f"GEMM limit: {rates[np.dtype(np.float64)] / 1e9:.1f} GFLOP/s dgemm, "
          f"{rates[np.dtype(np.float32)] / 1e9:.1f} GFLOP/s sgemm (1024^3, best of 7); "
          "a row's GEMM floor = its products' FLOPs / that rate")
    one_core = one_thread_rate(np.float64)
    print(f"one-thread GEMM limit: {one_core / 1e9:.1f} GFLOP/s dgemm (1024^3 on one "
          "thread, best of 7): the floor of the steps too small to share (see below)")
    print()

    rows = workload_list(args.quick, args.only)
    one_thread_floors = {}               # label: (product FLOPs, µs at one_core)
    results, series, failures = [], {name: [] for name in PEERS}, 0
    names_seen = ["bpcore", "NumPy"] + [n for n in ("PyTorch", "JAX jit", "sklearn")
                                        if n in available] + ["matmul-only"]
    for label, workload, predict in rows:
        started = time.perf_counter()
        peers, failed = build_peers(workload, available, predict)
        for name, reason in failed.items():
            failures += 1
            lines = [line.strip() for line in reason.splitlines() if line.strip()]
            print(f"CHECK FAILED [{label}] {name}: " + "\n    ".join(lines[:9]))
        rounds = args.rounds or (3 if args.quick else 15 if workload.id.startswith("W3")
                                 else 30)
        samples = interleaved_samples(peers, rounds, args.threads) if peers else {}
        medians = {name: statistics.median(values) for name, values in samples.items()}
        matmul = peers.get("matmul-only")
        floor = (matmul.flops / rates[np.dtype(workload.dtype)] * 1e6 if matmul is not None
                 else None)
        results.append((label, samples, failed, floor))
        if label in ONE_THREAD_ROWS and matmul is not None:
            one_thread_floors[label] = (matmul.flops, matmul.flops / one_core * 1e6)
        if workload.id.startswith("S-"):
            for name, value in medians.items():
                series[name].append((workload.batch, value))
        shown = ", ".join(f"{n} {fmt_us(v)}" for n, v in medians.items())
        print(f"[{label}] {rounds} rounds, {time.perf_counter() - started:.0f} s: {shown}",
              flush=True)
        del peers
        gc.collect()

    if results:
        print()
        print_table(results, names_seen)
        print()
        for label, samples, _failed, _floor in results:
            if label in one_thread_floors and samples.get("bpcore"):
                flops, one_floor = one_thread_floors[label]
                bpcore_us = statistics.median(samples["bpcore"])
                print(f"{label}: bpcore {fmt_us(bpcore_us)} µs = "
                      f"{bpcore_us / one_floor:.2f} × its products' "
                      f"{flops / 1e3:.0f} kFLOP at the one-thread GEMM limit "
                      f"({fmt_us(one_floor)} µs)")
        print()
        print("µs: median time per step (predict rows: per prediction) over interleaved "
              "rounds; ratios: the median over rounds of the two blocks' ratio within a "
              "round; (×bpcore) = peer / bpcore, above 1 means bpcore is faster; "
              "bpcore/matmul = bpcore / matmul-only, with its quartiles over rounds; GEMM "
              "floor = the step's product FLOPs at the rate of a 1024^3 gemm, about what "
              "its arithmetic alone costs; '-' not run, 'wrong' failed its check.")
    if not args.only or any(w.strip().lower().startswith("f")
                            for w in args.only.split(",")):
        fit_overhead(args.only if any(w.strip().lower().startswith("f")
                                      for w in args.only.split(",")) else "",
                     args.rounds or (3 if args.quick else 15), args.threads)
    if args.plot and any(series.values()):
        title = (f"S: {W2_MOMENTUM.sizes} float32, SGD momentum, {args.threads} thread(s)"
                 f"\n{cpu_model()}, {datetime.date.today().isoformat()}")
        plot(series, args.plot, title)
    if limits is not None:
        limits.restore_original_limits()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
