"""The workloads of benches/README.md, their data, and both implementations' steps.

Every bench and check builds its data here with a fixed seed, so bpcore and the
NumPy peer see the same arrays and start from the same weights.
"""
from dataclasses import dataclass

import numpy as np

import bpcore as bp

from .numpy_step import NumpyStep


@dataclass(frozen=True)
class Workload:
    """One row of benches/README.md's table: network, precision, batch, loss, optimizer,
    and the activation of every hidden layer (``activation``: "relu", "sigmoid" or
    "tanh"; the output layer is linear)."""

    id: str
    sizes: tuple
    dtype: type
    batch: int
    loss: str              # "mse" or "cross_entropy"
    optimizer: str         # "sgd" or "adam"
    lr: float
    momentum: float = 0.0
    activation: str = "relu"

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
        """The same workload in ``dtype``, its id suffixed with the dtype's name."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields.update(id=f"{self.id}-{np.dtype(dtype).name}", dtype=dtype)
        return Workload(**fields)


W1 = Workload("W1", (2, 16, 16, 1), np.float64, 100, "mse", "sgd", lr=0.01)
W1B = Workload("W1b", (2, 64, 64, 1), np.float64, 1, "mse", "sgd", lr=0.01)
W2 = dict(sizes=(784, 256, 128, 10), dtype=np.float32, loss="cross_entropy")
W2_MOMENTUM = Workload("W2-momentum", batch=128, optimizer="sgd", lr=0.01, momentum=0.9, **W2)
W2_ADAM = Workload("W2-adam", batch=128, optimizer="adam", lr=1e-3, **W2)
# W4: W1 with the tutorials' sigmoid; W5: a digits-sized tanh network (8x8 pixels in
# [0, 1), ten classes)
W4 = Workload("W4", (2, 16, 16, 1), np.float64, 100, "mse", "sgd", lr=0.01,
              activation="sigmoid")
W5 = Workload("W5", (64, 128, 10), np.float32, 64, "cross_entropy", "adam", lr=1e-3,
              activation="tanh")
SCALING_BATCHES = (1, 8, 32, 128, 512, 2048)


def w3(width=4096, batch=512, id="W3"):
    """W3: width-width-width-10 ReLU, float32, softmax cross-entropy, plain SGD.

    benches/README.md's W3 is the default (4096 wide, batch 512); smaller widths and
    batches make the same shape of work for smoke runs.
    """
    return Workload(id, (width, width, width, 10), np.float32, batch, "cross_entropy",
                    "sgd", lr=0.01)


def scaling(batch):
    """S at one batch size: W2's network and data, SGD momentum 0.9."""
    return Workload(f"S-{batch}", batch=batch, optimizer="sgd", lr=0.01, momentum=0.9, **W2)


# The benches and checks of test_steps.py: every workload at a size CI can smoke-run.
WORKLOADS = {w.id: w for w in (W1, W1B, W2_MOMENTUM, W2_ADAM,
                               w3(512, 128, "W3-smoke"), scaling(1), scaling(128), W4, W5)}


def bpcore_model(workload, seed=0):
    """The workload's bpcore ``Model``: hidden ``Dense`` layers with its activation,
    a linear output layer, bpcore's initialisation from ``seed``."""
    sizes = workload.sizes
    layers = [bp.Dense(i, o, workload.activation) for i, o in zip(sizes[:-2], sizes[1:-1])]
    layers.append(bp.Dense(sizes[-2], sizes[-1]))
    return bp.Model(layers, dtype=workload.dtype, seed=seed)


def bpcore_step(workload, seed=0, fused=False):
    """Return (model, optimizer, step) where step(X, y) is one bpcore training step.

    The step is ``model.loss_and_grad`` then ``optimizer.step()`` (the two-call path),
    or ``model.train_step`` (one fused call) when ``fused``.
    """
    model = bpcore_model(workload, seed)
    loss = bp.MSELoss() if workload.loss == "mse" else bp.CrossEntropyLoss()
    if workload.optimizer == "sgd":
        optimizer = bp.SGD(model, lr=workload.lr, momentum=workload.momentum)
    else:
        optimizer = bp.Adam(model, lr=workload.lr)
    if fused:
        train_step = model.train_step

        def step(X, y):
            return train_step(X, y, loss, optimizer)

        return model, optimizer, step
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
                     momentum=workload.momentum, weights=weights,
                     activation=workload.activation)


def assert_same_training(values, weights, peer_values, peer_weights, dtype, peer="peer"):
    """Raise AssertionError unless a peer's losses and final weights match bpcore's.

    ``values``: the loss of every step; ``weights``: the final list of (W, b).
    Both sum in different orders (different BLAS builds, kernels, fusion), so a value
    that ends near zero through cancellation (a bias, or the loss of a memorised
    batch) differs by ~eps of its tensor's scale, not of itself; the gate is relative
    (1e-10 in float64, 1e-4 in float32) plus that much of the scale: the largest
    element of the tensor, or the first step's loss.
    """
    rtol = 1e-10 if np.dtype(dtype) == np.float64 else 1e-4
    np.testing.assert_allclose(np.asarray(peer_values, np.float64),
                               np.asarray(values, np.float64), rtol=rtol,
                               atol=rtol * abs(float(values[0])),
                               err_msg=f"{peer}: loss values of the steps")
    for i, ((W, b), (peer_W, peer_b)) in enumerate(zip(weights, peer_weights)):
        for name, got, expected in (("W", peer_W, W), ("b", peer_b, b)):
            expected = np.asarray(expected)
            np.testing.assert_allclose(np.asarray(got), expected, rtol=rtol,
                                       atol=rtol * float(np.abs(expected).max()),
                                       err_msg=f"{peer}: layers.{i}.{name}")
