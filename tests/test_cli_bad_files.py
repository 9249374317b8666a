"""The command line over broken and hostile data and model files: every failure is one
line on stderr that names the file, with exit status 2, never a traceback.

Each row builds a file that breaks a plain reader in a known way (the oracle: what
``np.load`` or ``zipfile`` does with it, asserted where the case is about a library
error) and runs ``train``, ``evaluate`` and ``predict`` on it in-process; one row also
runs in a subprocess. Valid NPZ files of every layout are read exactly as ``np.load``
reads them.
"""
import io
import os
import re
import struct
import tokenize
import tracemalloc
import zipfile

import numpy as np
import pytest
from test_cli import bpcore as run_bpcore

from bpcore.cli import main
from bpcore.cli.data import _load_npz

GOOD_X = np.linspace(-1, 1, 24).reshape(8, 3)
GOOD_Y = np.array([0, 1, 0, 1, 0, 1, 0, 1])


def npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def zip_of(members, compression=zipfile.ZIP_STORED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def npy_header(header_text, version=(1, 0)):
    """A .npy magic and a header of exactly ``header_text`` (padded as numpy pads)."""
    text = header_text.encode("latin1")
    text += b" " * (-(len(text) + 10 + 1) % 64) + b"\n"
    return np.lib.format.magic(*version) + struct.pack("<H", len(text)) + text


def npy_declaring(shape, descr="<f8", data=b""):
    return npy_header(f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}") \
        + data


def patch_member(data, name, offset_local, offset_central, value):
    """Set one byte of member ``name``'s local header and directory entry."""
    data = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        local = archive.getinfo(name).header_offset
    central = data.find(b"PK\x01\x02")
    while data[central + 46:central + 46 + len(name)] != name.encode():
        central = data.find(b"PK\x01\x02", central + 4)
    data[local + offset_local] = value
    data[central + offset_central] = value
    return bytes(data)


def _truncated(fraction):
    def make():
        data = npz_bytes(X=GOOD_X, y=GOOD_Y)
        return data[:int(len(data) * fraction)]
    return make


def _bad_crc():
    data = bytearray(npz_bytes(X=GOOD_X, y=GOOD_Y))
    at = data.find(GOOD_X.tobytes()[:16])
    data[at + 3] ^= 0xFF
    return bytes(data)


def _compression(method):
    def make():
        stored = zip_of([("X.npy", npy_declaring((8, 3), data=GOOD_X.tobytes())),
                         ("y.npy", npy_declaring((8,), "<i8", GOOD_Y.tobytes()))])
        # claim the stored bytes are compressed with ``method`` (8 deflate, 14 lzma,
        # 99 AES): the decompressor then meets bytes that are not its stream
        return patch_member(stored, "X.npy", 8, 10, method)
    return make


def _deflate_cut():
    data = zip_of([("X.npy", npy_declaring((8, 3), data=GOOD_X.tobytes())),
                   ("y.npy", npy_declaring((8,), "<i8", GOOD_Y.tobytes()))],
                  zipfile.ZIP_DEFLATED)
    # the X member's compressed size made smaller: its stream ends early
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo("X.npy")
    data = bytearray(data)
    central = data.find(b"PK\x01\x02")
    size = struct.unpack("<I", data[central + 20:central + 24])[0]
    data[central + 20:central + 24] = struct.pack("<I", size // 2)
    data[info.header_offset + 18:info.header_offset + 22] = struct.pack("<I", size // 2)
    return bytes(data)


def _member_beyond_file():
    # X declares 40000 rows, and its zip entry 1 MiB: the file ends long before
    data = bytearray(zip_of([("X.npy", npy_declaring((40000, 3), data=GOOD_X.tobytes())),
                             ("y.npy", npy_declaring((8,), "<i8", GOOD_Y.tobytes()))]))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        local = archive.getinfo("X.npy").header_offset
    central = data.find(b"PK\x01\x02")         # X.npy's entry comes first
    size = struct.pack("<I", 2**20)
    data[central + 20:central + 28] = size + size
    data[local + 18:local + 26] = size + size
    return bytes(data)


def _encrypted():
    return patch_member(npz_bytes(X=GOOD_X, y=GOOD_Y), "X.npy", 6, 8, 0x1)


def _unterminated_header():
    return zip_of([("X.npy", npy_header("{'descr': '<f8', 'fortran_order': False, "
                                        "'shape': (8, 3"))])


def _no_dict_header():
    return zip_of([("X.npy", npy_header("[1, 2, 3]"))])


def _huge_shape():
    # about 300 bytes declaring 2**40 x 3 float64
    return zip_of([("X.npy", npy_declaring((2**40, 3), data=b"\0" * 48))])


def _huge_shape_deflated():
    return zip_of([("X.npy", npy_declaring((2**40, 3), data=b"\0" * 48))],
                  zipfile.ZIP_DEFLATED)


def _shape_beyond_data():
    return zip_of([("X.npy", npy_declaring((8, 3), data=GOOD_X.tobytes()[:40])),
                   ("y.npy", npy_declaring((8,), "<i8", GOOD_Y.tobytes()))])


def _declared_file_size_forged():
    data = npz_bytes(X=GOOD_X, y=GOOD_Y)
    data = bytearray(data)
    central = data.find(b"PK\x01\x02")
    data[central + 24:central + 28] = struct.pack("<I", 2**31)   # uncompressed size
    return bytes(data)


def _npy_version(major):
    def make():
        return zip_of([("X.npy", npy_header(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (8, 3), }", (major, 0))
            + GOOD_X.tobytes())])
    return make


NPZ_CASES = {
    "not-a-zip": (lambda: b"this is not a zip file at all", r"BadZipFile"),
    "empty": (lambda: b"", r"BadZipFile"),
    "truncated-10%": (_truncated(0.1), r"BadZipFile"),
    "truncated-60%": (_truncated(0.6), r"BadZipFile"),
    "truncated-99%": (_truncated(0.99), r"BadZipFile"),
    "bad-crc": (_bad_crc, r"BadZipFile.*CRC"),
    "deflate-of-stored-bytes": (_compression(8), r"error|zlib|deflate|Error"),
    "lzma-of-stored-bytes": (_compression(14), r"cannot read .* as NPZ: \w+"),
    "unknown-compression": (_compression(99), r"NotImplementedError"),
    "deflate-stream-cut": (_deflate_cut, r"cannot read .* as NPZ: \w+"),
    "member-beyond-the-file": (_member_beyond_file, r"more than the \d+-byte file"),
    "encrypted": (_encrypted, r"X\.npy is encrypted"),
    "unterminated-npy-header": (_unterminated_header, r"TokenError|ValueError|SyntaxError"),
    "npy-header-not-a-dict": (_no_dict_header, r"ValueError"),
    "npy-version-3": (_npy_version(3), r"version \(3, 0\)"),
    "npy-version-9": (_npy_version(9), r"ValueError|version"),
    "declares-2**40-rows": (_huge_shape, r"declares shape \(1099511627776, 3\)"),
    "declares-2**40-rows-deflated": (_huge_shape_deflated, r"declares"),
    "shape-beyond-data": (_shape_beyond_data, r"holds 40 data bytes"),
    "forged-member-size": (_declared_file_size_forged, r"declares 2147483648 bytes|holds"),
    "pickled-objects": (lambda: npz_bytes(X=np.array([[object()]], dtype=object)),
                        r"numeric array; got dtype object"),
    "strings": (lambda: npz_bytes(X=np.array([["a", "b"]]), y=np.array([1])),
                r"numeric array; got dtype <U1"),
    "complex": (lambda: npz_bytes(X=np.ones((2, 3), complex), y=np.ones(2)),
                r"numeric array; got dtype complex128"),
    "no-X": (lambda: npz_bytes(Z=GOOD_X), r"expected X"),
    "X-1-D": (lambda: npz_bytes(X=GOOD_X[0], y=GOOD_Y[:1]), r"2-D numeric array"),
    "y-too-short": (lambda: npz_bytes(X=GOOD_X, y=GOOD_Y[:3]), r"one row per sample"),
    "X-nan": (lambda: npz_bytes(X=np.where(GOOD_X > 0.9, np.nan, GOOD_X), y=GOOD_Y),
              r"X holds NaN or infinity \(first in row 7\)"),
    "X-inf": (lambda: npz_bytes(X=np.where(GOOD_X < -0.9, -np.inf, GOOD_X), y=GOOD_Y),
              r"X holds NaN or infinity \(first in row 0\)"),
    "y-nan": (lambda: npz_bytes(X=GOOD_X, y=np.where(GOOD_Y > 0, np.nan, 0.0)),
              r"y holds NaN or infinity"),
}

CSV_CASES = {
    "not-utf8": (lambda: b"a,b,c\n\xff\xfe\x00,1,2\n", r"UnicodeDecodeError"),
    "ragged": (lambda: b"1,2,3\n4,5\n", r"cannot read .* as numbers"),
    "words": (lambda: b"a,b,c\n1,two,3\n", r"cannot read .* as numbers"),
    "empty": (lambda: b"", r"holds no data rows"),
    "header-only": (lambda: b"a,b,c\n", r"holds no data rows"),
    "nan": (lambda: b"1,2,0\nnan,2,1\n3,4,0\n", r"holds NaN or infinity \(first in row 1\)"),
    "overflow": (lambda: b"1,2,0\n1e400,2,1\n3,4,0\n", r"holds NaN or infinity"),
    "binary-junk": (lambda: bytes(range(256)) * 4, r"cannot read"),
    "nul-bytes": (lambda: b"1,2,3\n\0\0\0\n", r"cannot read"),
}

COMMANDS = ["train", "evaluate", "predict"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A saved 3-input classifier for evaluate and predict."""
    folder = tmp_path_factory.mktemp("model")
    path = folder / "model.bpc"
    X = np.random.default_rng(0).normal(size=(40, 3))
    status = main(["train", "--data", str(_write(folder / "good.npz",
                                                 npz_bytes(X=X, y=(X[:, 0] > 0) * 1))),
                   "--epochs", "1", "--verbose", "0", "--out", str(path)])
    assert status == 0 and path.is_file()
    return path


def _write(path, data):
    path.write_bytes(data)
    return path


def _run(command, data_path, model_file, tmp_path):
    args = {"train": ["train", "--data", str(data_path), "--epochs", "1", "--verbose", "0",
                      "--out", str(tmp_path / "out.bpc")],
            "evaluate": ["evaluate", str(model_file), "--data", str(data_path)],
            "predict": ["predict", str(model_file), "--data", str(data_path),
                        "--output", str(tmp_path / "out.csv")]}[command]
    return main(args)


def assert_one_line(status, err, path, command, match):
    assert status == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"bpcore {command}: error: "), err
    assert str(path) in lines[0], err
    assert re.search(match, lines[0]), (match, err)


@pytest.mark.parametrize("case, command", [
    (case, command) for case in NPZ_CASES for command in COMMANDS
    if not (command == "predict" and case.startswith("y-"))])    # predict reads no y
def test_broken_npz_is_one_line_naming_the_file(case, command, model_file, tmp_path, capsys):
    make, match = NPZ_CASES[case]
    path = _write(tmp_path / "data.npz", make())
    status = _run(command, path, model_file, tmp_path)
    out, err = capsys.readouterr()
    assert_one_line(status, err, path, command, match)
    assert not (tmp_path / "out.bpc").exists() and not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", CSV_CASES)
def test_broken_csv_is_one_line_naming_the_file(case, command, model_file, tmp_path, capsys):
    make, match = CSV_CASES[case]
    path = _write(tmp_path / "data.csv", make())
    status = _run(command, path, model_file, tmp_path)
    out, err = capsys.readouterr()
    assert_one_line(status, err, path, command, match)


# ------------------------------------------------------------ the oracles
@pytest.mark.parametrize("case, expected", [
    ("truncated-60%", zipfile.BadZipFile), ("bad-crc", zipfile.BadZipFile),
    ("deflate-stream-cut", zipfile.BadZipFile), ("unknown-compression", NotImplementedError),
    ("encrypted", RuntimeError), ("unterminated-npy-header", tokenize.TokenError),
    # Python 3.13's zipfile sees the overlap before reading; older ones run out of bytes.
    ("member-beyond-the-file", (EOFError, zipfile.BadZipFile)),
    ("declares-2**40-rows", MemoryError),
])
def test_the_library_errors_are_what_the_cases_claim(case, expected, tmp_path):
    """np.load itself lets these escape: the CLI must not."""
    path = _write(tmp_path / "data.npz", NPZ_CASES[case][0]())
    with pytest.raises(expected):
        with np.load(path, allow_pickle=False) as archive:
            archive["X"]


def test_a_huge_declared_shape_is_refused_before_allocating(tmp_path, capsys):
    path = _write(tmp_path / "data.npz", _huge_shape())
    assert path.stat().st_size < 400
    tracemalloc.start()
    try:
        status = main(["train", "--data", str(path), "--verbose", "0",
                       "--out", str(tmp_path / "out.bpc")])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 2 and peak < 2**20
    assert "declares shape (1099511627776, 3)" in capsys.readouterr().err


def test_memory_error_while_reading_is_one_line(tmp_path, capsys, monkeypatch):
    path = _write(tmp_path / "data.npz", npz_bytes(X=GOOD_X, y=GOOD_Y))

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate")
    monkeypatch.setattr(np, "empty", no_memory)
    status = main(["train", "--data", str(path), "--verbose", "0",
                   "--out", str(tmp_path / "out.bpc")])
    monkeypatch.undo()
    assert_one_line(status, capsys.readouterr().err, path, "train", r"MemoryError")


@pytest.mark.parametrize("order", "CF")
@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, ">f8", np.int16, np.uint8, bool])
def test_valid_npz_reads_as_np_load_reads_it(tmp_path, order, compressed, dtype):
    X = np.asarray(np.arange(12).reshape(4, 3) % 3, dtype=dtype, order=order)
    y = np.array([0, 1, 1, 0], dtype=np.int32)
    path = tmp_path / "data.npz"
    (np.savez_compressed if compressed else np.savez)(path, X=X, y=y)
    data = _load_npz(str(path), True)
    with np.load(path) as reference:
        assert data.X.dtype == np.float64
        assert np.array_equal(data.X, reference["X"].astype(np.float64))
        assert data.y.dtype == reference["y"].dtype and np.array_equal(data.y, reference["y"])


# ------------------------------------------------------------ odd files
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
@pytest.mark.parametrize("which", ["data", "model"])
def test_a_fifo_is_refused_as_not_a_regular_file(tmp_path, capsys, model_file, which):
    fifo = tmp_path / ("data.csv" if which == "data" else "model.bpc")
    os.mkfifo(fifo)
    if which == "data":
        status = main(["evaluate", str(model_file), "--data", str(fifo)])
    else:
        status = main(["evaluate", str(fifo), "--data", str(tmp_path / "none.csv")])
    assert_one_line(status, capsys.readouterr().err, fifo, "evaluate", "not a regular file")


def test_a_corrupt_model_file_is_one_line(tmp_path, capsys):
    model = tmp_path / "model.bpc"
    model.write_bytes(b"PK\x03\x04 not really")
    data = _write(tmp_path / "data.npz", npz_bytes(X=GOOD_X, y=GOOD_Y))
    status = main(["evaluate", str(model), "--data", str(data)])
    assert_one_line(status, capsys.readouterr().err, model, "evaluate", "cannot load checkpoint")


def test_in_a_subprocess_too(tmp_path):
    _write(tmp_path / "data.npz", _huge_shape())
    _write(tmp_path / "bad.npz", _unterminated_header())
    for name in ("data.npz", "bad.npz"):
        result = run_bpcore("train", "--data", name, "--verbose", "0", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1 and name in result.stderr
        assert result.stdout == ""

