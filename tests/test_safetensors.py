"""bpcore.interop.safetensors: .safetensors files with torch's names and layouts.

Oracles: the saved model itself (bit-for-bit equality), a small reader and writer of
the format written here from its specification (8-byte little-endian header length,
JSON header, raw little-endian data), and, where installed, the safetensors package
and PyTorch (peers, imported with importorskip).
"""
import json
import os
import tracemalloc

import numpy as np
import pytest

import bpcore as bp
from bpcore.checkpoint import CheckpointError
from bpcore.interop import safetensors as bs
from bpcore.interop.safetensors import load_safetensors, safetensors_metadata, save_safetensors

ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "scaled_sigmoid"]


def make_model(dtype="float64", seed=0):
    """Every activation once, a leaky_relu slope, dropout, and scales that are not
    their initial ones."""
    layers = [bp.Dense(3, 5, "sigmoid"), bp.Dense(5, 4, "scaled_sigmoid", dropout=0.25),
              bp.Dense(4, 6, "leaky_relu", negative_slope=0.3), bp.Dense(6, 4, "tanh"),
              bp.Dense(4, 3, "relu", dropout=0.5), bp.Dense(3, 2, "identity")]
    model = bp.Model(layers, dtype=dtype, seed=seed)
    model.params[...] = np.random.default_rng(seed).standard_normal(model.params.size)
    return model


# a reader and a writer of the format, from its specification
def read_raw(path):
    with open(path, "rb") as file:
        data = file.read()
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + length]), data[8 + length:]


def write_raw(path, header, data, length=None):
    text = json.dumps(header).encode()
    with open(path, "wb") as file:
        file.write((len(text) if length is None else length).to_bytes(8, "little"))
        file.write(text)
        file.write(data)


def expected_tensors(model):
    """torch's names and layouts, worked out by hand from the layers."""
    tensors, index = {}, 0
    for layer in model.layers:
        tensors[f"{index}.weight"] = layer.W.T
        tensors[f"{index}.bias"] = layer.b
        index += 1
        if layer.activation != "identity":
            if layer.activation == "scaled_sigmoid":
                tensors[f"{index}.scale"] = layer.c
            index += 1
        if layer.dropout > 0:
            index += 1
    return tensors


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_bit_for_bit(tmp_path, dtype):
    model = make_model(dtype)
    path = tmp_path / "model.safetensors"
    save_safetensors(model, path)
    back = load_safetensors(path)
    assert back.dtype == model.dtype
    assert back.params.tobytes() == model.params.tobytes()
    for a, b in zip(model.layers, back.layers):
        assert (a.n_in, a.n_out, a.activation, a.negative_slope, a.dropout) == \
            (b.n_in, b.n_out, b.activation, b.negative_slope, b.dropout)
    X = np.random.default_rng(1).standard_normal((7, 3)).astype(dtype)
    model.eval()
    back.eval()
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_each_activation_round_trips(tmp_path, activation):
    model = bp.Model([bp.Dense(2, 3, activation, negative_slope=0.125), bp.Dense(3, 1)],
                     dtype="float32", seed=3)
    model.params[...] = np.random.default_rng(4).standard_normal(model.params.size)
    save_safetensors(model, tmp_path / "m.safetensors")
    back = load_safetensors(tmp_path / "m.safetensors")
    assert back.layers[0].activation == activation
    assert back.layers[0].negative_slope == 0.125
    np.testing.assert_array_equal(back.params, model.params)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_file_follows_the_format(tmp_path, dtype):
    model = make_model(dtype)
    path = tmp_path / "m.safetensors"
    save_safetensors(model, path)
    header, data = read_raw(path)
    metadata = header.pop("__metadata__")
    assert metadata["bpcore.format"] == "bpcore-safetensors"
    assert metadata["bpcore.version"] == "1"
    architecture = json.loads(metadata["bpcore.architecture"])
    assert architecture["dtype"] == dtype
    assert architecture["layers"][2] == {"n_in": 4, "n_out": 6, "activation": "leaky_relu",
                                         "negative_slope": 0.3, "dropout": 0.0}
    assert architecture["layers"][1]["dropout"] == 0.25
    tensors = expected_tensors(model)
    assert list(header) == list(tensors)
    end = 0
    for name, array in tensors.items():
        entry = header[name]
        assert entry["dtype"] == {"float32": "F32", "float64": "F64"}[dtype]
        assert entry["shape"] == list(array.shape)
        begin, stop = entry["data_offsets"]
        assert begin == end
        found = np.frombuffer(data[begin:stop], dtype=np.dtype(dtype).newbyteorder("<"))
        np.testing.assert_array_equal(found.reshape(array.shape), array)
        end = stop
    assert end == len(data)
    # the data starts 8-byte aligned, as the safetensors package writes it
    length = int.from_bytes(path.read_bytes()[:8], "little")
    assert length % 8 == 0


