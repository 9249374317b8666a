"""Small generated data sets for demos, tests and the command line (no downloads).

Each function returns ``(X, y)`` with X float64 of shape (n_samples, 2) — or (n, 1)
for ``sine`` — and is reproducible from ``seed``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _validation

if TYPE_CHECKING:
    from ._typing import Seed

#: the labels of a classification set: 0, 1, ... as int64
Labels = npt.NDArray[np.int64]


def _prepare(n_samples: int, noise: float, seed: Seed) -> tuple[int, float, np.random.Generator]:
    n = _validation.positive_int(n_samples, "n_samples")
    noise = _validation.real(noise, "noise", low=0.0)
    return n, noise, np.random.default_rng(seed)


def moons(n_samples: int = 200, noise: float = 0.1,
          seed: Seed = 0) -> tuple[npt.NDArray[np.float64], Labels]:
    """Two interleaving half circles (micrograd's demo task); y is 0/1 labels."""
    n, noise, rng = _prepare(n_samples, noise, seed)
    n0 = n // 2
    upper = np.linspace(0, np.pi, n0)
    lower = np.linspace(0, np.pi, n - n0)
    X = np.concatenate([np.c_[np.cos(upper), np.sin(upper)],
                        np.c_[1 - np.cos(lower), 0.5 - np.sin(lower)]])
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n - n0, np.int64)])
    X += rng.normal(0, noise, X.shape)
    order = rng.permutation(n)
    return X[order], y[order]


def spirals(n_samples: int = 300, n_classes: int = 3, noise: float = 0.2,
            seed: Seed = 0) -> tuple[npt.NDArray[np.float64], Labels]:
    """``n_classes`` interleaved spiral arms (cs231n's toy set); y is integer labels."""
    n, noise, rng = _prepare(n_samples, noise, seed)
    k = _validation.positive_int(n_classes, "n_classes")
    labels = np.arange(n) % k
    radius = np.empty(n)
    theta = np.empty(n)
    for c in range(k):
        idx = np.flatnonzero(labels == c)
        radius[idx] = np.linspace(0.0, 1.0, idx.size)
        theta[idx] = np.linspace(c * 4.0, (c + 1) * 4.0, idx.size) + rng.normal(0, noise, idx.size)
    X = np.c_[radius * np.sin(theta), radius * np.cos(theta)]
    order = rng.permutation(n)
    return X[order], labels[order].astype(np.int64)


def xor(n_samples: int = 200, noise: float = 0.1,
        seed: Seed = 0) -> tuple[npt.NDArray[np.float64], Labels]:
    """Points around the four corners of the unit square; y = x0 XOR x1 (0/1 labels)."""
    n, noise, rng = _prepare(n_samples, noise, seed)
    corners = rng.integers(0, 2, size=(n, 2))
    X = corners + rng.normal(0, noise, (n, 2))
    return X, (corners[:, 0] ^ corners[:, 1]).astype(np.int64)


def sine(n_samples: int = 200, noise: float = 0.05,
         seed: Seed = 0) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """y = sin(x) + noise for x uniform in [-pi, pi]; a regression set, y of shape (n, 1)."""
    n, noise, rng = _prepare(n_samples, noise, seed)
    x = rng.uniform(-np.pi, np.pi, size=(n, 1))
    return x, np.sin(x) + rng.normal(0, noise, (n, 1))


#: the data sets by name, as the command line offers them
DATASETS: dict[str, Callable[..., tuple[npt.NDArray[np.float64], npt.NDArray[Any]]]] = {
    "moons": moons, "spirals": spirals, "xor": xor, "sine": sine}
