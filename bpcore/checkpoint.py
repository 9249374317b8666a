"""Checkpoints: a model, optionally its optimizer and training progress, in one file.

The file (format version 1) is a zip archive, as ``np.savez`` writes, members stored
uncompressed, no pickle anywhere:

    header.json              {"format": "bpcore-checkpoint", "version": 1,
                              "dtype", "layers", "model_state", "optimizer",
                              "progress", "arrays": [{"name", "shape", "dtype"}, ...]}
    params.npy               the model's flat parameter buffer
    optimizer.<buffer>.npy   one per optimizer state buffer (e.g. ``exp_avg``)

``model_state`` holds what a resumed run needs beyond the weights: the state of the
model's dropout generator, ``epochs_trained`` and the training flag; and what the
model's last fit recorded: ``classes`` (``{"dtype", "values"}``: the class labels,
strings, integers, floats or bools, or null) and ``fit_loss`` (``{"name",
"reduction"}`` of a built-in loss, or null: a custom loss is not saved, and loads as
None).

Versions: a field added later is optional, and a file without it loads with the
field's default (``classes`` and ``fit_loss`` None, a layer's ``dropout`` 0), so
files written before it still load as version 1. The version changes only when a
field changes meaning or becomes required.

Writing is atomic: the archive goes to a temporary file beside the target, is
fsynced, renamed over the target, and the folder is fsynced. A save killed half-way
leaves the previous file intact and at worst a stray ``.<name>.<random>.tmp`` beside
it, which ``load`` never looks at.

Reading trusts nothing. ``np.load(allow_pickle=False)`` is not enough: a crafted
100-byte ``.npy`` header makes it allocate whatever shape it declares. So the
architecture is read first, every member's size in the zip directory and then its
``.npy`` header (shape, dtype) are checked against it before any data is read, and
every array is bounded by the bytes really present in the file. Whatever is wrong
becomes one ``CheckpointError`` naming the file and the fault.
"""
from __future__ import annotations

import dataclasses
import errno
import io
import json
import math
import os
import re
import secrets
import stat
import struct
import tokenize
import zipfile
from collections.abc import Callable
from typing import IO, Any, NoReturn, TypeVar

import numpy as np

from . import _validation
from .nn import LOSSES, Dense, Model
from .nn.losses import REDUCTIONS
from .nn.model import register_convenience
from .optim import Optimizer

FORMAT = "bpcore-checkpoint"
VERSION = 1

_HEADER = "header.json"
_PARAMS = "params.npy"
_MAX_HEADER_BYTES = 16 * 2**20       # architecture + progress; rng states are ~10 KB
_MAX_MEMBERS = 64                    # header, params and a few optimizer buffers
_MAX_NPY_HEADER = 10_000             # numpy's own default limit
_MAX_DIRECTORY = 16 * 2**10          # the zip's central directory: 64 short entries fit
# what parsing JSON may cost beyond the file's own size: see json_cost
_JSON_ALLOWANCE = 16 * 2**20
_READ_CHUNK = 16 * 2**20
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# the bit generators whose state is plain JSON (ints, strings, lists of ints)
_BIT_GENERATORS = {cls.__name__: cls for cls in (
    np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937, np.random.Philox,
    np.random.SFC64)}
_LAYER_KEYS = {"n_in", "n_out", "activation", "negative_slope"}
# the dtype kinds of class labels a checkpoint keeps (JSON strings, numbers, booleans)
_CLASS_KINDS = {"U": str, "b": bool, "i": int, "u": int, "f": float}
_MAX_LABEL_CHARS = 4096


class CheckpointError(ValueError):
    """A file that is not a readable bpcore checkpoint; says which file and why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot load checkpoint {path!r}: {reason}")
        self.path = path
        self.reason = reason


@dataclasses.dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns: the model, its optimizer (or None) and the
    progress dict that was saved with it (or None)."""

    model: Model
    optimizer: Optimizer | None = None
    progress: dict[str, Any] | None = None


