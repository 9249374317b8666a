"""bpcore: exact, fast backpropagation for dense neural networks.

A Cython core over flat numpy buffers (forward, derivative caches, backward, fused
optimizer updates, all without the GIL) behind a small Python API.
"""
from importlib.metadata import version as _version

from . import datasets  # noqa: F401  (bp.datasets.moons, ...)
from ._build_info import build_info
from .checkpoint import Checkpoint, CheckpointError, load, load_checkpoint
from .gradcheck import GradCheckResult, gradcheck
from .nn import (
                 ACTIVATIONS,
                 BCEWithLogitsLoss,
                 CrossEntropyLoss,
                 Dense,
                 Loss,
                 Model,
                 MSELoss,
                 PoissonLoss,
)
from .optim import (
                    SGD,
                    Adam,
                    AdamW,
                    CosineLR,
                    ExponentialLR,
                    LambdaLR,
                    Optimizer,
                    ReduceLROnPlateau,
                    RMSprop,
                    Rprop,
                    StepLR,
                    clip_grad_norm,
                    clip_grad_value,
                    minimize,
                    register_optimizer,
)
from .threads import blas_threads, set_blas_threads
from .train import (
                    Callback,
                    EarlyStopping,
                    History,
                    LambdaCallback,
                    LearningRateScheduler,
                    ModelCheckpoint,
                    TrainingDiverged,
)

#: the installed distribution's version (pyproject.toml is its one source)
__version__ = _version("bpcore")

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
    "PoissonLoss",
    "RMSprop",
    "ReduceLROnPlateau",
    "Rprop",
    "SGD",
    "StepLR",
    "TrainingDiverged",
    "blas_threads",
    "build_info",
    "clip_grad_norm",
    "clip_grad_value",
    "get_include",
    "gradcheck",
    "load",
    "load_checkpoint",
    "minimize",
    "register_optimizer",
    "set_blas_threads",
]


def get_include() -> str:
    """The directory to put on Cython's include path (``cythonize(...,
    include_path=[bpcore.get_include()])``) for ``from bpcore.kernels cimport ...``.

    It holds ``bpcore/kernels.pxd``, the stable declarations of bpcore's nogil kernels
    (Adam, SGD, a dense layer's forward) for other Cython extensions; they are
    resolved when the extension is imported, without linking against bpcore. See
    ``docs/interop.md``.
    """
    import os
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")
