"""Training: ``fit``/``partial_fit``/``evaluate``, callbacks, metrics, the progress
bar and the divergence guard."""
from .callbacks import (
                        Callback,
                        EarlyStopping,
                        LambdaCallback,
                        LearningRateScheduler,
                        ModelCheckpoint,
)
from .guard import TrainingDiverged
from .loop import History, evaluate, fit, partial_fit

__all__ = ["Callback", "EarlyStopping", "History", "LambdaCallback", "LearningRateScheduler",
           "ModelCheckpoint", "TrainingDiverged", "evaluate", "fit", "partial_fit"]