# -------------------------------------------------------------------------- save
def save(path: str | os.PathLike[str], model: Model, optimizer: Optimizer | None = None,
         progress: dict[str, Any] | None = None) -> None:
    """Write ``model`` (and ``optimizer``'s state, and ``progress``) to ``path`` atomically.

    ``optimizer`` must be bound to ``model``. ``progress`` is a JSON-serializable
    dict (epoch, seeds, ``bit_generator.state`` dicts, ...); ``load_checkpoint``
    returns it as JSON gives it back (tuples become lists, keys strings). ``path`` is
    used exactly as given (no ``.npz`` is appended). Everything is checked before a
    file is created.
    """
    path = _check_path(path)
    header, arrays = _describe(model, optimizer, progress)
    try:
        text = json.dumps(header, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError) as error:
        raise TypeError(f"progress must be a JSON-serializable dict; {error}") from None
    _write_atomically(path, text.encode("ascii"), arrays)


def _check_path(path: Any) -> str:
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike; got "
                        f"{type(path).__name__}") from None
    if not isinstance(path, str) or not path:
        raise TypeError(f"path must be a non-empty str path; got {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"path {path!r} is a folder; give a file name")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"the folder of path {path!r} does not exist")
    return path


def _describe(model: object, optimizer: object, progress: object
              ) -> tuple[dict[str, Any], list[tuple[str, np.ndarray]]]:
    """The header dict and the (member name, array) list to write; checks arguments."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a bpcore Model; got {type(model).__name__}")
    if optimizer is not None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError("optimizer must be a bpcore Optimizer or None; got "
                            f"{type(optimizer).__name__}")
        if optimizer.model is not model:
            raise ValueError("optimizer is bound to another model; save it with its own")
    if progress is not None and not isinstance(progress, dict):
        raise TypeError(f"progress must be a dict or None; got {type(progress).__name__}")
    rng = model.dropout_rng
    if not isinstance(rng, np.random.Generator) or \
            type(rng.bit_generator).__name__ not in _BIT_GENERATORS:
        raise TypeError("model.dropout_rng must be a numpy Generator over one of "
                        f"{sorted(_BIT_GENERATORS)} to be saved; got {_validation.describe(rng)}")

    classes = _classes_header(model)
    little = model.dtype.newbyteorder("<")
    arrays = [(_PARAMS, model.params.astype(little, copy=False))]
    optimizer_header = None
    if optimizer is not None:
        state = optimizer.state_dict()
        for name, buffer in state["state"].items():
            if buffer.shape != model.params.shape or buffer.dtype != model.dtype:
                raise ValueError(f"optimizer state {name!r} must match model.params "
                                 f"{model.params.shape} {model.dtype}; got "
                                 f"{_validation.describe(buffer)}")
            if not np.isfinite(buffer).all():
                raise ValueError(f"optimizer state {name!r} contains NaN or infinity; a "
                                 "checkpoint keeps finite optimizer state only (as "
                                 "load_state_dict does): reset the optimizer or save the model "
                                 "without it")
            arrays.append((f"optimizer.{name}.npy", buffer.astype(little, copy=False)))
        optimizer_header = {"class": state["optimizer"],
                            "module": type(optimizer).__module__,
                            "hyperparameters": state["hyperparameters"],
                            "steps": int(state["steps"]),
                            "state": list(state["state"])}
    header = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": model.dtype.name,
        "layers": [{"n_in": layer.n_in, "n_out": layer.n_out,
                    "activation": layer.activation,
                    "negative_slope": float(layer.negative_slope),
                    "dropout": float(getattr(layer, "dropout", 0.0))}
                   for layer in model.layers],
        "model_state": {"epochs_trained": int(model.epochs_trained),
                        "training": bool(model.training),
                        "dropout_rng": {"bit_generator": type(rng.bit_generator).__name__,
                                        "state": _plain(rng.bit_generator.state)},
                        "classes": classes,
                        "fit_loss": _loss_header(model.fit_loss)},
        "optimizer": optimizer_header,
        "progress": progress,
        "arrays": [{"name": name, "shape": list(array.shape), "dtype": array.dtype.str}
                   for name, array in arrays],
    }
    return header, arrays


def _classes_header(model: Model) -> dict[str, Any] | None:
    """``model.classes`` as JSON (dtype and values), or None; a TypeError/ValueError
    for labels a checkpoint cannot keep."""
    classes = model.classes
    if classes is None:
        return None
    if not isinstance(classes, np.ndarray) or classes.ndim != 1 \
            or classes.dtype.kind not in _CLASS_KINDS:
        raise TypeError("model.classes must be a 1-D array of strings, integers, floats or "
                        "bools to be saved; got " + _validation.describe(classes))
    if classes.size not in _class_counts(model.n_out):
        raise ValueError(f"model.classes must hold one label per output ({model.n_out}"
                         f"{', or 2 for one output' if model.n_out == 1 else ''}) to be saved; "
                         f"got {classes.size} labels")
    if classes.dtype.kind == "f" and not np.all(np.isfinite(classes)):
        raise ValueError("model.classes must be finite to be saved; got "
                         f"{classes.tolist()!r:.200}")
    return {"dtype": classes.dtype.newbyteorder("<").str, "values": classes.tolist()}


def _class_counts(n_out: int) -> tuple[int, ...]:
    """How many class labels a model with ``n_out`` outputs may have."""
    return (1, 2) if n_out == 1 else (n_out,)


def _loss_header(loss: object) -> dict[str, Any] | None:
    """A built-in loss as its name and reduction; None for anything else."""
    if isinstance(loss, str) and loss in LOSSES:
        return {"name": loss, "reduction": "mean"}
    for name, cls in LOSSES.items():
        if type(loss) is cls:
            return {"name": name, "reduction": loss.reduction}
    return None


def _plain(value: Any) -> Any:
    """A bit generator's state with numpy arrays and scalars made JSON types."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return value


def _write_zip(file: IO[bytes], header_bytes: bytes,
               arrays: list[tuple[str, np.ndarray]]) -> None:
    """The archive itself, into an open binary file (no atomicity here)."""
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED) as archive:
        # a fixed date keeps the bytes of a checkpoint a function of its contents
        archive.writestr(zipfile.ZipInfo(_HEADER, date_time=(1980, 1, 1, 0, 0, 0)),
                         header_bytes)
        for name, array in arrays:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, version=(1, 0),
                                          allow_pickle=False)