# ------------------------------------------------------------- the peers
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_safetensors_package_reads_the_file_as_torch_names_it(tmp_path, dtype):
    torch = pytest.importorskip("torch")
    st_numpy = pytest.importorskip("safetensors.numpy")
    st_torch = pytest.importorskip("safetensors.torch")
    from bpcore.interop import torch as bt
    model = make_model(dtype)
    path = str(tmp_path / "m.safetensors")
    save_safetensors(model, path)
    expected = bt.state_dict(model)
    arrays = st_numpy.load_file(path)
    assert set(arrays) == set(expected)
    for name, tensor in expected.items():
        assert arrays[name].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(arrays[name], tensor.numpy())
    tensors = st_torch.load_file(path)
    assert set(tensors) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(tensors[name], tensor)
    net = bt.to_torch(bp.Model([bp.Dense(layer.n_in, layer.n_out, layer.activation,
                                         negative_slope=layer.negative_slope,
                                         dropout=layer.dropout) for layer in model.layers],
                               dtype=dtype, seed=9))
    net.load_state_dict(tensors, strict=True)
    net.eval()
    model.eval()
    X = np.random.default_rng(2).standard_normal((5, 3)).astype(dtype)
    with torch.no_grad():
        out = net(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(out, model.predict(X), rtol=1e-5 if dtype == "float32"
                               else 1e-12, atol=1e-6 if dtype == "float32" else 1e-12)
    from safetensors import safe_open
    with safe_open(path, "np") as file:
        assert file.metadata() == safetensors_metadata(model)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_file_the_safetensors_package_writes_loads(tmp_path, dtype):
    pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    from bpcore.interop import torch as bt
    model = make_model(dtype)
    path = str(tmp_path / "m.safetensors")
    metadata = {**safetensors_metadata(model), "format": "pt"}   # others' keys are kept out
    st_torch.save_file(bt.to_torch(model).state_dict(), path, metadata=metadata)
    back = load_safetensors(path)
    assert back.params.tobytes() == model.params.tobytes()
    assert [layer.activation for layer in back.layers] == \
        [layer.activation for layer in model.layers]
    # and without bpcore's metadata the file is refused with a pointer to the way out
    st_torch.save_file(bt.to_torch(model).state_dict(), path)
    with pytest.raises(CheckpointError, match="no __metadata__.*load_state_dict"):
        load_safetensors(path)


# ------------------------------------------------------------- hostile files
def truncate(header, data):
    return header, data[:-5]


def extra_bytes(header, data):
    return header, data + b"\0" * 8


def bad_offsets_overlap(header, data):
    # 0.bias (5 float64) moved onto the first 40 bytes of 0.weight
    header["0.bias"]["data_offsets"] = [0, 40]
    return header, data


def offsets_out_of_range(header, data):
    begin, end = header["0.bias"]["data_offsets"]
    header["0.bias"]["data_offsets"] = [begin + 10**6, end + 10**6]
    return header, data


def negative_offsets(header, data):
    header["0.bias"]["data_offsets"] = [-40, 0]
    return header, data


def float_offsets(header, data):
    header["0.bias"]["data_offsets"] = [float(v) for v in header["0.bias"]["data_offsets"]]
    return header, data


def wrong_dtype(header, data):
    header["0.bias"]["dtype"] = "F32"
    return header, data


def wrong_shape(header, data):
    header["0.weight"]["shape"] = header["0.weight"]["shape"][::-1]
    return header, data


def missing_tensor(header, data):
    del header["3.scale"]
    return header, data


def extra_tensor(header, data):
    header["99.weight"] = dict(header["0.bias"])
    return header, data


def no_metadata(header, data):
    del header["__metadata__"]
    return header, data


def _architecture(header, change):
    arch = json.loads(header["__metadata__"]["bpcore.architecture"])
    change(arch)
    header["__metadata__"]["bpcore.architecture"] = json.dumps(arch)
    return header


def nan_size(header, data):
    def change(arch):
        arch["layers"][0]["n_out"] = float("nan")
    return _architecture(header, change), data


def float_size(header, data):
    def change(arch):
        arch["layers"][0]["n_in"] = 3.0
    return _architecture(header, change), data


def wrong_activation(header, data):
    def change(arch):
        arch["layers"][0]["activation"] = "__import__('os')"
    return _architecture(header, change), data


def architecture_disagrees(header, data):
    def change(arch):
        arch["layers"][2]["activation"] = "identity"     # then "3.scale" is unexpected
        arch["layers"][1]["activation"] = "relu"
    return _architecture(header, change), data


def architecture_dtype(header, data):
    def change(arch):
        arch["dtype"] = "float16"
    return _architecture(header, change), data


def other_version(header, data):
    header["__metadata__"]["bpcore.version"] = "2"
    return header, data


def metadata_not_strings(header, data):
    header["__metadata__"]["bpcore.architecture"] = json.loads(
        header["__metadata__"]["bpcore.architecture"])
    return header, data


HOSTILE = {
    "truncated data": (truncate, "beyond|data bytes"),
    "bytes after the tensors": (extra_bytes, "data bytes; its tensors take"),
    "overlapping offsets": (bad_offsets_overlap, "overlaps|span"),
    "offsets out of range": (offsets_out_of_range, "beyond"),
    "negative offsets": (negative_offsets, "two integers >= 0"),
    "float offsets": (float_offsets, "two integers >= 0"),
    "wrong dtype": (wrong_dtype, "dtype 'F32'"),
    "wrong shape": (wrong_shape, "has shape"),
    "missing tensor": (missing_tensor, r"missing \['3.scale'\]"),
    "extra tensor": (extra_tensor, r"unexpected \['99.weight'\]"),
    "no metadata": (no_metadata, "no __metadata__"),
    "NaN size": (nan_size, "not valid JSON.*NaN"),
    "float size": (float_size, "n_in must be a positive integer"),
    "unknown activation": (wrong_activation, "activation must be one of"),
    "architecture disagrees": (architecture_disagrees, "do not match the architecture"),
    "architecture dtype": (architecture_dtype, "dtype must be 'float32' or 'float64'"),
    "another version": (other_version, "version '2'"),
    "metadata not strings": (metadata_not_strings, "map names to strings"),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=str)
def test_hostile_files_raise_one_clear_error(tmp_path, case):
    edit, message = HOSTILE[case]
    path = tmp_path / "m.safetensors"
    save_safetensors(make_model(), path)
    header, data = read_raw(path)
    # the unedited file, rewritten by the test's writer, loads: the edit is the fault
    write_raw(path, header, data)
    load_safetensors(path)
    header, data = edit(header, data)
    write_raw(path, header, data)
    with pytest.raises(CheckpointError, match=message) as info:
        load_safetensors(path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"cannot load checkpoint {str(path)!r}: ")
    assert_not_chained(info.value)


@pytest.mark.parametrize("raw, message", [
    (b"", "holds 0 bytes"),
    (b"\x10\0\0", "holds 3 bytes"),
    ((2**63).to_bytes(8, "little") + b"{}", "more than the file holds"),
    ((100).to_bytes(8, "little") + b"{}", "more than the file holds"),
    ((7).to_bytes(8, "little") + b"{\"a\":1,", "not valid JSON"),
    ((2).to_bytes(8, "little") + b"[]", "must hold a JSON object"),
    ((4).to_bytes(8, "little") + b"\xff\xfe{}", "not valid JSON"),
    ((15).to_bytes(8, "little") + b'{"a":1, "a":2 }', "appears twice"),
    ((2 * 10**5).to_bytes(8, "little") + b"[" * 10**5 + b"]" * 10**5,
     "not valid JSON|so many JSON values"),
], ids=["empty", "short", "length 2**63", "length beyond file", "bad JSON", "not an object",
        "bad UTF-8", "duplicate key", "deep nesting"])
def test_broken_headers_raise_one_clear_error(tmp_path, raw, message):
    path = tmp_path / "m.safetensors"
    path.write_bytes(raw)
    with pytest.raises(CheckpointError, match=message) as info:
        load_safetensors(path)
    assert_not_chained(info.value)


def assert_not_chained(error):
    """One error, no second traceback ("During handling of the above exception ...")."""
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


def test_a_header_over_the_cap_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_safetensors(make_model(), path)
    length = int.from_bytes(path.read_bytes()[:8], "little")
    monkeypatch.setattr(bs, "_MAX_HEADER_BYTES", length - 1)
    with pytest.raises(CheckpointError, match=f"the limit is {length - 1}"):
        load_safetensors(path)


@pytest.mark.parametrize("n", [10**6, 10**9, 2**40])
def test_huge_declared_shapes_allocate_nothing_of_their_size(tmp_path, n):
    # an architecture (and matching tensor entries) declaring n x n weights, in a
    # file of a few hundred bytes: refused, and memory stays far below n bytes
    arch = {"dtype": "float32", "layers": [{"n_in": n, "n_out": n, "activation": "identity",
                                            "negative_slope": 0.01, "dropout": 0.0}]}
    header = {"__metadata__": {"bpcore.format": "bpcore-safetensors", "bpcore.version": "1",
                               "bpcore.architecture": json.dumps(arch)},
              "0.weight": {"dtype": "F32", "shape": [n, n], "data_offsets": [0, 4 * n * n]},
              "0.bias": {"dtype": "F32", "shape": [n],
                         "data_offsets": [4 * n * n, 4 * n * n + 4 * n]}}
    path = tmp_path / "m.safetensors"
    write_raw(path, header, b"\0" * 64)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="beyond|can address"):
            load_safetensors(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10**6 <= n


def test_a_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_safetensors(tmp_path / "nothing.safetensors")


# ------------------------------------------------------------- saving
def test_a_failed_save_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    old = make_model(seed=1)
    save_safetensors(old, path)
    before = path.read_bytes()
    real = bs._write_data

    def write_half_then_fail(file, array):
        file.write(array.tobytes()[:array.nbytes // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bs, "_write_data", write_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        save_safetensors(make_model(seed=2), path)
    monkeypatch.setattr(bs, "_write_data", real)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]
    np.testing.assert_array_equal(load_safetensors(path).params, old.params)


def test_saving_overwrites_atomically_and_is_deterministic(tmp_path):
    path = tmp_path / "m.safetensors"
    save_safetensors(make_model(seed=1), path)
    model = make_model(seed=2)
    save_safetensors(model, path)
    first = path.read_bytes()
    save_safetensors(model, path)
    assert path.read_bytes() == first
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]
    np.testing.assert_array_equal(load_safetensors(path).params, model.params)


@pytest.mark.parametrize("model, path, error, message", [
    ("model", "m.safetensors", TypeError, "model must be a bpcore Model"),
    (None, 3, TypeError, "path must be"),
    (None, "", TypeError, "path must be"),
    (None, "missing/m.safetensors", FileNotFoundError, "folder of path"),
    (None, ".", IsADirectoryError, "is a folder"),
], ids=["not a model", "int path", "empty path", "no folder", "a folder"])
def test_bad_arguments_to_save_create_nothing(tmp_path, monkeypatch, model, path, error,
                                              message):
    monkeypatch.chdir(tmp_path)
    model = make_model() if model is None else model
    with pytest.raises(error, match=message):
        save_safetensors(model, path)
    assert os.listdir(tmp_path) == []


def test_metadata_of_a_non_model_is_a_type_error():
    with pytest.raises(TypeError, match="model must be a bpcore Model; got"):
        safetensors_metadata([1, 2])


DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "docs", "interop.md")


