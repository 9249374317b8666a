"""What the command line trains on: the data (a CSV or NPZ file, or a generated set)
and the task it implies (classification or regression, the loss, the class labels).

Every problem with the data is a ``UsageError`` whose message names the option or the
file, what was expected and what came; ``bpcore.cli`` prints it as one line.
"""
from __future__ import annotations

import argparse
import dataclasses
import lzma
import math
import os
import tokenize
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..checkpoint import npy_header_reader
from ..datasets import DATASETS
from ..nn.losses import LOSSES

if TYPE_CHECKING:
    from .._typing import LossName, MetricName

TASKS = ("auto", "classification", "regression")
#: the losses of a regression (the first is the default); the others are classifiers'
REGRESSION_LOSSES: tuple[LossName, ...] = ("mse", "poisson")
REGRESSION_SETS = {"sine"}
# "auto" calls a single integer-valued target column with at most this many distinct
# values class labels; anything else is a regression target
MAX_AUTO_CLASSES = 20


#: what reading a damaged or hostile data file may raise, from zipfile and its
#: decompressors, numpy's .npy header parser (tokenize, ast), the text decoder or an
#: allocation: each becomes one UsageError naming the file
FILE_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile,
               zlib.error, lzma.LZMAError, NotImplementedError, RuntimeError,
               tokenize.TokenError, SyntaxError, MemoryError, OverflowError, KeyError,
               IndexError, TypeError, RecursionError)
# the NPZ reader's bounds: numpy's own limit on a .npy header; deflate's largest
# ratio of output to input bytes (a member cannot declare more data than that)
_MAX_NPY_HEADER = 10_000
_MAX_DEFLATE_RATIO = 1032
_READ_CHUNK = 16 * 2**20


class UsageError(Exception):
    """A mistake of the user's: reported as one line, exit status 2."""

    def __init__(self, message: str, prog: str | None = None) -> None:
        super().__init__(message)
        self.prog = prog


