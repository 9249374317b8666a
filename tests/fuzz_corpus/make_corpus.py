"""Write the fuzz corpus replayed by tests/test_fuzz.py (run from anywhere:
``python tests/fuzz_corpus/make_corpus.py``; it writes beside itself).

Small files (a few KB in all) that once broke, or nearly broke, a reader: valid seeds
the fuzzers mutate, and hand-made hostile variants of them. Each name says what the
replay expects: ``ok-*`` loads, ``bad-*`` is refused with the one error of its reader
(``CheckpointError`` for ``.bpc``/``.safetensors``, the CLI's one-line error for
``.npz``/``.csv``). The files are a function of this script (fixed seeds, fixed zip
dates), so rerunning it gives the same bytes.
"""
import io
import json
import os
import struct
import sys
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import bpcore as bp  # noqa: E402
from bpcore.interop.safetensors import save_safetensors  # noqa: E402

DATE = (1980, 1, 1, 0, 0, 0)


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as file:
        file.write(data)


def zip_of(members, compression=zipfile.ZIP_STORED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members:
            archive.writestr(zipfile.ZipInfo(name, date_time=DATE), data)
    return buffer.getvalue()


def members_of(data):
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def npy(array=None, header=None, data=b""):
    buffer = io.BytesIO()
    if header is None:
        np.lib.format.write_array(buffer, array, version=(1, 0), allow_pickle=False)
        return buffer.getvalue()
    text = header.encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return np.lib.format.magic(1, 0) + struct.pack("<H", len(text)) + text + data


def tiny_model():
    return bp.Model([bp.Dense(2, 3, "tanh"), bp.Dense(3, 1)], seed=0)


def checkpoints():
    model = tiny_model()
    optimizer = bp.Adam(model)
    model.loss_and_grad(np.ones((2, 2)), np.ones((2, 1)), bp.MSELoss())
    optimizer.step()
    buffer_path = os.path.join(HERE, "ok-adam.bpc")
    model.save(buffer_path, optimizer, progress={"epoch": 1})
    seed = open(buffer_path, "rb").read()
    model.save(os.path.join(HERE, "ok-model-only.bpc"))
    members = members_of(seed)
    header = json.loads(dict(members)["header.json"])

    def with_header(change):
        edited = json.loads(json.dumps(header))
        change(edited)
        return zip_of([(name, json.dumps(edited).encode() if name == "header.json"
                        else data) for name, data in members])

    write("bad-truncated.bpc", seed[:len(seed) // 2])
    write("bad-no-directory.bpc", seed[:-22])
    write("bad-header-a-list.bpc", zip_of([("header.json", b"[" + b"[]," * 200 + b"[]]")]))
    write("bad-header-deep.bpc", zip_of([("header.json", b"[" * 3000 + b"]" * 3000)]))
    write("bad-steps-2pow63.bpc", with_header(
        lambda h: h["optimizer"].update(steps=2**63)))
    write("bad-layers-2pow62.bpc", with_header(
        lambda h: h["layers"][0].update(n_in=2**62)))
    write("bad-npy-shape-2pow40.bpc", zip_of([
        (name, npy(header="{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,"
                          " 3), }", data=b"\0" * 64) if name == "params.npy" else data)
        for name, data in members]))
    write("bad-npy-header-unterminated.bpc", zip_of([
        (name, npy(header="{'descr': '<f8', 'fortran_order': False, 'shape': (13,")
         + data[-104:] if name == "params.npy" else data) for name, data in members]))
    many = zip_of(members + [(f"x{i}", b"") for i in range(70)])
    write("bad-many-members.bpc", many)
    encrypted = bytearray(seed)
    local = encrypted.find(b"PK\x03\x04")
    encrypted[local + 6] |= 1
    central = encrypted.find(b"PK\x01\x02")
    encrypted[central + 8] |= 1
    write("bad-encrypted.bpc", bytes(encrypted))
    nan_state = with_header(lambda h: None)
    nan_members = [(name, npy(np.full(13, np.nan)) if name == "optimizer.exp_avg.npy"
                    else data) for name, data in members_of(nan_state)]
    write("bad-nan-optimizer-state.bpc", zip_of(nan_members))
    os.remove(buffer_path)
    write("ok-adam.bpc", seed)


def safetensors():
    path = os.path.join(HERE, "ok-tiny.safetensors")
    save_safetensors(tiny_model(), path)
    seed = open(path, "rb").read()
    length = int.from_bytes(seed[:8], "little")
    header = json.loads(seed[8:8 + length])
    write("bad-length-2pow63.safetensors", (2**63).to_bytes(8, "little") + seed[8:])
    write("bad-truncated.safetensors", seed[:-5])
    text = json.dumps(dict(header, **{"0.bias": [[]] * 100})).encode()
    write("bad-entry-a-list.safetensors", len(text).to_bytes(8, "little") + text
          + seed[8 + length:])
    shape = json.loads(json.dumps(header))
    shape["0.weight"]["shape"] = [2**40, 2**20]
    text = json.dumps(shape).encode()
    write("bad-huge-shape.safetensors", len(text).to_bytes(8, "little") + text
          + seed[8 + length:])


def data_files():
    X = np.linspace(-1, 1, 12).reshape(6, 2)
    y = np.array([0, 1, 0, 1, 1, 0])
    seed = zip_of([("X.npy", npy(X)), ("y.npy", npy(y))])
    write("ok-xy.npz", seed)
    write("ok-compressed-fortran.npz", zip_of(
        [("X.npy", npy(np.asfortranarray(X.astype(np.float32)))), ("y.npy", npy(y))],
        zipfile.ZIP_DEFLATED))
    write("bad-truncated.npz", seed[:len(seed) * 2 // 3])
    write("bad-shape-2pow40.npz", zip_of([("X.npy", npy(
        header="{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776, 3), }",
        data=b"\0" * 48))]))
    write("bad-header-unterminated.npz", zip_of([("X.npy", npy(
        header="{'descr': '<f8', 'fortran_order': False, 'shape': (6, 2"))]))
    stored = zip_of([("X.npy", npy(X)), ("y.npy", npy(y))])
    lzma = bytearray(stored)
    lzma[8] = 14
    central = lzma.find(b"PK\x01\x02")
    lzma[central + 10] = 14
    write("bad-lzma-of-stored.npz", bytes(lzma))
    write("bad-object.npz", zip_of([("X.npy", npy(
        header="{'descr': '|O', 'fortran_order': False, 'shape': (1, 1), }",
        data=b"\x80\x04N."))]))
    write("ok-header.csv", b"a,b,target\n0.5,1,0\n-1,2,1\n3,0.25,0\n1,1,1\n")
    write("bad-not-utf8.csv", b"a,b,target\n\xff\xfe,1,0\n")
    write("bad-ragged.csv", b"1,2,0\n3,1\n")
    write("bad-nan.csv", b"1,2,0\nnan,1,1\n")
    write("bad-1e400.csv", b"1,2,0\n1e400,1,1\n")


if __name__ == "__main__":
    for name in os.listdir(HERE):
        if name.startswith(("ok-", "bad-")):
            os.remove(os.path.join(HERE, name))
    checkpoints()
    safetensors()
    data_files()
    total = sum(os.path.getsize(os.path.join(HERE, n)) for n in os.listdir(HERE))
    print(f"wrote {len(os.listdir(HERE)) - 1} files, {total} bytes in all")
