"""Shared by the MPI workers (run under mpiexec by tests/test_distributed.py)."""
import sys

import numpy as np

import bpcore as bp
from bpcore import distributed as dist

RANK, SIZE = dist.rank(), dist.size()
# a mismatched mpiexec starts two single-rank processes instead of one run of two
assert SIZE == 2, f"the MPI worker needs 2 ranks; this communicator has {SIZE}"


def model(seed, activation="tanh", n_in=3, n_out=3, dtype=np.float64):
    """A small model; its weights depend on ``seed`` (each rank starts differently)."""
    return bp.Model([bp.Dense(n_in, 8, activation), bp.Dense(8, 6, activation),
                     bp.Dense(6, n_out)], dtype=dtype, seed=seed)


def same_on_every_rank(array):
    """True when every rank holds exactly these values."""
    gathered = dist.allgather(np.array(array, copy=True))
    return all(np.array_equal(gathered[0], other) for other in gathered)


def close(a, b, tol=1e-12):
    """Relative to the larger magnitude, as the issue's 1e-12 means."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b))))) <= tol


def done():
    print(f"OK rank {RANK}", flush=True)
    sys.stdout.flush()