def _write_atomically(path: str, header_bytes: bytes,
                      arrays: list[tuple[str, np.ndarray]]) -> None:
    _replace_atomically(path, lambda file: _write_zip(file, header_bytes, arrays))


def _replace_atomically(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a new temporary file beside ``path``, fsync it, rename it over
    ``path`` and fsync the folder; on any error remove the temporary file, leaving
    ``path`` as it was."""
    folder, name = os.path.split(path)
    folder = folder or "."
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        temp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            descriptor = os.open(temp, flags, 0o666)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"could not create a temporary file beside {path!r}")
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
    """Make the rename durable; skipped where folders cannot be opened or synced."""
    if os.name == "nt":
        return
    descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(descriptor)


# -------------------------------------------------------------------------- load
def load(path: str | os.PathLike[str]) -> Model:
    """The ``Model`` saved at ``path`` (see ``load_checkpoint`` for optimizer/progress)."""
    return load_checkpoint(path).model


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint: a ``Checkpoint(model, optimizer, progress)``.

    Raises ``CheckpointError`` for anything that is not an intact version-1 bpcore
    checkpoint (truncated, corrupt, hostile, another version); ``OSError`` (e.g.
    FileNotFoundError) when the file cannot be opened. Nothing in the file is ever
    executed, and no array larger than the file itself is allocated.
    """
    return read_guarded(path, lambda path, file: _Reader(path, file).read())


_T = TypeVar("_T")

#: what a reader's checks may let through from a damaged file (each becomes one
#: CheckpointError): the library errors of a corrupt zip, JSON or array (tokenize's
#: TokenError: numpy parses a .npy header with it)
_CORRUPT = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
            TypeError, KeyError, IndexError, OverflowError, RecursionError,
            NotImplementedError, tokenize.TokenError)


