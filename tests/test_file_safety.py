"""The file-safety contract of ``bp.load`` / ``load_checkpoint`` and ``load_safetensors``
(docs/reliability.md, "Files"): only regular files are read, never blocking; memory
stays within a small multiple of the file's size whatever the file declares; every
refusal is one ``CheckpointError`` without a chained traceback; and ``save`` and
``load`` agree on what a checkpoint may hold.

The oracles: ``tracemalloc`` (the bytes Python really allocated), ``zipfile`` itself
(the hostile case does bite a plain reader), and the saved objects themselves.
"""
import io
import json
import os
import re
import stat
import struct
import threading
import traceback
import tracemalloc
import zipfile

import numpy as np
import pytest

import bpcore as bp
from bpcore import checkpoint
from bpcore.checkpoint import CheckpointError, json_cost
from bpcore.interop.safetensors import load_safetensors, save_safetensors

MiB = 2**20
#: the promise: a load allocates at most this much (file size -> bytes)
def memory_bound(size):
    return 3 * size + 24 * MiB


LOADERS = {"load": bp.load, "load_checkpoint": bp.load_checkpoint,
           "load_safetensors": load_safetensors}


def make_model(n_in=4, n_hidden=6, n_out=3, dtype=np.float64):
    return bp.Model([bp.Dense(n_in, n_hidden, "tanh"), bp.Dense(n_hidden, n_out)],
                    dtype=dtype, seed=0)


def assert_one_error(error):
    """No second traceback: neither an explicit cause nor a shown context."""
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    text = "".join(traceback.format_exception(error))
    assert "During handling of the above exception" not in text
    assert "The above exception was the direct cause" not in text


def peak_of(call):
    """(the exception ``call`` raised or None, tracemalloc's peak in bytes)."""
    tracemalloc.start()
    try:
        try:
            call()
            error = None
        except Exception as caught:     # noqa: BLE001 (returned to the caller to check)
            error = caught
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return error, peak


