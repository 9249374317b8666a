# Type names for bpcore's annotations. A stub-only module (there is no _typing.py), as
# typeshed's _typeshed: import it under ``if TYPE_CHECKING:`` only.
#
# It names classes of every layer: a module below a class's layer (docs/design.md)
# names that class in its annotations through here. A stub runs nothing, so the code's
# imports keep their one direction. The aliases users may want at run time are defined
# where they belong and re-exported here: Activation in nn/layers.py, the loss names
# and types in nn/losses.py, the metric names and type in train/metrics.py.
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from .nn.layers import Activation as Activation
from .nn.layers import Dense as Dense
from .nn.losses import Loss as Loss
from .nn.losses import LossFunction as LossFunction
from .nn.losses import LossLike as LossLike
from .nn.losses import LossName as LossName
from .nn.losses import Reduction as Reduction
from .nn.model import Model as Model
from .optim.optimizers import Optimizer as Optimizer
from .train.callbacks import Callback as Callback
from .train.loop import History as History
from .train.loop import Trainer as Trainer
from .train.metrics import MetricFunction as MetricFunction
from .train.metrics import MetricName as MetricName

#: a float32 or float64 array: parameters, gradients, outputs, workspaces
FloatArray: TypeAlias = npt.NDArray[np.floating[Any]]

#: one epoch's (or batch's) logs: ``{"loss": ..., "val_loss": ..., "lr": ...}``
Logs: TypeAlias = dict[str, float]

#: a plain callback ``fn(epoch, logs)`` (or ``fn(batch, logs)``); a truthy result stops
#: training
LogsFunction: TypeAlias = Callable[[int, Logs], object]

#: what seeds a generator: an integer >= 0, a numpy Generator, or None (fresh entropy)
Seed: TypeAlias = int | np.integer[Any] | np.random.Generator | None

#: ``fit``'s validation_data: (X_val, y_val) or (X_val, y_val, sample_weight_val)
ValidationData: TypeAlias = (tuple[npt.ArrayLike, npt.ArrayLike]
                             | tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike | None])

#: ``fit``'s class_weight: {class label: weight} or "balanced"
ClassWeight: TypeAlias = Mapping[Any, float] | Literal["balanced"]
