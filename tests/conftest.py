import numpy as np
import pytest


ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "scaled_sigmoid"]


def layer_dicts(model):
    """The model's layers as plain dicts of copies (for the NumPy reference)."""
    return [{"W": l.W.copy(), "b": l.b.copy(), "c": None if l.c is None else l.c.copy(),
             "activation": l.activation} for l in model.layers]


def randomize(model, rng, c_spread=True):
    """Give every parameter a non-trivial value (biases and scales included)."""
    for layer in model.layers:
        layer.W[...] = rng.normal(0, 0.7, layer.W.shape)
        layer.b[...] = rng.normal(0, 0.3, layer.b.shape)
        if layer.c is not None:
            layer.c[...] = rng.uniform(0.5, 1.5, layer.c.shape) if c_spread else 1.0


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
