"""Class labels of any kind for a classifier's fit: the encoding the model keeps.

A classifier's loss reads class *codes* off the model's output: column indices
0..K-1 for cross-entropy, 0/1 for BCE on one output. ``fit`` and ``partial_fit``
take the user's labels instead (strings, integers such as 1..K, integer-valued
floats, bools) and encode them here. The classes are the sorted distinct labels
(``np.unique``), recorded as ``model.classes``: label ``classes[i]`` is code ``i``,
so ``classes[argmax]`` reads a prediction back.

Labels that are already codes keep their meaning: integer labels in [0, K) under
cross-entropy are column indices (a batch may lack some), and numbers in [0, 1]
under one-output BCE are 0/1 labels or probabilities. Their classes are
``0..K-1`` (``0, 1`` for BCE) in the labels' own dtype.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import numpy.typing as npt

from ..nn import BCEWithLogitsLoss, CrossEntropyLoss, Model

# dtype kinds whose labels are numbers (bools count: False/True are 0/1)
_NUMERIC = "biuf"


def n_classes(model: Model, loss: object) -> int | None:
    """How many classes ``loss`` reads off ``model``'s output: one per output for
    cross-entropy, two for BCE on one output; None for any other loss."""
    if isinstance(loss, CrossEntropyLoss):
        return model.n_out
    if isinstance(loss, BCEWithLogitsLoss) and model.n_out == 1:
        return 2
    return None


def short(values: npt.NDArray[Any], limit: int = 10) -> str:
    """The first ``limit`` values of a 1-D array, for error messages."""
    items = values.tolist()
    text = ", ".join(map(repr, items[:limit]))
    return f"[{text}{', ...' if len(items) > limit else ''}]"


def _kind(value: object) -> str:
    """The kind of one label: "string", "bool", "number" or its type's name."""
    if isinstance(value, (str, np.str_)):
        return "string"
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, numbers.Real):
        return "number"
    return type(value).__name__


def label_array(values: Any, name: str, hint: str = "") -> npt.NDArray[Any]:
    """``values`` as a 1-D array of class labels of one kind, or raise.

    Labels may be strings, integers, integer-valued floats, bools, or any other
    hashable, sortable values of one type. Refused, naming ``name``: floats that are
    not integers, NaN and infinity, None, and a mix of kinds (say, numbers and
    strings, which numpy would silently turn into strings).
    """
    array = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class labels; got shape "
                         f"{array.shape}")
    if array.dtype.kind == "O":
        items = array.tolist()
        kinds = {_kind(item) for item in items}
        if "NoneType" in kinds:
            raise TypeError(f"{name} holds None; class labels must be strings, integers or "
                            "bools of one kind")
        if len(kinds) > 1:
            raise TypeError(f"{name} mixes labels of the kinds {sorted(kinds)}; class labels "
                            "must all be of one kind (all strings, all numbers or all bools)")
        if kinds <= {"string", "bool", "number"}:
            array = np.array(items)         # the natural dtype: str, bool, int or float
        else:
            for item in items:
                try:
                    hash(item)
                except TypeError:
                    raise TypeError(f"{name} holds the unhashable label {item!r:.80}; class "
                                    "labels must be hashable") from None
    kind = array.dtype.kind
    if kind in "cV":
        raise TypeError(f"{name} must hold class labels (strings, integers, integer-valued "
                        f"floats or bools); got dtype {array.dtype}")
    if kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            raise ValueError(f"{name} holds {array[~finite][0].item()!r} (NaN or infinity); class "
                             f"labels must be finite{hint}")
        fractional = array != np.round(array)
        if fractional.any():
            raise ValueError(f"{name} holds the float {array[fractional][0].item()!r}, which "
                             "is not an integer; a float class label must be integer-valued "
                             f"such as 2.0{hint}")
    if kind in "mM" and np.isnat(array).any():
        raise ValueError(f"{name} holds NaT; class labels must be actual values")
    if kind == "O":
        try:
            np.unique(array)
        except TypeError as error:
            raise TypeError(f"{name} holds labels that cannot be sorted ({error}); class "
                            "labels must be comparable with each other") from None
    return array


def check_classes(classes: Any, k: int, what: str) -> npt.NDArray[Any]:
    """The ``classes=`` argument as sorted distinct labels, exactly ``k`` of them."""
    array = label_array(classes, "classes")
    found = np.unique(array)
    if found.size != array.size:
        values, counts = np.unique(array, return_counts=True)
        raise ValueError("classes must list distinct labels; got "
                         f"{values[counts > 1][0].item()!r} "
                         f"{int(counts[counts > 1][0])} times")
    if found.size != k:
        raise ValueError(f"classes must list the {k} labels of {what}; got {found.size} "
                         f"labels {short(found)}")
    return found


def _is_zero_one(classes: npt.NDArray[Any]) -> bool:
    """True when ``classes`` are the numbers 0 and 1 (or False and True)."""
    return classes.dtype.kind in _NUMERIC and classes.tolist() == [0, 1]


