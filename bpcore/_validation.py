"""Every check of user input, in one place, with messages that name the argument.

Kernels in src/ trust what they are handed; these functions are the only line that
turns bad input into a ValueError/TypeError before anything is written.
"""
from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._flat import all_finite

if TYPE_CHECKING:
    from ._typing import FloatArray

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: the most parameters a model may have: a float64 buffer of them must be addressable
MAX_PARAMETERS = sys.maxsize // 8
#: the largest step count an optimizer keeps (a C long long, with room to count on)
MAX_STEPS = 2**62


def check_dtype(dtype: npt.DTypeLike) -> np.dtype[Any]:
    """Return the numpy dtype for a model's ``dtype`` argument (float32 or float64)."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64; got {dtype!r}") from None
    if resolved not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64; got {resolved}")
    return resolved


def describe(value: Any) -> str:
    """A short description of what came, for error messages."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, (list, tuple, dict, set)):
        return f"a {type(value).__name__} of length {len(value)}"
    try:
        scalar = np.ndim(value) == 0
    except (TypeError, ValueError):
        scalar = False
    return f"{type(value).__name__} {value!r}" if scalar else type(value).__name__


def as_array(value: Any, name: str) -> npt.NDArray[Any]:
    """``value`` as an ndarray (no copy when it already is one)."""
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a rectangular array; got {describe(value)} that numpy "
                        f"cannot turn into one ({error})") from None


def check_finite(array: npt.NDArray[Any], name: str) -> None:
    """Raise ValueError when a float array holds NaN or infinity (allocates nothing)."""
    if array.size and not all_finite(array.reshape(-1)):
        raise ValueError(f"{name} contains NaN or infinity; all values must be finite")


