"""The workloads of BENCHMARKS.md, their data, and both implementations' steps.

Every bench and check builds its data here with a fixed seed, so bpcore and the
NumPy peer see the same arrays and start from the same weights.
"""
from dataclasses import dataclass

import numpy as np

import bpcore as bp

from .numpy_step import NumpyStep


@dataclass(frozen=True)
class Workload:
    """One row of BENCHMARKS.md's table: network, precision, batch, loss, optimizer."""

    id: str
    sizes: tuple
    dtype: type
    batch: int
    loss: str              # "mse" or "cross_entropy"
    optimizer: str         # "sgd" or "adam"
    lr: float
    momentum: float = 0.0

    def data(self, seed=0):
        """(X, y) of the workload: float targets (batch, 1) for MSE, labels for CE."""
        rng = np.random.default_rng(seed)
        if self.loss == "mse":
            X = rng.normal(size=(self.batch, self.sizes[0]))
            y = np.sin(2 * X[:, :1]) + X[:, 1:2] ** 2 - 1   # a smooth 2-D regression target
            return X.astype(self.dtype), y.astype(self.dtype)
        X = rng.random((self.batch, self.sizes[0]))          # pixel-like values in [0, 1)
        y = rng.integers(0, self.sizes[-1], self.batch)
        return X.astype(self.dtype), y

    def with_dtype(self, dtype):
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields.update(id=f"{self.id}-{np.dtype(dtype).name}", dtype=dtype)
        return Workload(**fields)


W2 = dict(sizes=(784, 256, 128, 10), dtype=np.float32, batch=128, loss="cross_entropy")
WORKLOADS = {
    "W1": Workload("W1", (2, 16, 16, 1), np.float64, 100, "mse", "sgd", lr=0.01),
    "W2-momentum": Workload("W2-momentum", optimizer="sgd", lr=0.01, momentum=0.9, **W2),
    "W2-adam": Workload("W2-adam", optimizer="adam", lr=1e-3, **W2),
}


def bpcore_step(workload, seed=0):
    """Return (model, optimizer, step) where step(X, y) is one bpcore training step."""
    sizes = workload.sizes
    layers = [bp.Dense(i, o, "relu") for i, o in zip(sizes[:-2], sizes[1:-1])]
    layers.append(bp.Dense(sizes[-2], sizes[-1]))
    model = bp.Model(layers, dtype=workload.dtype, seed=seed)
    loss = bp.MSELoss() if workload.loss == "mse" else bp.CrossEntropyLoss()
    if workload.optimizer == "sgd":
        optimizer = bp.SGD(model, lr=workload.lr, momentum=workload.momentum)
    else:
        optimizer = bp.Adam(model, lr=workload.lr)
    loss_and_grad, update = model.loss_and_grad, optimizer.step

    def step(X, y):
        value, _ = loss_and_grad(X, y, loss)
        update()
        return value

    return model, optimizer, step


def numpy_step(workload, weights):
    """Return the NumPy peer started from ``weights`` (a list of (W, b))."""
    return NumpyStep(workload.sizes, workload.batch, dtype=workload.dtype,
                     loss=workload.loss, optimizer=workload.optimizer, lr=workload.lr,
                     momentum=workload.momentum, weights=weights)
