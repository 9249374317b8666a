"""The network: ``Dense`` layers, losses, and the ``Model`` that owns the flat
parameter and gradient buffers (``fused`` decides what the fused step takes)."""
from .layers import ACTIVATIONS, Dense
from .losses import LOSSES, BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss, PoissonLoss
from .model import Model

__all__ = ["ACTIVATIONS", "LOSSES", "BCEWithLogitsLoss", "CrossEntropyLoss", "Dense", "Loss",
           "MSELoss", "Model", "PoissonLoss"]
