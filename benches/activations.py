"""T1 / S1 of benches/README.md: one Dense(256, 256) layer's predict, tanh or sigmoid.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benches/activations.py [--rounds N]

(unset the two OPENBLAS_ variables in benchmark commands only: benches/README.md.)

For each activation (tanh, sigmoid) and dtype (float32, float64) it times
``Model.predict`` of a one-layer model at batch 4096 against NumPy on the same
weights: ``X @ W + b`` and then ``np.tanh``, or ``scipy.special.expit`` for sigmoid
(NumPy's ``1 / (1 + np.exp(-z))`` is printed too). The two are interleaved, one BLAS
thread; the script prints, for each, the median over rounds of the mean time per
call in ms, and bpcore's time over NumPy's (below 1: bpcore is faster). It also
prints the same layer with the identity activation, so the cost of the activation
pass itself can be read off.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import expit

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):
    sys.path.insert(0, str(HERE.parent))

import bpcore as bp  # noqa: E402

BATCH, WIDTH = 4096, 256


def numpy_forward(activation):
    """NumPy's forward of the layer: the product, the bias, then the activation."""
    if activation == "tanh":
        return lambda X, W, b: np.tanh(X @ W + b)
    if activation == "sigmoid":
        return lambda X, W, b: expit(X @ W + b)
    if activation == "sigmoid-exp":
        return lambda X, W, b: 1 / (1 + np.exp(-(X @ W + b)))
    return lambda X, W, b: X @ W + b


def mean_ms(run, args, calls):
    """The mean time of run(*args) over calls calls, in ms."""
    start = time.perf_counter()
    for _ in range(calls):
        run(*args)
    return (time.perf_counter() - start) / calls * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--calls", type=int, default=5, help="calls per round")
    args = parser.parse_args(argv)
    try:
        bp.set_blas_threads(1)
    except Exception as error:  # the threads extra may be absent
        print(f"(BLAS threads not set: {error})")
    print(f"Dense({WIDTH}, {WIDTH}) predict at batch {BATCH}, median of {args.rounds} "
          f"rounds of {args.calls} calls, ms")
    print(f"{'activation':<12} {'dtype':<8} {'bpcore':>8} {'numpy':>8} {'ratio':>6}")
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        X = rng.standard_normal((BATCH, WIDTH)).astype(dtype)
        for activation in ("identity", "tanh", "sigmoid", "sigmoid-exp"):
            name = "sigmoid" if activation == "sigmoid-exp" else activation
            model = bp.Model([bp.Dense(WIDTH, WIDTH, name)], seed=0, dtype=dtype)
            W, b = model.layers[0].W.copy(), model.layers[0].b.copy()
            peer = numpy_forward(activation)
            ours = model.predict
            ours(X)
            peer(X, W, b)
            times_ours, times_peer = [], []
            for _ in range(args.rounds):
                times_ours.append(mean_ms(ours, (X,), args.calls))
                times_peer.append(mean_ms(peer, (X, W, b), args.calls))
            mine, theirs = statistics.median(times_ours), statistics.median(times_peer)
            print(f"{activation:<12} {np.dtype(dtype).name:<8} {mine:8.2f} {theirs:8.2f} "
                  f"{mine / theirs:6.2f}")


if __name__ == "__main__":
    main()