def native(array: npt.NDArray[Any], dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    """``array`` as a C-contiguous, aligned array of ``dtype`` in the machine's byte
    order: what the kernels read (a copy only when it is not that already). A value
    too large for ``dtype`` becomes infinity without a NumPy warning: the finiteness
    check that follows (``native_finite``) says what happened."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.require(array, dtype=np.dtype(dtype).newbyteorder("="),
                          requirements=["C", "A"])


def native_finite(array: npt.NDArray[Any], dtype: npt.DTypeLike,
                  name: str) -> npt.NDArray[Any]:
    """``native(array, dtype)``, then a ValueError naming ``name`` when it holds NaN or
    infinity: for finite input that overflowed ``dtype`` (float64 values near 1e300
    for a float32 model), a message that says so."""
    converted = native(array, dtype)
    if converted.size and not all_finite(converted.reshape(-1)):
        if array.dtype.kind in "iub" or (array.dtype.kind == "f"
                                          and np.isfinite(array).all()):
            largest = float(np.max(np.abs(array.astype(np.float64))))
            limit = float(np.finfo(converted.dtype).max)
            raise ValueError(f"{name} holds values beyond the range of {converted.dtype} "
                             f"(the largest magnitude is {largest:.4g}; {converted.dtype} "
                             f"reaches {limit:.4g}); scale them, or use a float64 model")
        raise ValueError(f"{name} contains NaN or infinity; all values must be finite")
    return converted


def float_matrix(value: Any, name: str, dtype: npt.DTypeLike, n_columns: int | None = None,
                 column_word: str = "features", expected_by: str = "the model") -> FloatArray:
    """Validate a 2-D real array and return it C-contiguous in ``dtype``.

    Float input of another precision or layout, and integer, boolean or nested-list
    input, is converted to ``dtype``; complex, string and object arrays are rejected
    (TypeError). NaN/inf raise ValueError.
    """
    array = as_array(value, name)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a real numeric array (float, integer or bool); got "
                        f"dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_{column_word}); got {array.ndim}-D "
            f"array of shape {array.shape}"
        )
    if array.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one sample; got shape {array.shape}")
    if n_columns is not None and array.shape[1] != n_columns:
        raise ValueError(
            f"{name} has {array.shape[1]} {column_word}, {expected_by} expects {n_columns}"
        )
    return native_finite(array, dtype, name)


def sample_weight(value: Any, n_samples: int, dtype: npt.DTypeLike) -> FloatArray | None:
    """Validate per-sample weights: 1-D, length n_samples, finite, >= 0; or None."""
    if value is None:
        return None
    array = as_array(value, "sample_weight")
    if array.dtype.kind not in "uif":
        raise TypeError(f"sample_weight must be a real numeric array; got dtype {array.dtype}")
    if array.shape != (n_samples,):
        raise ValueError(
            f"sample_weight must have shape ({n_samples},), one weight per sample; "
            f"got shape {array.shape}"
        )
    array = native_finite(array, dtype, "sample_weight")
    if (array < 0).any():
        raise ValueError("sample_weight must be non-negative; got a negative weight")
    return array


def positive_int(value: object, name: str) -> int:
    """Return value as int when it is an integer >= 1 (bool is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer; got {describe(value)}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value}")
    return int(value)


def flag(value: object, name: str) -> bool:
    """Return value as bool when it is True or False (numpy's bool too); anything
    else, say ``"no"`` or 1, is a TypeError rather than read by its truth."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {describe(value)}")
    return bool(value)


def count(value: object, name: str, high: int) -> int:
    """Return value as int when it is an integer in [0, high] (not a bool): a
    TypeError for another type, a ValueError out of range (before an OverflowError
    could come from C)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative integer; got {describe(value)}")
    number = int(value)
    if not 0 <= number <= high:
        raise ValueError(f"{name} must be a non-negative integer at most {high}; got {number}")
    return number


def real(value: object, name: str, *, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False) -> float:
    """Return value as float when it is a finite real in the given interval.

    ``low``/``high`` are inclusive unless ``low_open``/``high_open``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {describe(value)}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else repr(low)
        hi = "inf" if high is None else repr(high)
        raise ValueError(f"{name} must be a finite number in {left}{lo}, {hi}{right}; "
                         f"got {value!r}")
    return value


def random_generator(seed: object) -> np.random.Generator:
    """``numpy.random.default_rng(seed)`` for an int >= 0, a Generator or None."""
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be None, a non-negative integer or a numpy Generator; "
                         f"got {describe(seed)}")
    return np.random.default_rng(int(seed))


def state_dict_hyperparameters(state_dict: object, kind_key: str, owner: object,
                               checks: Mapping[str, Callable[[Any, str], Any]],
                               keys: Collection[str], *, exact: bool) -> dict[str, Any]:
    """Check a ``state_dict``'s type, keys and kind (``state_dict[kind_key]`` must name
    ``owner``'s class) and return its hyperparameters passed through ``checks``.

    ``keys`` must all be present; with ``exact`` no others may be.
    """
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict; got {type(state_dict).__name__}")
    if exact and set(state_dict) != set(keys):
        raise ValueError(f"state_dict must hold the keys {sorted(keys)}; got "
                         f"{sorted(map(str, state_dict))}")
    missing = set(keys) - set(state_dict)
    if missing:
        raise ValueError(f"state_dict lacks the keys {sorted(missing)}")
    name = type(owner).__name__
    if state_dict[kind_key] != name:
        raise ValueError(f"state_dict is for {state_dict[kind_key]!r}, this "
                         f"{kind_key} is {name!r}")
    hyper = state_dict["hyperparameters"]
    if not isinstance(hyper, dict):
        raise TypeError("state_dict['hyperparameters'] must be a dict; got "
                        f"{describe(hyper)}")
    if set(hyper) != set(checks):
        raise ValueError(f"state_dict hyperparameters must be {sorted(checks)}; "
                         f"got {sorted(map(str, hyper))}")
    return {key: check(hyper[key], f"hyperparameters[{key!r}]") for key, check in checks.items()}


def copy_into(buffer: npt.NDArray[Any], value: Any, name: str) -> None:
    """Write ``value`` into ``buffer`` in place: how an assignment to a buffer that the
    kernels point into (``model.params``, a layer's ``W``, an optimizer's state) takes
    effect, since such a buffer is never rebound. ``value`` must be a real float
    array of ``buffer``'s shape (TypeError or ValueError naming ``name`` otherwise,
    with nothing written); it is cast to ``buffer``'s dtype."""
    array = as_array(value, name)
    if array.dtype.kind != "f":
        raise TypeError(f"{name} must be a float array of shape {buffer.shape}; got "
                        f"{describe(value)}")
    if array.shape != buffer.shape:
        raise ValueError(f"{name} must have shape {buffer.shape} (it is copied into the "
                         f"buffer in place, never rebound); got {describe(array)}")
    np.copyto(buffer, array, casting="unsafe")
