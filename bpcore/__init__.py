"""bpcore: exact, fast backpropagation for dense neural networks.

A Cython core over flat numpy buffers (forward, derivative caches, backward, fused
optimizer updates, all without the GIL) behind a small Python API.
"""
from . import datasets
from .checkpoint import Checkpoint, CheckpointError, load, load_checkpoint
from .gradcheck import GradCheckResult, gradcheck
from .layers import ACTIVATIONS, Dense
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss
from .model import Model
from .optim import SGD, Adam, Optimizer, clip_grad_norm

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "Adam",
    "BCEWithLogitsLoss",
    "Checkpoint",
    "CheckpointError",
    "CrossEntropyLoss",
    "Dense",
    "GradCheckResult",
    "Loss",
    "MSELoss",
    "Model",
    "Optimizer",
    "SGD",
    "clip_grad_norm",
    "gradcheck",
    "load",
    "load_checkpoint",
]
