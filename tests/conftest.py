"""Shared fixtures, and a guard: the suite tests a built bpcore, never the bare source.

At the repository root after a plain ``pip install .`` (not editable), ``python -m
pytest`` puts the root on ``sys.path``, and ``import bpcore`` would find the source
folder, which has no compiled modules. Then the installed package is tested instead;
when there is none, the run stops with what to do.
"""
import importlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _is_root(entry):
    try:
        return Path(entry or os.getcwd()).resolve() == ROOT
    except OSError:
        return False


def _import_built_bpcore():
    try:
        importlib.import_module("bpcore._engine")
        return
    except ImportError as error:
        reason = error
    for name in [m for m in sys.modules if m == "bpcore" or m.startswith("bpcore.")]:
        del sys.modules[name]
    kept = [entry for entry in sys.path if not _is_root(entry)]
    if len(kept) != len(sys.path):
        sys.path[:] = kept
        try:
            importlib.import_module("bpcore._engine")
            return
        except ImportError as error:
            reason = error
    pytest.exit(f"bpcore cannot be imported with its compiled modules ({reason}). Build it in "
                'place with `pip install -e ".[test]"`, or install it (`pip install .`) and '
                "run pytest again.", returncode=4)


_import_built_bpcore()

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
