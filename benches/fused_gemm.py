"""Where a layer's product with its epilogue stops being faster in bpcore's own loops.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benches/fused_gemm.py [--rounds N]

(unset the two OPENBLAS_ variables in benchmark commands only: benches/README.md.)

``small_gemm.py`` compares plain products. The training engine's products also carry
an epilogue, and there the comparison is between two routes for the whole of a
layer's pass:

- forward, X . W with the bias and ReLU: the own loops apply them as each block of
  the product is stored (``small_dense_forward``), against BLAS's product followed by
  the bias-activation pass over its output;
- backward, delta . W^T through the derivative of the ReLU layer below and that
  layer's bias gradient: the own loops do it in the store (``small_delta_back``, which
  reads the ReLU's output), against BLAS's product (the faster of the plain transposed
  call and the call on a copy of W^T, the engine's two ways) followed by the delta
  pass.

For each shape (C is m x n, inner dimension k; m is the batch), both routes are timed
through ``bpcore._dense.layer_forward`` / ``layer_delta``, interleaved, on one thread;
the time of a 1 x 1 x 1 call through the same function is subtracted. The last
column says which route the engine takes on this CPU (``takes_fused_loops``), which
``bp_fused_work_limit`` in ``src/_kernels.c`` sets from a run of this script.
"""
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):
    sys.path.insert(0, str(HERE.parent))

from benches.small_gemm import one_blas_thread, one_thread_arguments  # noqa: E402
from bpcore import _dense  # noqa: E402

RELU = 3
# (m, n, k) = (batch, the layer's outputs, its inputs); backward takes W n_in x n_out
# with n_in = n and n_out = k, so both passes of a square layer have the same size
SHAPES = [
    (32, 8, 16), (100, 8, 32), (256, 8, 64), (100, 8, 128),
    (8, 16, 16), (32, 16, 16), (100, 16, 16), (256, 16, 16),
    (5, 24, 48), (12, 24, 24), (100, 24, 24), (256, 24, 32),
    (5, 32, 32), (8, 32, 32), (8, 32, 64), (32, 32, 32), (100, 32, 32), (256, 32, 32),
    (8, 64, 64), (32, 64, 64), (64, 64, 64), (100, 64, 64), (256, 64, 64),
    (64, 10, 128), (128, 10, 128), (32, 128, 128), (100, 128, 128),
]


def timed(call, calls):
    def run():
        start = time.perf_counter()
        for _ in range(calls):
            call()
        return (time.perf_counter() - start) / calls * 1e6
    return run


def forward_calls(m, n, k, dtype, rng):
    X = rng.standard_normal((m, k)).astype(dtype)
    W = rng.standard_normal((k, n)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    A, none = np.empty((m, n), dtype), np.empty((0, n), dtype)
    forward = _dense.layer_forward
    return {path: (lambda path=path: forward(X, W, b, A, none, RELU, 0.0, path))
            for path in ("own", "blas")}


def delta_calls(m, n, k, dtype, rng):
    # W is n x k (n_in x n_out): delta (m x k) . W^T -> m x n, through a ReLU below
    delta = rng.standard_normal((m, k)).astype(dtype)
    W = rng.standard_normal((n, k)).astype(dtype)
    below = np.maximum(rng.standard_normal((m, n)), 0).astype(dtype)
    cache = (below > 0).astype(dtype)
    out, dX, colsum = np.empty((m, n), dtype), np.empty((m, n), dtype), np.empty(n, dtype)
    Wt = np.empty(n * k, dtype)
    layer_delta = _dense.layer_delta
    calls = {"blas-t": lambda: layer_delta(delta, W, cache, out, colsum, False, dX, None,
                                           "blas"),
             "blas-copy": lambda: layer_delta(delta, W, cache, out, colsum, False, dX, Wt,
                                              "blas")}
    def own():
        layer_delta(delta, W, below, out, colsum, True, dX, None, "own")
    try:
        own()                           # refused where W^T is beyond the own scratch
        calls["own"] = own
    except ValueError:
        pass
    return calls


def measure(make, m, n, k, dtype, rounds, rng):
    """Median µs per call of each route, less a 1 x 1 x 1 call's."""
    repeat = max(1, min(20000, int(2e7 // (m * n * k + 2000))))
    runs = {name: timed(call, repeat) for name, call in make(m, n, k, dtype, rng).items()}
    base = timed(make(1, 1, 1, dtype, rng)["blas-t" if "blas-t" in runs else "own"], repeat)
    times = {name: [] for name in runs}
    times["base"] = []
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(run())
        times["base"].append(base())
    b = statistics.median(times.pop("base"))
    return {name: statistics.median(values) - b for name, values in times.items()}


def main(argv=None):
    args = one_thread_arguments(__doc__, argv)
    with one_blas_thread():
        table(args)


def table(args):
    """Print the table: every shape, both passes, both dtypes."""
    rng = np.random.default_rng(0)
    print(f"own-loop limits on this CPU: plain products up to "
          f"{_dense.small_product_limit()} multiply-adds; with an epilogue, up to "
          f"{_dense.fused_product_limit()} where the fused rule applies (0: no further "
          f"than the plain limit; src/_kernels.c, src/_blas.pxd)")
    print("| dtype | pass | m | n | k | m·n·k | own µs | BLAS route µs | own / BLAS | taken |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for dtype in (np.float64, np.float32):
        for name, make, trans_b in (("forward", forward_calls, False),
                                    ("delta", delta_calls, True)):
            for m, n, k in SHAPES:
                t = measure(make, m, n, k, dtype, args.rounds, rng)
                blas = min(v for key, v in t.items() if key.startswith("blas"))
                own = t.get("own")
                taken = "own" if _dense.takes_fused_loops(trans_b, m, n, k) else "BLAS"
                if own is None:
                    own_text = ratio = "-"          # W^T beyond the own loops' scratch
                else:
                    own_text = f"{own:.2f}"
                    ratio = f"{own / blas:.2f}" if blas > 0 else "-"
                print(f"| {np.dtype(dtype).name} | {name} | {m} | {n} | {k} | {m * n * k} "
                      f"| {own_text} | {blas:.2f} | {ratio} | {taken} |", flush=True)


if __name__ == "__main__":
    main()
