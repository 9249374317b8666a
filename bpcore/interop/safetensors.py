"""bpcore models as ``.safetensors`` files, with torch's names and layouts.

- ``save_safetensors(model, path)``: write the model's parameters, named and shaped as
  ``bpcore.interop.torch.state_dict(model)`` names them (``0.weight`` of shape
  (n_out, n_in), ``0.bias``, ``{i}.scale`` for scaled sigmoid units), with the
  architecture in the file's metadata; atomically, as ``Model.save`` writes ``.bpc``;
- ``load_safetensors(path)``: the ``Model`` such a file holds;
- ``safetensors_metadata(model)``: that metadata, for files written with the
  ``safetensors`` package itself (``safetensors.torch.save_file(to_torch(model)
  .state_dict(), path, metadata=safetensors_metadata(model))``).

The format is read and written here with numpy alone: an 8-byte little-endian header
length N, N bytes of JSON (``{name: {"dtype", "shape", "data_offsets"}, ...,
"__metadata__": {str: str}}``), then the tensors' raw little-endian bytes. The
``safetensors`` package is not needed (it is used by the tests, as a peer), and doing
the reading here lets the same hostile-file rules hold as for ``.bpc`` checkpoints:
the header length is checked against the file size and a cap before it is read, the
JSON, every tensor's dtype, shape and offsets and the set of names are checked
against the architecture in the metadata before the model is built, so nothing
larger than the file is allocated, and nothing in the file is executed. Whatever is
wrong becomes one ``CheckpointError`` naming the file and the fault.

The metadata (all values strings, as the format requires):

    bpcore.format        "bpcore-safetensors"
    bpcore.version       "1"
    bpcore.architecture  JSON: {"dtype": "float32" | "float64", "layers": [{"n_in",
                         "n_out", "activation", "negative_slope", "dropout"}, ...]}

Other metadata keys are allowed and ignored. A model's optimizer, training progress,
classes and dropout generator are not kept: for those use ``.bpc`` checkpoints.
"""
from __future__ import annotations

import io
import json
import math
import os
from typing import IO, Any, NoReturn

import numpy as np

from ..checkpoint import _check_path, _replace_atomically, check_json_cost, fail, read_guarded
from ..nn.layers import Dense
from ..nn.model import Model
from .torch import _check_model, _layer_names

__all__ = ["FORMAT", "VERSION", "load_safetensors", "safetensors_metadata",
           "save_safetensors"]

FORMAT = "bpcore-safetensors"
VERSION = 1

_MAX_HEADER_BYTES = 16 * 2**20      # names, shapes, offsets and the architecture
_MAX_DEPTH = 32                     # nesting of the header's JSON
_DTYPES = {"float32": "F32", "float64": "F64"}
_LAYER_KEYS = {"n_in", "n_out", "activation", "negative_slope", "dropout"}
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}
_READ_CHUNK = 16 * 2**20


# -------------------------------------------------------------------------- save
def safetensors_metadata(model: Model) -> dict[str, str]:
    """The ``__metadata__`` that ``save_safetensors`` writes for ``model``: the format
    name and version and the architecture as JSON (layer sizes, activations, negative
    slopes, dropout rates, dtype)."""
    model = _check_model(model)
    architecture = {
        "dtype": model.dtype.name,
        "layers": [{"n_in": layer.n_in, "n_out": layer.n_out,
                    "activation": layer.activation,
                    "negative_slope": float(layer.negative_slope),
                    "dropout": float(layer.dropout)} for layer in model.layers],
    }
    return {"bpcore.format": FORMAT, "bpcore.version": str(VERSION),
            "bpcore.architecture": json.dumps(architecture, ensure_ascii=True)}


