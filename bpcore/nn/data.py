"""Checks shared by everything that trains on a data set (``fit``, ``evaluate``,
``bpcore.optim.minimize``): the loss argument resolved, and (X, y, sample_weight)
validated against a model and its loss before anything is written."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .. import _validation
from .losses import LOSSES, Loss, LossFunction, LossLike

if TYPE_CHECKING:
    from .._typing import FloatArray, Model


def resolve_loss(loss: LossLike) -> Loss | LossFunction:
    """The loss a ``loss=`` argument names: a new instance for a name of ``LOSSES``, a
    bpcore ``Loss`` or a callable as given; TypeError/ValueError for anything else."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, a Loss or a callable; "
                             f"got {loss!r}")
        return LOSSES[loss]()
    if isinstance(loss, Loss) or callable(loss):
        return loss
    raise TypeError(f"loss must be a loss name, a bpcore Loss or a callable; got "
                    f"{type(loss).__name__}")


def check_data(model: Model, X: npt.ArrayLike, y: Any, loss: object, sample_weight: Any,
               name: str = "X", target_name: str = "y"
               ) -> tuple[FloatArray, Any, FloatArray | None]:
    """Validate a data set up front; return (X, y, weight or None)."""
    X = _validation.float_matrix(X, name, model.dtype, model.n_in)
    n = X.shape[0]
    weight: FloatArray | None
    if isinstance(loss, Loss):
        y_array = _validation.as_array(y, target_name)
        if y_array.ndim == 0:
            raise (TypeError if y is None else ValueError)(
                f"{target_name} must be an array with one target per sample of {name} "
                f"({n}); got {_validation.describe(y)}")
        if len(y_array) != n:
            raise ValueError(f"{target_name} has {len(y_array)} samples but {name} has {n}")
        y, weight, _ = loss.validate(y_array, (n, model.n_out), model.dtype, sample_weight,
                                     name=target_name)
        if sample_weight is None:
            weight = None
    else:
        check_length(y, n, target_name, name)
        weight = _validation.sample_weight(sample_weight, n, model.dtype)
    return X, y, weight


def check_length(y: Any, n: int, target_name: str = "y", name: str = "X") -> None:
    """Raise ValueError unless ``y`` (any target a loss takes) holds ``n`` samples;
    TypeError when it has no length (None, a number)."""
    try:
        length = len(y)
    except TypeError:
        raise TypeError(f"{target_name} must be an array or sequence with one target per "
                        f"sample of {name} ({n}); got {_validation.describe(y)}") from None
    if length != n:
        raise ValueError(f"{target_name} has {length} samples but {name} has {n}")


def rows(values: Any, index: npt.NDArray[np.intp]) -> Any:
    """The rows ``index`` of an array, or of a sequence (a custom loss's target)."""
    if isinstance(values, np.ndarray):
        return values[index]
    return [values[i] for i in index]
