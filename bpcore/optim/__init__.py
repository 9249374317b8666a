"""Optimizers over the model's flat buffers, their name registry, learning-rate
schedules and gradient clipping."""
from .clipping import clip_grad_norm, clip_grad_value
from .optimizers import (
                         OPTIMIZERS,
                         SGD,
                         Adam,
                         AdamW,
                         Hyperparameters,
                         Optimizer,
                         RMSprop,
                         Rprop,
                         optimizer_by_name,
                         register_optimizer,
)
from .schedules import CosineLR, ExponentialLR, LambdaLR, ReduceLROnPlateau, StepLR

__all__ = ["OPTIMIZERS", "SGD", "Adam", "AdamW", "CosineLR", "ExponentialLR",
           "Hyperparameters", "LambdaLR", "Optimizer", "RMSprop", "ReduceLROnPlateau", "Rprop",
           "StepLR", "clip_grad_norm", "clip_grad_value", "optimizer_by_name",
           "register_optimizer"]
