"""bpcore: exact, fast backpropagation for dense neural networks.

A Cython core over flat numpy buffers (forward, derivative caches, backward, fused
optimizer updates, all without the GIL) behind a small Python API.
"""
from . import datasets  # noqa: F401  (bp.datasets.moons, ...)
from .callbacks import (Callback, EarlyStopping, LambdaCallback, LearningRateScheduler,
                        ModelCheckpoint)
from .checkpoint import Checkpoint, CheckpointError, load, load_checkpoint
from .gradcheck import GradCheckResult, gradcheck
from .layers import ACTIVATIONS, Dense
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss
from .model import Model
from .optim import (SGD, Adam, AdamW, Optimizer, RMSprop, Rprop, clip_grad_norm,
                    clip_grad_value)
from .schedules import CosineLR, ExponentialLR, LambdaLR, ReduceLROnPlateau, StepLR
from .threads import blas_threads, set_blas_threads
from .training import History, TrainingDiverged

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "Adam",
    "AdamW",
    "BCEWithLogitsLoss",
    "Callback",
    "Checkpoint",
    "CheckpointError",
    "CosineLR",
    "CrossEntropyLoss",
    "Dense",
    "EarlyStopping",
    "ExponentialLR",
    "GradCheckResult",
    "History",
    "LambdaCallback",
    "LambdaLR",
    "LearningRateScheduler",
    "Loss",
    "MSELoss",
    "Model",
    "ModelCheckpoint",
    "Optimizer",
    "RMSprop",
    "ReduceLROnPlateau",
    "Rprop",
    "SGD",
    "StepLR",
    "TrainingDiverged",
    "blas_threads",
    "clip_grad_norm",
    "clip_grad_value",
    "gradcheck",
    "load",
    "load_checkpoint",
    "set_blas_threads",
]
