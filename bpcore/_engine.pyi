# Stub of src/_engine.pyx (with src/_train_step.pxi): the fused training step's engine,
# Model.train_step's fast path and the FusedStep it runs, and predict's forward pass.
# Arrays are C-contiguous float32 or float64 ndarrays (one dtype per engine); ``run``
# takes anything and returns None for what it cannot use as it is.
from collections.abc import Sequence

import numpy.typing as npt

from ._typing import FloatArray, Loss, LossFunction, Model, Optimizer, Reduction
from .nn.plan import LayerPlan, StepPlan

#: loss name -> the kernel's loss code
LOSS_KINDS: dict[str, int]
#: optimizer name -> the kernel's update code
OPTIMIZER_KINDS: dict[str, int]
#: flags of Engine.run: keep every gradient; guard the update (keeps them too)
KEEP_GRADS: int
GUARD: int
#: Engine.status: the update taken; left out (GUARD) for a non-finite loss or
#: gradient; left out because it might overflow
STEP_TAKEN: int
STEP_NONFINITE: int
STEP_UNSAFE: int

class Busy:
    """Who is using one model: the thread training it and the predict calls running."""

    @property
    def readers(self) -> int: ...
    @property
    def trainer(self) -> str | None: ...
    def __init__(self) -> None: ...
    def training(self, what: str) -> Busy: ...
    def __enter__(self) -> Busy: ...
    def __exit__(self, *exc: object) -> None: ...

class Predictor:
    """Model.predict's fast path for one batch size."""

    @property
    def keep(self) -> tuple[LayerPlan, ...]: ...
    @property
    def spares(self) -> int: ...
    def __init__(self, layers: tuple[LayerPlan, ...], n: int, single: bool,
                 busy: Busy | None = None) -> None: ...
    def overlaps(self, array: object) -> bool: ...
    def run(self, X: object) -> FloatArray | None: ...

class Scalars:
    """The optimizer's numbers the fused step reads, as C fields."""

    steps: int
    lr: float
    momentum: float
    weight_decay: float
    beta1: float
    beta2: float
    eps: float
    nesterov: bool
    def __init__(self) -> None: ...

class Engine:
    """The fused training step of one StepPlan."""

    @property
    def plan(self) -> StepPlan: ...
    @property
    def state(self) -> tuple[FloatArray, ...]: ...
    @property
    def blas_parallel(self) -> bool: ...
    @property
    def fused_update(self) -> bool: ...
    @property
    def status(self) -> int: ...
    def __init__(self, plan: StepPlan) -> None: ...
    def overlaps(self, array: object) -> bool: ...
    def run(self, X: object, target: object, flags: int = 0) -> float | None: ...

# four 2-D arrays of one shape and one dtype (float32 or float64)
def _adam_shared_rows(params: FloatArray, grads: FloatArray, exp_avg: FloatArray,
                      exp_avg_sq: FloatArray, step_size: float,
                      beta1: float, beta2: float, eps: float, l2: float,
                      inv_root_bc2: float) -> tuple[int, int]: ...

class FusedStep:
    """A fused engine with the loss, optimizer and state buffers it was planned for."""

    @property
    def engine(self) -> Engine: ...
    @property
    def loss(self) -> Loss: ...
    @property
    def optimizer(self) -> Optimizer: ...
    @property
    def reduction(self) -> Reduction: ...
    @property
    def state_names(self) -> tuple[str, ...]: ...
    @property
    def state(self) -> tuple[FloatArray, ...]: ...
    @property
    def has_dropout(self) -> bool: ...
    @property
    def fused_update(self) -> bool: ...
    @property
    def busy(self) -> Busy: ...
    def __init__(self, engine: Engine, loss: Loss, optimizer: Optimizer,
                 state_names: tuple[str, ...], has_dropout: bool, busy: Busy) -> None: ...
    def current(self, optimizer_buffers: Sequence[FloatArray]) -> bool: ...

# bound as the method Model.train_step
def train_step(self: Model, X: npt.ArrayLike, target: npt.ArrayLike,
               loss: Loss | LossFunction, optimizer: Optimizer,
               keep_grads: bool = False) -> float: ...

# bound as Model._guarded_step (fit's step)
def guarded_step(self: Model, X: npt.ArrayLike, target: npt.ArrayLike,
                 loss: Loss | LossFunction, optimizer: Optimizer) -> float | None: ...