def test_the_safetensors_examples_of_docs_interop_run(tmp_path, capsys):
    # the section's blocks, including those the torch docs test leaves out (``py``),
    # run in order on a model of the page's kind; the claims in them are checked
    pytest.importorskip("torch")
    pytest.importorskip("safetensors.torch")
    if not os.path.exists(DOC):
        pytest.skip("docs/interop.md is not beside the tests")
    with open(DOC) as file:
        section = file.read().split("## safetensors files", 1)[1].split("\n## ", 1)[0]
    blocks = [part.split("```", 1)[0] for part in section.split("```py")[1:]]
    blocks = [block.removeprefix("thon") for block in blocks]
    assert len(blocks) == 3
    from bpcore.interop import torch as bt
    model = make_model("float32")
    path = str(tmp_path / "model.safetensors")
    namespace = {"bp": bp, "bt": bt, "model": model}
    exec(compile(blocks[0], DOC, "exec"), namespace)
    assert capsys.readouterr().out == "True\n"
    save_safetensors(model, path)        # the first block's file lived in a temporary folder
    namespace["path"] = path
    for block in blocks[1:]:
        exec(compile(block, DOC, "exec"), namespace)
    assert namespace["model"] is not model
    np.testing.assert_array_equal(namespace["model"].params, model.params)
