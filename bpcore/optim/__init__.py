"""Optimizers over the model's flat buffers, their name registry, learning-rate
schedules, gradient clipping, and ``minimize`` (SciPy's optimizers over the flat
parameter buffer)."""
from .clipping import clip_grad_norm, clip_grad_value
from .minimize import GRADIENT_FREE_METHODS, GRADIENT_METHODS, minimize
from .optimizers import (
                         OPTIMIZERS,
                         SGD,
                         Adam,
                         AdamW,
                         Hyperparameters,
                         Optimizer,
                         RMSprop,
                         Rprop,
                         TrainingDiverged,
                         optimizer_by_name,
                         register_optimizer,
)
from .schedules import CosineLR, ExponentialLR, LambdaLR, ReduceLROnPlateau, StepLR

__all__ = ["GRADIENT_FREE_METHODS", "GRADIENT_METHODS", "OPTIMIZERS", "SGD", "Adam", "AdamW",
           "CosineLR", "ExponentialLR", "Hyperparameters", "LambdaLR", "Optimizer", "RMSprop",
           "ReduceLROnPlateau", "Rprop", "StepLR", "TrainingDiverged", "clip_grad_norm",
           "clip_grad_value", "minimize", "optimizer_by_name", "register_optimizer"]
