"""Where bpcore's own loops for small products stop beating BLAS: the crossover.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benches/small_gemm.py [--rounds N]

(unset the two OPENBLAS_ variables in benchmark commands only: benches/README.md.)

For each product shape (the ones bpcore's layers make: X.W forward, X^T.delta for dW,
delta.W^T for dX) it times ``bpcore._dense.matmul`` through the own loops and through
SciPy's BLAS (the one bpcore links), interleaved, one thread, and prints the median
time of each and their ratio. The time of a 1 x 1 x 1 call (the Python call into
``matmul``, the same for both) is subtracted, so the columns are the products
themselves plus each path's own fixed cost. ``src/_kernels.c`` sets the crossover
(``bp_small_work_limit``) from a run of this script; the last column says which path
``gemm`` takes for that shape on this CPU.
"""
import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):
    sys.path.insert(0, str(HERE.parent))

from bpcore import _dense  # noqa: E402

# (op, m, n, k): op is "NN" (X.W), "TN" (X^T.delta) or "NT" (delta.W^T)
SHAPES = [
    ("NN", 100, 16, 2), ("NN", 100, 16, 16), ("TN", 16, 16, 100), ("NT", 100, 16, 16),
    ("NN", 100, 1, 16), ("TN", 16, 1, 100),
    ("NN", 1, 64, 64), ("NT", 1, 64, 64), ("TN", 64, 64, 1),
    ("NN", 32, 32, 32), ("TN", 32, 32, 32), ("NT", 32, 32, 32),
    ("NN", 64, 32, 32), ("NN", 64, 64, 32), ("TN", 64, 64, 32), ("NT", 64, 64, 32),
    ("NN", 64, 64, 64), ("TN", 64, 64, 64), ("NT", 64, 64, 64),
    ("NN", 128, 64, 64), ("TN", 64, 64, 128),
    ("NN", 128, 10, 128), ("NN", 1, 256, 256), ("NN", 8, 128, 256),
]


def operands(op, m, n, k, dtype, rng):
    trans_a, trans_b = op[0] == "T", op[1] == "T"
    A = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return A, B, np.zeros((m, n), dtype), trans_a, trans_b


def timer(A, B, C, trans_a, trans_b, path, calls):
    matmul = _dense.matmul

    def run():
        start = time.perf_counter()
        for _ in range(calls):
            matmul(A, B, C, trans_a, trans_b, 1.0, 0.0, path)
        return (time.perf_counter() - start) / calls * 1e6
    return run


def measure(op, m, n, k, dtype, rounds, rng):
    A, B, C, ta, tb = operands(op, m, n, k, dtype, rng)
    calls = max(1, min(2000, int(2e6 // (m * n * k + 2000))))
    runs = {path: timer(A, B, C, ta, tb, path, calls) for path in ("own", "blas")}
    one = np.zeros((1, 1), dtype)
    base = timer(one, one, np.zeros((1, 1), dtype), False, False, "own", calls)
    times = {"own": [], "blas": [], "base": []}
    for _ in range(rounds):
        for path, run in runs.items():
            times[path].append(run())
        times["base"].append(base())
    b = statistics.median(times["base"])
    return (statistics.median(times["own"]) - b, statistics.median(times["blas"]) - b)


def one_thread_arguments(doc, argv):
    """The arguments of a one-thread product bench (``--rounds``), parsed."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    return parser.parse_args(argv)


@contextlib.contextmanager
def one_blas_thread():
    """BLAS on one thread (threadpoolctl) inside the block, as it was after it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("threadpoolctl missing: BLAS threads not pinned", file=sys.stderr)
        yield
        return
    with threadpool_limits(1):
        yield


def main(argv=None):
    args = one_thread_arguments(__doc__, argv)
    with one_blas_thread():
        table(args)


def table(args):
    """Print the table: every shape, both dtypes."""
    limit = _dense.small_product_limit()
    rng = np.random.default_rng(0)
    print(f"own-loop limit on this CPU: {limit} multiply-adds (src/_kernels.c)")
    print("| dtype | op | m | n | k | m·n·k | own µs | BLAS µs | BLAS / own | taken |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for dtype in (np.float64, np.float32):
        for op, m, n, k in SHAPES:
            try:
                own, blas = measure(op, m, n, k, dtype, args.rounds, rng)
            except ValueError:          # beyond what the own loops take (B^T copy)
                continue
            ratio = f"{blas / own:.2f}" if own > 0 else "-"
            own_loops = _dense.takes_own_loops(op[0] == "T", op[1] == "T", m, n, k)
            taken = "own" if own_loops else "BLAS"
            print(f"| {np.dtype(dtype).name} | {op} | {m} | {n} | {k} | {m * n * k} "
                  f"| {own:.2f} | {blas:.2f} | {ratio} | {taken} |", flush=True)


if __name__ == "__main__":
    main()
