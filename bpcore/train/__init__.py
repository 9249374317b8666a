"""Training: ``fit``/``partial_fit``/``evaluate``, callbacks, metrics, the progress
bar and the divergence guard."""
from ..optim import TrainingDiverged
from .callbacks import (
                        Callback,
                        EarlyStopping,
                        LambdaCallback,
                        LearningRateScheduler,
                        ModelCheckpoint,
)
from .loop import History, evaluate, fit, partial_fit

__all__ = ["Callback", "EarlyStopping", "History", "LambdaCallback", "LearningRateScheduler",
           "ModelCheckpoint", "TrainingDiverged", "evaluate", "fit", "partial_fit"]