@dataclasses.dataclass
class Task:
    """What the network's output means: how to train, score and read it."""

    kind: str                   # "classification" or "regression"
    loss: LossName              # a name in bpcore.losses.LOSSES
    classes: list[Any] | None = None   # class labels, output index -> label (classification)
    target_columns: list[str] | None = None  # the CSV columns that held the target, as given

    @property
    def metrics(self) -> list[MetricName]:
        # a regression's loss is already the MSE (or, for Poisson, the deviance up to
        # a constant); under Poisson the metrics score the rate exp(output)
        return ["accuracy"] if self.kind == "classification" else ["mae", "r2"]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_progress(cls, progress: dict[str, Any] | None) -> Task | None:
        """The task saved by ``train``, or None for a model saved another way."""
        spec = (progress or {}).get("task")
        if not isinstance(spec, dict) or spec.get("kind") not in TASKS[1:] \
                or spec.get("loss") not in LOSSES:
            return None
        classes = spec.get("classes")
        if spec["kind"] == "classification" and (not isinstance(classes, list) or not classes):
            raise UsageError("the model file's task is a classification without its class "
                             f"labels (got classes={classes!r:.80}); it was not written by "
                             "bpcore train: retrain, or save it without a task")
        return cls(spec["kind"], spec["loss"], classes, spec.get("target_columns"))

    def encode(self, y, what="the target"):
        """The target as the loss wants it: class indices, or float columns."""
        if self.kind == "regression":
            return y.reshape(len(y), -1).astype(np.float64)
        labels = _single_column(y, what)
        index = {label: i for i, label in enumerate(self.classes)}
        try:
            encoded = np.fromiter((index[label] for label in labels.tolist()), np.int64,
                                  len(labels))
        except KeyError as error:
            raise UsageError(f"{what} holds the label {error.args[0]!r}, which is not one of "
                             f"the model's classes {self.classes}") from None
        if self.loss == "bce":
            return encoded.astype(np.float64).reshape(-1, 1)
        return encoded

    def labels(self, output: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """The predicted class label of each row of outputs (logits)."""
        if output.shape[1] == 1:
            index = (output[:, 0] > 0).astype(np.int64)
        else:
            index = output.argmax(axis=1)
        return np.asarray(self.classes)[index]


def _single_column(y: npt.NDArray[Any], what: str) -> npt.NDArray[Any]:
    y = y.reshape(len(y), -1)
    if y.shape[1] != 1:
        raise UsageError(f"a classifier needs one target column; {what} has {y.shape[1]}")
    column = y[:, 0]
    if column.dtype.kind == "f" and np.all(column == np.round(column)):
        column = column.astype(np.int64)
    return column


def _integer_valued(y: npt.NDArray[Any]) -> bool | np.bool_:
    return y.dtype.kind in "biu" or (y.dtype.kind == "f" and np.all(y == np.round(y)))


def choose_task(args: argparse.Namespace, y: npt.NDArray[Any],
                source: str) -> tuple[Task, int, str]:
    """Decide classification or regression, the loss and the output width.

    Returns ``(task, n_out, reason)``; every mismatch with ``--layers`` or ``--loss``
    is a UsageError saying what would fit.
    """
    kind, reason = args.task, "--task"
    if kind == "auto":
        if args.loss is not None:
            kind = "regression" if args.loss in REGRESSION_LOSSES else "classification"
            reason = f"--loss {args.loss}"
        elif source in DATASETS:
            kind = "regression" if source in REGRESSION_SETS else "classification"
            reason = f"the {source} data set"
        else:
            column = y.reshape(len(y), -1)
            distinct = len(np.unique(column)) if column.shape[1] == 1 else 0
            if column.shape[1] == 1 and _integer_valued(column) and \
                    2 <= distinct <= MAX_AUTO_CLASSES:
                kind = "classification"
                reason = (f"one integer target column with {distinct} values; "
                          "--task regression to override")
            else:
                kind = "regression"
                reason = "real-valued targets; --task classification to override"
    wanted_out = args.layers[-1] if args.layers else None
    if kind == "regression":
        if args.loss is not None and args.loss not in REGRESSION_LOSSES:
            raise UsageError(f"--loss {args.loss} is for classification; a regression "
                             "trains with --loss mse (or poisson for counts)")
        n_targets = y.reshape(len(y), -1).shape[1]
        if wanted_out is not None and wanted_out != n_targets:
            raise UsageError(f"--layers ends with {wanted_out} outputs but the data has "
                             f"{n_targets} target column(s); a regression needs one output "
                             "per target column")
        return Task("regression", args.loss or REGRESSION_LOSSES[0]), n_targets, reason
    if args.loss in REGRESSION_LOSSES:
        raise UsageError(f"--loss {args.loss} is for regression; a classifier trains with "
                         "--loss cross_entropy or bce")
    labels = _single_column(y, "the target")
    if args.task == "auto" and not _integer_valued(labels):
        raise UsageError(f"--loss {args.loss} needs class labels but the target holds real "
                         f"values such as {float(labels[0]):.4g}; --task classification treats "
                         "them as labels anyway")
    classes = np.unique(labels).tolist()
    if len(classes) < 2:
        raise UsageError(f"the target holds one class only ({classes[0]!r}); a classifier "
                         "needs at least two")
    k = len(classes)
    loss = args.loss
    if loss is None:
        n_out = wanted_out if wanted_out is not None else (1 if k == 2 else k)
        loss = "bce" if n_out == 1 else "cross_entropy"
    else:
        n_out = wanted_out if wanted_out is not None else (1 if loss == "bce" else k)
    if loss == "bce" and (k != 2 or n_out != 1):
        raise UsageError(f"--loss bce scores one output for two classes; the data has {k} "
                         f"classes and --layers ends with {n_out} outputs (use "
                         "--loss cross_entropy with one output per class)")
    if loss == "cross_entropy" and n_out != k:
        extra = " or 1 output with --loss bce" if k == 2 else ""
        raise UsageError(f"--layers ends with {n_out} outputs but the data has {k} classes "
                         f"{short_list(classes)}; a classifier needs one output per class{extra}")
    return Task("classification", loss, classes), n_out, reason


def short_list(values: Sequence[Any], limit: int = 10) -> str:
    text = ", ".join(map(str, values[:limit]))
    return f"[{text}{', ...' if len(values) > limit else ''}]"


@dataclasses.dataclass
class Data:
    X: npt.NDArray[np.float64]
    y: npt.NDArray[Any] | None  # None when the file has no target
    source: str                 # a data set's name or the file's path
    target_columns: list[str] | None = None


def load_data(args: argparse.Namespace, *, need_target: bool, n_features: int | None = None,
              target_columns: list[str] | None = None) -> Data:
    """The data named by ``--data`` or ``--dataset``.

    ``n_features`` (a model's inputs) lets a CSV without target columns through for
    ``predict``; ``target_columns`` is the model's saved spec, used unless
    ``--target-columns`` is given.
    """
    if args.data is not None:
        if args.dataset is not None:
            raise UsageError("give --data or --dataset, not both")
        path = args.data
        if not os.path.isfile(path):
            what = "not a regular file" if os.path.exists(path) else "no such file"
            raise UsageError(f"--data {path!r}: {what}")
        extension = os.path.splitext(path)[1].lower()
        if extension == ".npz":
            if args.target_columns is not None:
                raise UsageError("--target-columns applies to CSV files; an NPZ file holds "
                                 "the arrays X and y")
            return _load_npz(path, need_target)
        if extension in (".csv", ".tsv", ".txt"):
            spec = args.target_columns if args.target_columns is not None else target_columns
            return _load_csv(path, args.delimiter, spec, need_target, n_features)
        raise UsageError(f"--data {path!r}: expected a .csv (or .tsv/.txt) or .npz file")
    name = args.dataset or "moons"
    options = {"seed": args.data_seed}
    if args.n_samples is not None:
        options["n_samples"] = args.n_samples
    if args.noise is not None:
        options["noise"] = args.noise
    try:
        X, y = DATASETS[name](**options)
    except (TypeError, ValueError) as error:
        raise UsageError(f"--dataset {name}: {error}") from None
    return Data(X, y, name)


def _load_npz(path: str, need_target: bool) -> Data:
    try:
        with open(path, "rb") as file, zipfile.ZipFile(file) as archive:
            members = {info.filename: info for info in archive.infolist()}
            names = [name[:-4] for name in members if name.endswith(".npy")]
            if "X.npy" not in members:
                raise UsageError(f"{path} holds the arrays {names}; expected X (and y)")
            size = os.fstat(file.fileno()).st_size
            X = _read_npy(archive, members["X.npy"], size, path)
            y = _read_npy(archive, members["y.npy"], size, path) if "y.npy" in members \
                else None
    except UsageError:
        raise
    except FILE_ERRORS as error:
        raise UsageError(f"cannot read {path} as NPZ: {_describe_error(error)}") from None
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise UsageError(f"{path}: X must be a 2-D numeric array (n_samples, n_features); "
                         f"got shape {X.shape} and dtype {X.dtype}")
    if y is None:
        if need_target:
            raise UsageError(f"{path} holds no array y; training and evaluation need targets")
    elif y.ndim not in (1, 2) or y.dtype.kind not in "biuf" or len(y) != len(X):
        raise UsageError(f"{path}: y must be a numeric array with one row per sample of X "
                         f"({len(X)}); got shape {y.shape} and dtype {y.dtype}")
    X = X.astype(np.float64)
    _check_finite(X, "X", path)
    if y is not None and y.dtype.kind == "f":
        _check_finite(y, "y", path)
    return Data(X, y, path)


def _describe_error(error: BaseException) -> str:
    """An error from a library as one line: its type and its message."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


def _read_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, size: int,
              path: str) -> npt.NDArray[Any]:
    """One member of an NPZ file, read as ``np.load`` would, but with the declared
    shape checked against the bytes the member holds (and those against the file)
    before anything is allocated: a 300-byte file declaring shape (2**40, 3) is
    refused, not attempted."""
    name = info.filename
    where = f"cannot read {path} as NPZ: {name}"
    if info.flag_bits & 0x41:
        raise UsageError(f"{where} is encrypted")
    bound = size if info.compress_type == zipfile.ZIP_STORED else \
        _MAX_DEFLATE_RATIO * max(info.compress_size, 1)
    if info.header_offset + info.compress_size > size or info.file_size > bound:
        raise UsageError(f"{where} declares {info.file_size} bytes, more than the "
                         f"{size}-byte file can hold: truncated or forged")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = npy_header_reader(version)
        if read_header is None:
            raise UsageError(f"{where} is .npy version {version}; expected 1.0 or 2.0")
        shape, fortran_order, dtype = read_header(member, max_header_size=_MAX_NPY_HEADER)
        if dtype.kind not in "biuf" or dtype.hasobject:
            raise UsageError(f"{path}: {name[:-4]} must be a numeric array; got dtype "
                             f"{dtype!s:.80}")
        nbytes = math.prod(shape) * dtype.itemsize
        held = info.file_size - member.tell()
        if nbytes != held:
            raise UsageError(f"{where} declares shape {shape!r:.80} of {dtype} "
                             f"({nbytes} bytes) but holds {held} data bytes")
        array = np.empty(shape, dtype, order="F" if fortran_order else "C")
        flat = (array.T if fortran_order else array).reshape(-1).view(np.uint8)
        done = 0
        while done < nbytes:
            chunk = member.read(min(_READ_CHUNK, nbytes - done))
            if not chunk:
                raise UsageError(f"{where} ends after {done} of {nbytes} data bytes")
            flat[done:done + len(chunk)] = np.frombuffer(chunk, np.uint8)
            done += len(chunk)
        if member.read(1):      # reaching the end also checks the CRC
            raise UsageError(f"{where} holds more data than its shape")
    return array


def _check_finite(array: npt.NDArray[Any], name: str, path: str) -> None:
    """A UsageError naming the file and the first row of ``array`` with NaN/inf."""
    finite = np.isfinite(array)
    if not finite.all():
        row = int(np.argwhere(~finite)[0][0])
        raise UsageError(f"{path}: {name} holds NaN or infinity (first in row {row}); "
                         "bpcore trains and predicts on finite numbers only")


def _load_csv(path: str, delimiter: str | None, target_spec: list[str] | None,
              need_target: bool, n_features: int | None) -> Data:
    if delimiter is None:
        delimiter = "\t" if path.lower().endswith(".tsv") else ","
    try:
        with open(path, encoding="utf-8", newline="") as file:
            first = file.readline()
    except FILE_ERRORS as error:         # not UTF-8 text, say
        raise UsageError(f"cannot read {path} as CSV text: {_describe_error(error)}") \
            from None
    names = [field.strip().strip('"') for field in first.rstrip("\r\n").split(delimiter)]
    try:
        [float(field) for field in names]
        header = None
    except ValueError:
        header = names
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # "input contained no data": said below
            table = np.loadtxt(path, delimiter=delimiter, skiprows=1 if header else 0,
                               ndmin=2, dtype=np.float64, encoding="utf-8")
    except FILE_ERRORS as error:
        raise UsageError(f"cannot read {path} as numbers: {_describe_error(error)}") \
            from None
    if table.size == 0:
        raise UsageError(f"{path} holds no data rows")
    _check_finite(table, "the data", path)
    n_columns = table.shape[1]
    if not need_target and n_features == n_columns:
        return Data(table, None, path)          # features only, as predict may get
    spec = target_spec if target_spec is not None else ["-1"]
    columns = _resolve_columns(spec, header, n_columns, path)
    if len(columns) == n_columns:
        raise UsageError(f"--target-columns takes all {n_columns} columns of {path}; "
                         "no feature column is left")
    keep = [c for c in range(n_columns) if c not in columns]
    X, y = table[:, keep], table[:, columns]
    return Data(X, y[:, 0] if y.shape[1] == 1 else y, path, list(spec))


def _resolve_columns(spec: list[str], header: list[str] | None, n_columns: int,
                     path: str) -> list[int]:
    """Column indices for names or (negative) indices, in the order given."""
    columns = []
    for item in spec:
        item = str(item).strip()
        try:
            index = int(item)
        except ValueError:
            if header is None or item not in header:
                where = f"its header is {header}" if header else "it has no header row"
                raise UsageError(f"--target-columns names {item!r}, which is not a column of "
                                 f"{path} ({where})") from None
            index = header.index(item)
        if not -n_columns <= index < n_columns:
            raise UsageError(f"--target-columns {item}: {path} has {n_columns} columns")
        index %= n_columns
        if index in columns:
            raise UsageError(f"--target-columns names column {item} twice")
        columns.append(index)
    return columns