def npy_header_reader(version: tuple[int, int]) -> Any:
    """NumPy's header reader for a .npy format ``version`` (1.0 or 2.0), else None:
    shared by the checkpoint loader and the CLI's NPZ reader."""
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0
    return None


def fail(path: str, reason: str) -> NoReturn:
    """Raise ``CheckpointError(path, reason)`` without a chained traceback: the reason
    already says what the error being handled, if any, was."""
    raise CheckpointError(path, reason) from None


def path_argument(path: object) -> str:
    """``path`` (a str or ``os.PathLike``) as a str; TypeError naming ``path``."""
    try:
        text = os.fspath(path)      # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike; got "
                        f"{_validation.describe(path)}") from None
    if not isinstance(text, str) or not text:
        raise TypeError(f"path must be a non-empty str path; got {text!r:.80}")
    return text


def open_regular(path: str) -> io.BufferedReader:
    """``path`` opened for reading when it is a regular file (a symlink to one is
    fine); ``CheckpointError`` for a FIFO, socket or device (``/dev/zero`` would be
    read until memory runs out, a FIFO would block), without blocking on it."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"path {path!r} is a folder; give a checkpoint file")
    # O_NONBLOCK: opening a FIFO for reading does not wait for a writer
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | \
        getattr(os, "O_BINARY", 0)
    descriptor = os.open(path, flags)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a character device"
                    if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "a folder"
                    if stat.S_ISDIR(mode) else "not a regular file")
            fail(path, f"it is {kind}; a checkpoint is read from a regular file only")
        if hasattr(os, "set_blocking"):
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def json_cost(raw: bytes) -> int:
    """An upper bound on the bytes ``json.loads(raw)`` allocates, by counting bytes.

    Every object JSON makes is the top value, or follows a ``[``, ``,`` or ``:``; so
    there are at most ``1 + [ + , + :`` of them. A number, ``true``, ``false`` or
    ``null`` takes at most 40 bytes with its slot in its container; a container at
    most 96 more (an empty dict is 64 bytes, and a dict grows by less than 40 bytes
    per entry); a string 32 more per quote (its object head). Each byte costs 3 more
    in ASCII without ``\\u`` escapes (the decoded text, and the strings made from
    it), else 12 (a str of 4-byte characters, made twice, one over-allocated).
    ``tests/test_file_safety.py`` measures the bound against ``tracemalloc``."""
    containers = raw.count(b"[") + raw.count(b"{")
    items = 1 + raw.count(b"[") + raw.count(b",") + raw.count(b":")
    per_byte = 3 if raw.isascii() and b"\\u" not in raw else 12
    return 96 * containers + 40 * items + 32 * raw.count(b'"') + per_byte * len(raw)


def check_json_cost(path: str, raw: bytes, what: str, file_size: int) -> None:
    """``CheckpointError`` unless parsing ``raw`` costs at most twice the file's size
    plus ``_JSON_ALLOWANCE`` (so a header of empty lists cannot multiply the file 25
    times, while any header a model and its progress need passes)."""
    cost = json_cost(raw)
    limit = 2 * file_size + _JSON_ALLOWANCE
    if cost > limit:
        fail(path, f"{what} ({len(raw)} bytes) holds so many JSON values that reading it "
                   f"could take {cost} bytes of memory; the limit for this file is {limit}")


def check_zip_directory(path: str, file: IO[bytes], size: int) -> None:
    """Read the zip's end-of-directory record the way ``zipfile`` will and refuse a
    central directory larger than a checkpoint's (``_MAX_DIRECTORY`` bytes, at most
    ``_MAX_MEMBERS`` entries) before ``zipfile`` parses it into objects. A file with
    no such record is left to ``zipfile`` to refuse."""
    tail_size = min(size, 22 + 65535 + 20 + 56)
    file.seek(size - tail_size)
    tail = file.read(tail_size)
    at = len(tail) - 22 if tail[-22:-18] == b"PK\x05\x06" else tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return
    entries, directory = struct.unpack("<HI", tail[at + 10:at + 16])
    locator = at - 20
    if locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
        record = locator - 56        # the zip64 end record, just before its locator
        if record >= 0 and tail[record:record + 4] == b"PK\x06\x06":
            entries, directory = struct.unpack("<QQ", tail[record + 32:record + 48])
    if entries > _MAX_MEMBERS or directory > _MAX_DIRECTORY:
        fail(path, f"the zip directory declares {entries} members in {directory} bytes; "
                   f"a checkpoint has at most {_MAX_MEMBERS} members in "
                   f"{_MAX_DIRECTORY} bytes")
    file.seek(0)


def read_guarded(path: str | os.PathLike[str],
                 read: Callable[[str, io.BufferedReader], _T]) -> _T:
    """``read(path, file)`` on the regular file at ``path``, every error from its
    contents turned into one ``CheckpointError`` without a chained traceback
    (``OSError`` from opening it passes; so does ``TypeError`` for a ``path`` that is
    not a path): the one rule of the loaders of ``.bpc`` and ``.safetensors`` files."""
    path = path_argument(path)
    with open_regular(path) as file:
        try:
            return read(path, file)
        except CheckpointError as error:
            error.__cause__, error.__suppress_context__ = None, True
            raise
        except _CORRUPT as error:
            fail(path, f"the file is corrupt ({type(error).__name__}: {error})")


class _Reader:
    """One load: every check raises ``CheckpointError`` through ``fail``."""

    def __init__(self, path: str, file: IO[bytes]) -> None:
        self.path = path
        self.file = file
        self.size = os.fstat(file.fileno()).st_size

    def fail(self, reason: str) -> NoReturn:
        fail(self.path, reason)

    def read(self):
        check_zip_directory(self.path, self.file, self.size)
        try:
            archive = zipfile.ZipFile(self.file)
        except zipfile.BadZipFile:
            self.fail("not a zip archive, or a truncated one (no zip directory at its end)")
        with archive:
            self.archive = archive
            members = self.members()
            header = self.header(members)
            dtype = self.dtype(header)
            layers = [self.layer(i, spec) for i, spec in enumerate(
                self.field(header, "layers", list, "a list"))]
            if not layers:
                self.fail(f"{_HEADER} lists no layers")
            for i in range(len(layers) - 1):
                if layers[i].n_out != layers[i + 1].n_in:
                    self.fail(f"{_HEADER} layers[{i}] has n_out={layers[i].n_out} but "
                              f"layers[{i + 1}] has n_in={layers[i + 1].n_in}")
            n_params = sum(math.prod(shape) for layer in layers
                           for _, shape in layer.parameter_shapes())
            optimizer_class, optimizer_spec = self.optimizer_spec(header)
            epochs, training, dropout_rng = self.model_state(header)
            classes = self.classes(header, layers[-1].n_out)
            fit_loss = self.fit_loss(header)
            progress = header.get("progress")
            if progress is not None and not isinstance(progress, dict):
                self.fail(f"{_HEADER} field 'progress' must be an object or null")
            little = dtype.newbyteorder("<")
            expected = [(_PARAMS, (n_params,))]
            expected += [(f"optimizer.{name}.npy", (n_params,))
                         for name in (optimizer_spec or {}).get("state", [])]
            self.check_arrays(header, members, expected, little)

            # the sizes bound every array by the file: building the model is safe now
            model = Model(layers, dtype=dtype, seed=0)
            self.read_array(members[_PARAMS], (n_params,), little, out=model.params)
            model.epochs_trained, model.training = epochs, training
            model.dropout_rng = dropout_rng
            model.classes, model.fit_loss = classes, fit_loss
            optimizer = None
            if optimizer_class is not None:
                buffers = {name: self.read_array(members[f"optimizer.{name}.npy"],
                                                 (n_params,), little)
                           for name in optimizer_spec["state"]}
                optimizer = self.optimizer(optimizer_class, optimizer_spec, buffers, model)
            return Checkpoint(model, optimizer, progress)

    # ------------------------------------------------------------ zip directory
    def members(self):
        infos = self.archive.infolist()
        if len(infos) > _MAX_MEMBERS:
            self.fail(f"the archive holds {len(infos)} members; a checkpoint has at most "
                      f"{_MAX_MEMBERS}")
        members = {}
        for info in infos:
            if info.filename in members:
                self.fail(f"the archive holds {info.filename!r} twice")
            members[info.filename] = info
        for name, info in members.items():
            if info.flag_bits & 0x41:       # bit 0: encrypted; bit 6: strong encryption
                self.fail(f"member {name!r} is encrypted; checkpoints are never encrypted")
            if info.compress_type != zipfile.ZIP_STORED:
                self.fail(f"member {name!r} is compressed; checkpoints store members "
                          "uncompressed")
            if info.compress_size != info.file_size:
                self.fail(f"member {name!r} declares {info.file_size} bytes but stores "
                          f"{info.compress_size}")
            if info.header_offset + info.compress_size > self.size:
                self.fail(f"member {name!r} declares {info.file_size} bytes, more than the "
                          f"file holds ({self.size} bytes): truncated or forged")
        return members

    # ------------------------------------------------------------------ header
    def header(self, members):
        info = members.get(_HEADER)
        if info is None:
            self.fail(f"no {_HEADER} in the archive; not a bpcore checkpoint")
        if info.file_size > _MAX_HEADER_BYTES:
            self.fail(f"{_HEADER} is {info.file_size} bytes; the limit is "
                      f"{_MAX_HEADER_BYTES}")
        with self.archive.open(info) as member:
            raw = member.read(_MAX_HEADER_BYTES + 1)
        check_json_cost(self.path, raw, _HEADER, self.size)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as error:   # bad UTF-8, JSON, huge ints
            self.fail(f"{_HEADER} is not valid JSON ({error})")
        if not isinstance(header, dict):
            self.fail(f"{_HEADER} must hold a JSON object; got {type(header).__name__}")
        if header.get("format") != FORMAT:
            self.fail(f"{_HEADER} names format {header.get('format')!r}; expected {FORMAT!r}")
        version = header.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            self.fail(f"{_HEADER} has no integer format version; got {version!r}")
        if version != VERSION:
            newer = "a newer" if version > VERSION else "an older"
            self.fail(f"format version {version} ({newer} bpcore wrote it); this bpcore "
                      f"reads version {VERSION} only")
        return header

    def field(self, mapping, key, kind, kind_words, where=_HEADER):
        value = mapping.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(f"{where} field {key!r} must be {kind_words}; got {value!r:.80}")
        return value

    def dtype(self, header):
        name = header.get("dtype")
        if name not in ("float32", "float64"):
            self.fail(f"{_HEADER} dtype must be 'float32' or 'float64'; got {name!r:.80}")
        return np.dtype(name)

    def layer(self, i, spec):
        where = f"{_HEADER} layers[{i}]"
        if not isinstance(spec, dict):
            self.fail(f"{where} must be an object; got {type(spec).__name__}")
        keys = set(spec)
        if not _LAYER_KEYS <= keys <= _LAYER_KEYS | {"dropout"}:
            self.fail(f"{where} must have the keys {sorted(_LAYER_KEYS)} (and 'dropout'); "
                      f"got {sorted(keys)}")
        options = {"negative_slope": spec["negative_slope"]}
        if spec.get("dropout", 0.0) != 0.0:
            options["dropout"] = spec["dropout"]
        try:
            return Dense(spec["n_in"], spec["n_out"], spec["activation"], **options)
        except (TypeError, ValueError) as error:
            self.fail(f"{where}: {error}")

    def optimizer_spec(self, header):
        spec = header.get("optimizer")
        if spec is None:
            return None, None
        where = f"{_HEADER} optimizer"
        if not isinstance(spec, dict):
            self.fail(f"{where} must be an object or null")
        name = self.field(spec, "class", str, "a class name", where)
        module = self.field(spec, "module", str, "a module name", where)
        self.field(spec, "hyperparameters", dict, "an object", where)
        self.field(spec, "steps", int, "an integer", where)
        state = self.field(spec, "state", list, "a list of buffer names", where)
        if not all(isinstance(s, str) and _NAME.match(s) for s in state) or \
                len(set(state)) != len(state):
            self.fail(f"{where} state must list distinct buffer names; got {state!r:.200}")
        # by name among Optimizer subclasses only: nothing is ever imported
        found = [cls for cls in _subclasses(Optimizer) if cls.__name__ == name]
        if len(found) > 1:
            found = [cls for cls in found if cls.__module__ == module]
        if len(found) != 1:
            self.fail(f"{where} class {name!r} (from {module!r}) is not a known bpcore "
                      "Optimizer; define or import it before loading")
        return found[0], spec

    # ------------------------------------------------------------------ arrays
    def check_arrays(self, header, members, expected, dtype):
        declared = header.get("arrays")
        wanted = [{"name": name, "shape": list(shape), "dtype": dtype.str}
                  for name, shape in expected]
        if declared != wanted:
            self.fail(f"{_HEADER} lists the arrays {declared!r:.300}; its architecture and "
                      f"optimizer need {wanted!r}")
        names = {name for name, _ in expected} | {_HEADER}
        unknown = sorted(set(members) - names)
        if unknown:
            self.fail(f"unexpected members {unknown!r:.200} in the archive")
        missing = sorted(names - set(members))
        if missing:
            self.fail(f"the archive lacks the members {missing}")
        for name, shape in expected:
            self.check_size(members[name], shape, dtype)

    def check_size(self, info, shape, dtype):
        nbytes = math.prod(shape) * dtype.itemsize
        # a version 1.0 .npy header takes 10 bytes and more, 2.0 12 bytes and more
        if not nbytes + 10 <= info.file_size <= nbytes + 12 + _MAX_NPY_HEADER:
            self.fail(f"member {info.filename!r} holds {info.file_size} bytes; an array of "
                      f"shape {tuple(shape)} and dtype {dtype} needs {nbytes} plus its header")
        return nbytes

    def read_array(self, info, shape, dtype, out=None):
        """Check the member's .npy header against (shape, dtype), then read its data."""
        name = info.filename
        nbytes = self.check_size(info, shape, dtype)
        with self.archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            read_header = npy_header_reader(version)
            if read_header is None:
                self.fail(f"member {name!r} is .npy version {version}; expected 1.0 or 2.0")
            found_shape, fortran_order, found_dtype = read_header(
                member, max_header_size=_MAX_NPY_HEADER)
            if found_dtype.hasobject:
                self.fail(f"member {name!r} holds Python objects (a pickle); checkpoints "
                          "never load those")
            if found_shape != tuple(shape) or found_dtype != dtype or fortran_order:
                self.fail(f"member {name!r} declares shape {found_shape!r:.80} and dtype "
                          f"{found_dtype!s:.80}{' (Fortran order)' if fortran_order else ''}; "
                          f"the architecture needs shape {tuple(shape)} and dtype {dtype}")
            if info.file_size - member.tell() != nbytes:
                self.fail(f"member {name!r} holds {info.file_size - member.tell()} data bytes; "
                          f"shape {tuple(shape)} needs {nbytes}")
            if out is None or out.dtype != dtype:
                target = np.empty(shape, dtype)
            else:
                target = out
            view = memoryview(target).cast("B")
            done = 0
            while done < nbytes:
                count = member.readinto(view[done:done + _READ_CHUNK])
                if not count:
                    self.fail(f"member {name!r} ends after {done} of {nbytes} data bytes")
                done += count
            if member.read(1):   # reaching the end also checks the CRC
                self.fail(f"member {name!r} holds more data than its shape")
        if out is not None and target is not out:
            out[...] = target
            return out
        return target

    # ------------------------------------------------------------ model state
    def model_state(self, header):
        """``(epochs_trained, training, dropout_rng)`` from the header."""
        where = f"{_HEADER} model_state"
        state = self.field(header, "model_state", dict, "an object")
        epochs = self.field(state, "epochs_trained", int, "an integer", where)
        training = self.field(state, "training", bool, "true or false", where)
        if epochs < 0:
            self.fail(f"{where} epochs_trained must be >= 0; got {epochs}")
        rng = self.field(state, "dropout_rng", dict, "an object", where)
        kind = _BIT_GENERATORS.get(rng.get("bit_generator"))
        if kind is None:
            self.fail(f"{where} dropout_rng names bit generator "
                      f"{rng.get('bit_generator')!r:.80}; expected one of "
                      f"{sorted(_BIT_GENERATORS)}")
        bit_generator = kind()
        try:
            bit_generator.state = rng.get("state")
        except (TypeError, ValueError, KeyError, OverflowError) as error:
            self.fail(f"{where} dropout_rng state is invalid ({error})")
        return epochs, training, np.random.Generator(bit_generator)

    def classes(self, header, n_out):
        """``model.classes`` from the header (None when absent: an older file)."""
        where = f"{_HEADER} model_state classes"
        spec = header["model_state"].get("classes")
        if spec is None:
            return None
        if not isinstance(spec, dict) or set(spec) != {"dtype", "values"}:
            self.fail(f"{where} must be null or an object with the keys dtype and values")
        try:
            dtype = np.dtype(spec["dtype"]) if isinstance(spec["dtype"], str) else None
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind not in _CLASS_KINDS or dtype.hasobject or \
                (dtype.kind == "U" and dtype.itemsize > 4 * _MAX_LABEL_CHARS):
            self.fail(f"{where} dtype must name strings, integers, floats or bools; got "
                      f"{spec['dtype']!r:.80}")
        values = spec["values"]
        kind = _CLASS_KINDS[dtype.kind]
        if not isinstance(values, list) or len(values) not in _class_counts(n_out) or \
                not all(type(value) is kind for value in values):
            self.fail(f"{where} values must be a list of {_class_counts(n_out)} "
                      f"{kind.__name__} labels for {n_out} outputs; got {values!r:.200}")
        try:
            classes = np.array(values, dtype=dtype)
        except (OverflowError, ValueError) as error:
            self.fail(f"{where} values do not fit dtype {dtype} ({error})")
        if classes.tolist() != values or np.unique(classes).tolist() != values:
            self.fail(f"{where} values must be distinct and sorted, and fit dtype {dtype}; "
                      f"got {values!r:.200}")
        return classes

    def fit_loss(self, header):
        """``model.fit_loss`` from the header (None when absent or not built in)."""
        spec = header["model_state"].get("fit_loss")
        if spec is None:
            return None
        if not isinstance(spec, dict) or spec.get("name") not in LOSSES or \
                spec.get("reduction") not in REDUCTIONS or len(spec) != 2:
            self.fail(f"{_HEADER} model_state fit_loss must be null or name one of "
                      f"{sorted(LOSSES)} with a reduction among {REDUCTIONS}; got "
                      f"{spec!r:.200}")
        return LOSSES[spec["name"]](reduction=spec["reduction"])

    def optimizer(self, cls, spec, buffers, model):
        where = f"{_HEADER} optimizer"
        hyper = spec["hyperparameters"]
        if set(hyper) != set(cls._hyper):
            self.fail(f"{where} hyperparameters of {cls.__name__} must be "
                      f"{sorted(cls._hyper)}; got {sorted(hyper)!r:.200}")
        try:
            optimizer = cls(model, **hyper)
            optimizer.load_state_dict({"optimizer": cls.__name__, "hyperparameters": hyper,
                                       "steps": spec["steps"], "state": buffers})
        except (TypeError, ValueError) as error:
            self.fail(f"{where} ({cls.__name__}): {error}")
        return optimizer


def _subclasses(cls: type[Optimizer]) -> list[type[Optimizer]]:
    """Every subclass of ``cls``, recursively, each once."""
    seen, stack = [], list(cls.__subclasses__())
    while stack:
        sub = stack.pop()
        if sub not in seen:
            seen.append(sub)
            stack.extend(sub.__subclasses__())
    return seen


register_convenience("save", save)