# ------------------------------------------------------------ not regular files
def _load_in_thread(loader, path):
    """Run the loader in a daemon thread; (finished, result or exception)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = loader(path)
        except BaseException as error:     # noqa: BLE001 (inspected by the test)
            outcome["value"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    return not thread.is_alive(), outcome.get("value"), thread


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
@pytest.mark.parametrize("loader", LOADERS)
def test_a_fifo_is_refused_without_blocking(tmp_path, loader):
    path = tmp_path / "model.bpc"
    os.mkfifo(path)
    finished, value, thread = _load_in_thread(LOADERS[loader], path)
    if not finished:
        # unblock the stuck reader so the thread ends, then fail
        with open(path, "wb"):
            pass
        thread.join(60)
        pytest.fail("loading a FIFO blocked waiting for a writer")
    assert isinstance(value, CheckpointError), value
    assert "FIFO" in str(value) and "regular file" in str(value) and str(path) in str(value)
    assert_one_error(value)


@pytest.mark.skipif(not os.path.exists("/dev/zero") or not hasattr(os, "symlink"),
                    reason="needs /dev/zero and symlinks")
@pytest.mark.parametrize("loader", LOADERS)
def test_a_symlink_to_dev_zero_is_refused_before_reading(tmp_path, loader):
    path = tmp_path / "model.bpc"
    os.symlink("/dev/zero", path)
    assert stat.S_ISCHR(os.stat(path).st_mode)        # the case is what it claims
    error, peak = peak_of(lambda: LOADERS[loader](path))
    assert isinstance(error, CheckpointError), error
    assert "character device" in str(error) and "regular file" in str(error)
    assert_one_error(error)
    assert peak < MiB


@pytest.mark.parametrize("loader", LOADERS)
def test_a_symlink_to_a_regular_checkpoint_loads(tmp_path, loader):
    model = make_model()
    target = tmp_path / "real.bpc"
    (save_safetensors(model, target) if loader == "load_safetensors"
     else bp.Model.save(model, target))
    link = tmp_path / "link.bpc"
    os.symlink(target, link)
    loaded = LOADERS[loader](link)
    loaded = getattr(loaded, "model", loaded)
    assert loaded.params.tobytes() == model.params.tobytes()


@pytest.mark.parametrize("loader", LOADERS)
def test_a_folder_is_refused_as_a_folder(tmp_path, loader):
    with pytest.raises(IsADirectoryError, match="folder"):
        LOADERS[loader](tmp_path)


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("path, came", [(None, "got NoneType"), (3, "got int 3"),
                                        (b"model.bpc", "got b'model.bpc'"), ("", "got ''")])
def test_a_path_that_is_not_a_path_names_path(loader, path, came):
    with pytest.raises(TypeError, match=r"(?s)^path must be a (non-empty )?str.*" +
                       re.escape(came)):
        LOADERS[loader](path)


# ------------------------------------------------------------ hostile archives
def saved_checkpoint(path, optimizer=True):
    model = make_model()
    opt = bp.Adam(model)
    X = np.linspace(-1, 1, 20).reshape(5, 4)
    model.loss_and_grad(X, np.array([0, 1, 2, 0, 1]), bp.CrossEntropyLoss())
    opt.step()
    checkpoint.save(path, model, opt if optimizer else None, progress={"epoch": 1})
    return model, opt


def members_of(path):
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def write_members(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members:
            archive.writestr(zipfile.ZipInfo(name), data)


def npy_bytes(descr, shape, data=b""):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


def with_header(path, change):
    members = []
    for name, data in members_of(path):
        if name == "header.json":
            header = json.loads(data)
            change(header)
            data = json.dumps(header).encode()
        members.append((name, data))
    write_members(path, members)


def _many_members(path):
    members = members_of(path)
    write_members(path, members + [(f"x{i}.npy", b"") for i in range(20_000)])


def _empty_lists_header(path):
    # 14 MB of "[], " in the progress: each costs ~64 bytes once parsed
    with_header(path, lambda h: h.update(progress={"pad": [[]] * 3_500_000}))


def _empty_dicts_header(path):
    with_header(path, lambda h: h.update(progress={"pad": [{}] * 3_000_000}))


def _huge_npy_shape(path):
    members = [(name, npy_bytes("<f8", (2**40, 3), b"\0" * 64) if name == "params.npy"
                else data) for name, data in members_of(path)]
    write_members(path, members)


def _huge_layers(path):
    def change(header):
        header["layers"] = [{"n_in": 10**6, "n_out": 10**6, "activation": "identity",
                             "negative_slope": 0.01}]
        header["optimizer"] = None
        header["arrays"] = [{"name": "params.npy", "shape": [10**12 + 10**6],
                             "dtype": "<f8"}]
    with_header(path, change)
    write_members(path, [(name, data) for name, data in members_of(path)
                         if not name.startswith("optimizer.")])


def _huge_zip64_directory(path):
    # a zip64 end record declaring a central directory of 2**40 bytes and entries
    data = path.read_bytes()
    at = data.rfind(b"PK\x05\x06")
    offset = at
    record = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, 2**40, 2**40,
                         2**40, 0)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, offset, 1)
    end = bytearray(data[at:at + 22])
    end[8:16] = b"\xff" * 8
    path.write_bytes(data[:at] + record + locator + bytes(end))


def _long_header_of_floats(path):
    # legitimate: a long training history (200k floats) is not refused
    with_header(path, lambda h: h.update(progress={"loss": [0.1234567890123] * 200_000}))


HOSTILE = {
    "20k-zip-members": (_many_members, "zip directory declares"),
    "15MB-header-of-empty-lists": (_empty_lists_header, "so many JSON values"),
    "header-of-empty-dicts": (_empty_dicts_header, "so many JSON values"),
    "npy-declares-2**40-rows": (_huge_npy_shape, "params.npy"),
    "layers-declare-10**12-weights": (_huge_layers, "params.npy"),
    "zip64-directory-of-2**40-bytes": (_huge_zip64_directory, "zip directory declares"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_checkpoint_costs_a_small_multiple_of_its_size(tmp_path, case):
    spoil, match = HOSTILE[case]
    path = tmp_path / "model.bpc"
    saved_checkpoint(path)
    spoil(path)
    size = path.stat().st_size
    error, peak = peak_of(lambda: bp.load(path))
    assert isinstance(error, CheckpointError), error
    assert match in str(error)
    assert_one_error(error)
    assert peak <= memory_bound(size), (peak, size)


def test_the_hostile_cases_bite_a_plain_reader(tmp_path):
    """The oracle for the cases above: without the checks, zipfile and json cost many
    times the file (the 20k entries) or numpy tries the declared shape."""
    path = tmp_path / "model.bpc"
    saved_checkpoint(path)
    _many_members(path)
    size = path.stat().st_size
    _, peak = peak_of(lambda: zipfile.ZipFile(path).infolist())
    assert peak > 2 * size
    path.unlink()
    saved_checkpoint(path)
    _empty_lists_header(path)
    with zipfile.ZipFile(path) as archive:
        raw = archive.read("header.json")
    _, peak = peak_of(lambda: json.loads(raw))
    assert peak > 10 * path.stat().st_size


def test_a_legitimate_long_header_loads_within_the_bound(tmp_path):
    path = tmp_path / "model.bpc"
    saved_checkpoint(path)
    _long_header_of_floats(path)
    size = path.stat().st_size
    result, peak = None, 0
    tracemalloc.start()
    try:
        result = bp.load_checkpoint(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.progress["loss"] == [0.1234567890123] * 200_000
    assert peak <= memory_bound(size)


def test_a_large_legitimate_checkpoint_loads_within_the_bound(tmp_path):
    model = make_model(200, 500, 200)          # ~200k parameters, Adam state twice that
    opt = bp.Adam(model)
    opt.buffers()
    opt.state["exp_avg"][...] = 0.5
    path = tmp_path / "big.bpc"
    checkpoint.save(path, model, opt)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        loaded = bp.load_checkpoint(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert loaded.model.params.tobytes() == model.params.tobytes()
    assert peak <= memory_bound(size)


def test_an_encrypted_member_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "model.bpc"
    saved_checkpoint(path)
    # set the "encrypted" bit of params.npy in its local header and directory entry
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        local = archive.getinfo("params.npy").header_offset
    central = data.find(b"PK\x01\x02" + data[local + 4:local + 6])
    while data[central + 46:central + 56] != b"params.npy":
        central = data.find(b"PK\x01\x02", central + 4)
    data[local + 6] |= 0x1
    data[central + 8] |= 0x1
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as archive, pytest.raises(RuntimeError, match="encrypted"):
        archive.open("params.npy")             # what a plain reader meets
    with pytest.raises(CheckpointError, match="'params.npy' is encrypted") as caught:
        bp.load(path)
    assert_one_error(caught.value)


# ------------------------------------------------------------ safetensors
def _write_safetensors(path, header, data=b""):
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


@pytest.mark.parametrize("case", ["empty-lists", "declared-length", "huge-shape"])
def test_hostile_safetensors_costs_a_small_multiple_of_its_size(tmp_path, case):
    path = tmp_path / "model.safetensors"
    model = make_model()
    save_safetensors(model, path)
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    if case == "empty-lists":
        header["pad"] = [[]] * 4_000_000
        _write_safetensors(path, header, raw[8 + length:])
        match = "so many JSON values"
    elif case == "declared-length":
        path.write_bytes((2**62).to_bytes(8, "little") + raw[8:])
        match = "more than the file holds"
    else:
        header["0.weight"]["shape"] = [2**40, 2**20]
        _write_safetensors(path, header, raw[8 + length:])
        match = "0.weight"
    size = path.stat().st_size
    error, peak = peak_of(lambda: load_safetensors(path))
    assert isinstance(error, CheckpointError), error
    assert match in str(error)
    assert_one_error(error)
    assert peak <= memory_bound(size)


# ------------------------------------------------------------ the JSON bound itself
N = 20_000
JSON_PATTERNS = {
    "empty-lists": b"[" + b",".join([b"[]"] * N) + b"]",
    "empty-dicts": b"[" + b",".join([b"{}"] * N) + b"]",
    "one-key-dicts": b"[" + b",".join([b'{"a":0}'] * N) + b"]",
    "three-key-dicts": b"[" + b",".join([b'{"a":1,"b":2,"c":3}'] * N) + b"]",
    "unique-keys": b"{" + b",".join(b'"k%d":[]' % i for i in range(N)) + b"}",
    "floats": b"[" + b",".join([b"1.5"] * N) + b"]",
    "ints": b"[" + b",".join(b"%d" % (i + 10**6) for i in range(N)) + b"]",
    "short-strings": b"[" + b",".join([b'"ab"'] * N) + b"]",
    "unique-strings": b"[" + b",".join(b'"s%d"' % i for i in range(N)) + b"]",
    "nested-pairs": b"[" + b",".join([b"[[1,2],[3,4]]"] * N) + b"]",
    "wide-unicode": b'["' + ("\U0001F600" * N).encode() + b'"]',
    "escaped-unicode": b'["' + b"\\ud83d\\ude00" * N + b'"]',
    "one-escape-widens-ascii": b'["\\ud83d\\ude00' + b"a" * (4 * N) + b'"]',
    "latin-1": b'["' + ("\u00e9" * N).encode() + b'"]',
    "big-ints": b"[" + b",".join([b"9" * 4000] * 20) + b"]",
    "literals": b"[" + b",".join([b"true", b"null"] * N) + b"]",
}


@pytest.mark.parametrize("pattern", JSON_PATTERNS)
def test_json_cost_bounds_what_parsing_allocates(pattern):
    raw = JSON_PATTERNS[pattern]
    value, peak = None, 0
    tracemalloc.start()
    try:
        value = json.loads(raw.decode("utf-8"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert value is not None
    assert peak <= json_cost(raw), (peak, json_cost(raw))


# ------------------------------------------------------------ save and load agree
def _optimizers(model):
    return {
        "sgd-momentum": bp.SGD(model, lr=0.1, momentum=0.9),
        "adam": bp.Adam(model),
        "rmsprop-centered": bp.RMSprop(model, momentum=0.5, centered=True),
        "rprop": bp.Rprop(model),
    }


@pytest.mark.parametrize("kind", ["sgd-momentum", "adam", "rmsprop-centered", "rprop"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_save_and_load_agree_on_nonfinite_optimizer_state(tmp_path, kind, bad):
    """A checkpoint keeps finite optimizer state only: ``save`` refuses what
    ``load_state_dict`` (and so ``load``) would refuse, before writing anything."""
    model = make_model()
    opt = _optimizers(model)[kind]
    X = np.linspace(-1, 1, 20).reshape(5, 4)
    model.loss_and_grad(X, np.ones((5, 3)), bp.MSELoss())
    opt.step()
    path = tmp_path / "model.bpc"
    checkpoint.save(path, model, opt)                 # a good file already there
    before = path.read_bytes()
    name = sorted(opt.state)[0]
    opt.state[name][3] = bad
    state = opt.state_dict()
    with pytest.raises(ValueError, match=rf"state_dict\['state'\]\['{name}'\].*NaN or inf"):
        opt.load_state_dict(state)
    with pytest.raises(ValueError, match=rf"optimizer state '{name}'.*NaN or infinity"):
        checkpoint.save(path, model, opt)
    assert path.read_bytes() == before                # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["model.bpc"]    # no stray temp file
    model.save(tmp_path / "model-only.bpc")           # without the optimizer: fine
    assert bp.load(tmp_path / "model-only.bpc").params.tobytes() == model.params.tobytes()


@pytest.mark.parametrize("kind", ["sgd-momentum", "adam", "rmsprop-centered", "rprop"])
def test_finite_optimizer_state_round_trips_bit_for_bit(tmp_path, kind):
    model = make_model()
    opt = _optimizers(model)[kind]
    X = np.linspace(-1, 1, 20).reshape(5, 4)
    for _ in range(3):
        model.loss_and_grad(X, np.ones((5, 3)), bp.MSELoss())
        opt.step()
    checkpoint.save(tmp_path / "m.bpc", model, opt)
    loaded = bp.load_checkpoint(tmp_path / "m.bpc")
    assert type(loaded.optimizer) is type(opt) and loaded.optimizer.steps == opt.steps
    assert loaded.optimizer.state.keys() == opt.state.keys()
    for name, buffer in opt.state.items():
        assert loaded.optimizer.state[name].tobytes() == buffer.tobytes()


def test_nonfinite_parameters_round_trip_both_ways(tmp_path):
    """Parameters are the model's own: NaN in them is saved and loaded as it is."""
    model = make_model()
    model.params[2], model.params[5] = float("nan"), -float("inf")
    model.save(tmp_path / "m.bpc")
    assert bp.load(tmp_path / "m.bpc").params.tobytes() == model.params.tobytes()