def save_safetensors(model: Model, path: str | os.PathLike[str]) -> None:
    """Write ``model``'s parameters to ``path`` in the safetensors format, atomically.

    The tensors have the names, shapes and order of
    ``bpcore.interop.torch.state_dict(model)`` (so ``safetensors.torch.load_file``
    gives a dict that ``to_torch(model).load_state_dict`` takes with
    ``strict=True``), in the model's dtype; the metadata holds the architecture
    (``safetensors_metadata(model)``). ``path`` is used exactly as given. As
    ``Model.save``: everything is checked before a file is created, the bytes go to a
    temporary file beside ``path`` which is fsynced and renamed over it, and a save
    that fails leaves an existing file untouched.
    """
    model = _check_model(model)
    path = _check_path(path)
    metadata = safetensors_metadata(model)
    code = _DTYPES[model.dtype.name]
    little = model.dtype.newbyteorder("<")
    header: dict[str, Any] = {"__metadata__": metadata}
    arrays: list[np.ndarray] = []
    offset = 0
    for name, layer, attr, transposed in _layer_names(model.layers):
        array = getattr(layer, attr)
        array = np.ascontiguousarray(array.T if transposed else array, dtype=little)
        header[name] = {"dtype": code, "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
        arrays.append(array)
    text = json.dumps(header, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    # pad with spaces so the data starts 8-byte aligned, as the safetensors package does
    text += b" " * (-len(text) % 8)
    _replace_atomically(path, lambda file: _write_file(file, text, arrays))


def _write_file(file: IO[bytes], header: bytes, arrays: list[np.ndarray]) -> None:
    """The whole file into an open binary file (no atomicity here)."""
    file.write(len(header).to_bytes(8, "little"))
    file.write(header)
    for array in arrays:
        _write_data(file, array)


def _write_data(file: IO[bytes], array: np.ndarray) -> None:
    """One tensor's raw bytes."""
    file.write(array.data.cast("B"))


# -------------------------------------------------------------------------- load
def load_safetensors(path: str | os.PathLike[str]) -> Model:
    """The ``Model`` in a safetensors file written by ``save_safetensors`` (or by the
    ``safetensors`` package with ``safetensors_metadata(model)`` as its metadata).

    The model holds the file's tensors bit for bit, in the dtype of its
    architecture, in training mode. Raises ``bpcore.CheckpointError`` (a
    ValueError) for anything that is not such a file (truncated, corrupt, hostile,
    no bpcore architecture in the metadata, tensors that do not match it);
    ``OSError`` (e.g. FileNotFoundError) when the file cannot be opened. Nothing in
    the file is executed, and nothing larger than the file is allocated.
    """
    return read_guarded(path, lambda path, file: _Reader(path, file).read())


def _no_constant(name: str) -> NoReturn:
    """Refuse NaN, Infinity and -Infinity, which JSON itself does not have."""
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict; a ValueError when a key appears twice (which of the
    two would count differs between readers)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r:.80} appears twice")
        result[key] = value
    return result


def _depth(value: Any, limit: int) -> bool:
    """True when ``value`` nests no deeper than ``limit`` lists/objects."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return True


class _Reader:
    """One load: every check raises ``CheckpointError`` through ``fail``."""

    def __init__(self, path: str, file: io.BufferedReader) -> None:
        self.path = path
        self.file = file
        self.size = os.fstat(file.fileno()).st_size

    def fail(self, reason: str) -> NoReturn:
        fail(self.path, reason)

    def json(self, raw: bytes, what: str) -> Any:
        check_json_cost(self.path, raw, what, self.size)
        try:
            value = json.loads(raw.decode("utf-8"), parse_constant=_no_constant,
                               object_pairs_hook=_no_duplicates)
        except (ValueError, RecursionError) as error:   # bad UTF-8, JSON, huge ints
            self.fail(f"{what} is not valid JSON ({error})")
        if not isinstance(value, dict):
            self.fail(f"{what} must hold a JSON object; got {type(value).__name__}")
        if not _depth(value, _MAX_DEPTH):
            self.fail(f"{what} nests deeper than {_MAX_DEPTH} levels")
        return value

    def read(self) -> Model:
        if self.size < 8:
            self.fail(f"the file holds {self.size} bytes; a safetensors file starts with "
                      "an 8-byte header length (truncated?)")
        length = int.from_bytes(self.file.read(8), "little")
        if length > self.size - 8:
            self.fail(f"the header length is {length} bytes, more than the file holds "
                      f"after it ({self.size - 8}): truncated or forged")
        if length > _MAX_HEADER_BYTES:
            self.fail(f"the header length is {length} bytes; the limit is "
                      f"{_MAX_HEADER_BYTES}")
        raw = self.file.read(length)
        if len(raw) != length:
            self.fail(f"the header ends after {len(raw)} of {length} bytes")
        header = self.json(raw, "the header")
        layers, dtype = self.architecture(header.pop("__metadata__", None))
        data_size = self.size - 8 - length
        expected = self.check_tensors(header, layers, dtype, data_size)

        # every tensor is checked against the architecture and the file: build now
        model = Model(layers, dtype=dtype.name, seed=0)
        little = dtype.newbyteorder("<")
        start = 8 + length
        for name, layer, attr, transposed in _layer_names(model.layers):
            target = getattr(layer, attr)
            shape, (begin, _) = expected[name]
            if transposed or little != target.dtype:
                buffer = np.empty(shape, little)
            else:
                buffer = target
            self.read_into(buffer, start + begin, name)
            if buffer is not target:
                target[...] = buffer.T if transposed else buffer
        return model

    # ------------------------------------------------------------ the metadata
    def architecture(self, metadata: Any) -> tuple[list[Dense], np.dtype[Any]]:
        if metadata is None:
            self.fail("the header has no __metadata__, so no bpcore architecture; read a "
                      "plain torch file with safetensors.torch.load_file and "
                      "bpcore.interop.torch.load_state_dict instead")
        if not isinstance(metadata, dict) or \
                not all(isinstance(value, str) for value in metadata.values()):
            self.fail(f"__metadata__ must map names to strings; got {metadata!r:.200}")
        if metadata.get("bpcore.format") != FORMAT:
            self.fail(f"__metadata__ names bpcore.format "
                      f"{metadata.get('bpcore.format')!r:.80}; expected {FORMAT!r}")
        if metadata.get("bpcore.version") != str(VERSION):
            self.fail(f"__metadata__ names bpcore.version "
                      f"{metadata.get('bpcore.version')!r:.80}; this bpcore reads version "
                      f"{VERSION} only")
        text = metadata.get("bpcore.architecture")
        if text is None:
            self.fail("__metadata__ has no bpcore.architecture")
        where = "__metadata__ bpcore.architecture"
        spec = self.json(text.encode("utf-8"), where)
        if set(spec) != {"dtype", "layers"}:
            self.fail(f"{where} must have the keys ['dtype', 'layers']; got "
                      f"{sorted(spec)!r:.200}")
        if spec["dtype"] not in _DTYPES:
            self.fail(f"{where} dtype must be 'float32' or 'float64'; got "
                      f"{spec['dtype']!r:.80}")
        specs = spec["layers"]
        if not isinstance(specs, list) or not specs:
            self.fail(f"{where} layers must be a non-empty list; got {specs!r:.80}")
        layers = [self.layer(f"{where} layers[{i}]", item) for i, item in enumerate(specs)]
        for i in range(len(layers) - 1):
            if layers[i].n_out != layers[i + 1].n_in:
                self.fail(f"{where} layers[{i}] has n_out={layers[i].n_out} but "
                          f"layers[{i + 1}] has n_in={layers[i + 1].n_in}")
        return layers, np.dtype(spec["dtype"])

    def layer(self, where: str, spec: Any) -> Dense:
        if not isinstance(spec, dict) or set(spec) != _LAYER_KEYS:
            self.fail(f"{where} must be an object with the keys {sorted(_LAYER_KEYS)}; got "
                      f"{spec!r:.200}")
        for key in ("n_in", "n_out"):
            value = spec[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self.fail(f"{where} {key} must be a positive integer; got {value!r:.80}")
        for key in ("negative_slope", "dropout"):
            value = spec[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(f"{where} {key} must be a number; got {value!r:.80}")
        try:
            return Dense(spec["n_in"], spec["n_out"], spec["activation"],
                         negative_slope=spec["negative_slope"], dropout=spec["dropout"])
        except (TypeError, ValueError) as error:
            self.fail(f"{where}: {error}")

    # ------------------------------------------------------------- the tensors
    def check_tensors(self, header: dict[str, Any], layers: list[Dense],
                      dtype: np.dtype[Any], data_size: int
                      ) -> dict[str, tuple[tuple[int, ...], tuple[int, int]]]:
        """Names, dtypes, shapes and offsets against the architecture and the file;
        ``{name: (shape, (begin, end))}``."""
        shapes = {}
        for name, layer, attr, transposed in _layer_names(layers):
            shape = (layer.n_in, layer.n_out) if attr == "W" else (layer.n_out,)
            shapes[name] = shape[::-1] if transposed else shape
        missing = [name for name in shapes if name not in header]
        unexpected = [name for name in header if name not in shapes]
        if missing or unexpected:
            self.fail(f"the tensors do not match the architecture in the metadata: "
                      f"missing {missing!r:.200}, unexpected {unexpected!r:.200}")
        code = _DTYPES[dtype.name]
        found: dict[str, tuple[tuple[int, ...], tuple[int, int]]] = {}
        for name, shape in shapes.items():
            entry = header[name]
            where = f"tensor {name!r}"
            if not isinstance(entry, dict) or set(entry) != _ENTRY_KEYS:
                self.fail(f"{where} must be an object with the keys {sorted(_ENTRY_KEYS)}; "
                          f"got {entry!r:.200}")
            if entry["dtype"] != code:
                self.fail(f"{where} has dtype {entry['dtype']!r:.20}; the architecture "
                          f"({dtype.name}) needs {code!r}")
            if entry["shape"] != list(shape):
                self.fail(f"{where} has shape {entry['shape']!r:.80}; the architecture "
                          f"needs {list(shape)}")
            offsets = entry["data_offsets"]
            if not isinstance(offsets, list) or len(offsets) != 2 or not all(
                    type(value) is int and value >= 0 for value in offsets):
                self.fail(f"{where} data_offsets must be two integers >= 0; got "
                          f"{offsets!r:.80}")
            begin, end = offsets
            nbytes = math.prod(shape) * dtype.itemsize
            if end - begin != nbytes:
                self.fail(f"{where} data_offsets {offsets} span {end - begin} bytes; shape "
                          f"{list(shape)} of {dtype.name} needs {nbytes}")
            if end > data_size:
                self.fail(f"{where} data_offsets {offsets} reach beyond the "
                          f"{data_size} data bytes the file holds: truncated or forged")
            found[name] = (shape, (begin, end))
        # the tensors must tile the data exactly: no overlap, no gap, nothing after
        position = 0
        for name, (_, (begin, end)) in sorted(found.items(), key=lambda item: item[1][1]):
            if begin != position:
                kind = "overlaps the tensor before it" if begin < position else \
                    "leaves a gap after the tensor before it"
                self.fail(f"tensor {name!r} at data_offsets {[begin, end]} {kind} "
                          f"(which ends at {position})")
            position = end
        if position != data_size:
            self.fail(f"the file holds {data_size} data bytes; its tensors take {position}")
        return found

    def read_into(self, array: np.ndarray, offset: int, name: str) -> None:
        view = array.data.cast("B")
        self.file.seek(offset)
        done = 0
        while done < len(view):
            count = self.file.readinto(view[done:done + _READ_CHUNK])
            if not count:
                self.fail(f"tensor {name!r} ends after {done} of {len(view)} bytes")
            done += count