def encode(labels: npt.NDArray[Any], classes: npt.NDArray[Any],
           name: str) -> npt.NDArray[np.int64]:
    """The code of each label (its index in the sorted ``classes``); a ValueError
    names the labels that are not classes."""
    groups = {labels.dtype.kind in _NUMERIC, classes.dtype.kind in _NUMERIC}
    if labels.dtype.kind != "O" and classes.dtype.kind != "O" and len(groups) == 1 \
            and (labels.dtype.kind in _NUMERIC or labels.dtype.kind == classes.dtype.kind):
        codes = np.searchsorted(classes, labels)
        found = classes[np.minimum(codes, classes.size - 1)] == labels
    else:                      # other kinds, or strings against numbers: one by one
        index = {label: i for i, label in enumerate(classes.tolist())}
        codes = np.array([index.get(label, -1) for label in labels.tolist()], np.int64)
        found = codes >= 0
    if not np.all(found):
        unseen = np.unique(labels[~np.asarray(found)])
        raise ValueError(f"{name} holds the labels {short(unseen)}, which are not among the "
                         f"classes {short(classes)} (model.classes); a model keeps the "
                         "classes of its fit: pass classes= with every label to fit or to "
                         "the first partial_fit")
    return codes.astype(np.int64, copy=False)


def encode_target(model: Model, loss: object, y: Any, classes: npt.NDArray[Any] | None,
                  name: str = "y") -> tuple[Any, npt.NDArray[Any] | None]:
    """``(target, classes)``: the target as ``loss`` takes it and the classes it
    implies.

    ``classes`` fixes the encoding when given (the ``classes=`` argument, the classes
    kept by ``partial_fit``, the classes of the training labels for validation
    data); otherwise it is found from the labels. A target that is not 1-D labels
    (class probabilities, a loss that is not a classifier's) is returned as it came.
    """
    k = n_classes(model, loss)
    if k is None:
        return y, classes
    try:
        array = y if isinstance(y, np.ndarray) else np.asarray(y)
    except (TypeError, ValueError):
        return y, classes                # ragged: the loss says what is wrong
    if array.ndim != 1:
        return y, classes                # probabilities (or a shape the loss refuses)
    bce = isinstance(loss, BCEWithLogitsLoss)
    numeric = array.dtype.kind in _NUMERIC and (isinstance(y, np.ndarray)
                                                 or _one_kind_of_numbers(y))
    if bce and numeric and (classes is None or _is_zero_one(classes)) and array.size \
            and np.all((array >= 0) & (array <= 1)):
        # 0/1 labels or probabilities: their own codes
        if classes is None and np.all((array == 0) | (array == 1)):
            classes = np.arange(2).astype(array.dtype)
        return y, classes
    hint = " (or, for bce, a probability in [0, 1])" if bce else ""
    labels = label_array(y, name, hint)
    if classes is None:
        integral = labels.dtype.kind in _NUMERIC and (labels.dtype.kind != "b" or k <= 2)
        if not bce and integral and labels.size and labels.min() >= 0 and labels.max() < k:
            classes = np.arange(k).astype(labels.dtype)      # column indices, as given
        else:
            classes = np.unique(labels)
            if classes.size != k:
                raise ValueError(_count_message(name, classes, k, model.n_out, bce))
    codes = encode(labels, classes, name)
    return (codes.astype(np.float64) if bce else codes), classes


def _one_kind_of_numbers(y: Any) -> bool:
    """For a sequence (not an array): True when its items are all numbers, or all
    bools (numpy would make ``[True, 2]`` the numbers 1 and 2)."""
    try:
        kinds = {_kind(item) for item in y}
    except TypeError:
        return False
    return len(kinds) == 1 and kinds <= {"number", "bool"}


def _count_message(name: str, classes: npt.NDArray[Any], k: int, n_out: int,
                   bce: bool) -> str:
    found = f"{name} holds {classes.size} classes {short(classes)}"
    if bce:
        what = "bce on one output scores two classes"
    else:
        what = f"cross_entropy reads one class per output and the model has {n_out} outputs"
    if classes.size > k:
        return f"{found} but {what}"
    return (f"{found} but {what}; pass classes= with all {k} labels (partial_fit needs it on "
            "its first call when a batch may lack some)")


def compatible(classes: npt.NDArray[Any] | None, model: Model, loss: object) -> bool:
    """True when recorded ``classes`` fit ``loss`` on ``model`` (one per class)."""
    k = n_classes(model, loss)
    return classes is not None and k is not None and classes.size == k


def same_classes(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> bool:
    """True when two sorted class arrays hold the same labels."""
    return a.size == b.size and a.tolist() == b.tolist()


__all__ = ["check_classes", "compatible", "encode", "encode_target", "label_array",
           "n_classes", "same_classes", "short"]
