"""Fuzzing: the checkpoint and safetensors loaders, the CLI's data readers, and
forward/train_step with random shapes and values (docs/reliability.md, "Fuzzing").

The property of the readers: any bytes give either the object or the reader's one
error (``CheckpointError``, without a chained traceback; the CLI's ``UsageError``),
never another exception. The property of the passes: on finite input of any shape
they agree with the plain NumPy reference (``numpy_reference``), and ``train_step``
with the two-call path; on bad input they raise ValueError/TypeError and change
nothing.

Runs are bounded and derandomized (``derandomize=True``, no example database), so the
suite is deterministic; ``BPCORE_FUZZ_EXAMPLES=N`` runs N examples per harness for a
longer campaign. The corpus these harnesses start from is replayed by
``test_fuzz_corpus.py``.
"""
import io
import json
import os
import zipfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from numpy_reference import activation as ref_activation  # noqa: E402
from numpy_reference import adam_step, mse  # noqa: E402
from test_fuzz_corpus import read, seed_bytes  # noqa: E402

import bpcore as bp  # noqa: E402

EXAMPLES = int(os.environ.get("BPCORE_FUZZ_EXAMPLES", "0"))


def fuzz_settings(examples):
    """``examples`` examples (or ``BPCORE_FUZZ_EXAMPLES``), the same ones every run."""
    return settings(max_examples=EXAMPLES or examples, derandomize=True, database=None,
                    deadline=None, suppress_health_check=list(HealthCheck))


def mutations(seed):
    """Strategies of byte-level damage to ``seed``: flips, overwrites with
    interesting values, truncations, insertions, duplicated ranges."""
    n = len(seed)
    position = st.integers(0, n - 1)
    interesting = st.sampled_from([b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff",
                                   b"\x00\x00\x00\x80", b"PK\x05\x06", b"PK\x01\x02", b"[",
                                   b"{", b"\"", b"9" * 30, b"-1", b"1e999", b"NaN", b"\\u"])
    flip = st.tuples(st.just("flip"), position, st.integers(0, 7))
    put = st.tuples(st.just("put"), position, interesting)
    cut = st.tuples(st.just("cut"), st.integers(0, n), st.just(None))
    insert = st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=16))
    repeat = st.tuples(st.just("repeat"), position, st.integers(1, 64))
    return st.lists(st.one_of(flip, put, cut, insert, repeat), min_size=1, max_size=6)


def mutate(seed, edits):
    data = bytearray(seed)
    for kind, at, value in edits:
        at = min(at, max(len(data) - 1, 0))
        if kind == "flip" and data:
            data[at] ^= 1 << value
        elif kind == "put":
            data[at:at + len(value)] = value
        elif kind == "cut":
            del data[min(at, len(data)):]
        elif kind == "insert":
            data[at:at] = value
        elif kind == "repeat":
            data[at:at] = data[at:at + value]
    return bytes(data)


def _reader_harness(seed_name, examples):
    seed = seed_bytes(seed_name)
    suffix = os.path.splitext(seed_name)[1]

    @fuzz_settings(examples)
    @given(edits=mutations(seed))
    def harness(folder, edits):
        read(mutate(seed, edits), suffix, folder)
    return harness


@pytest.mark.parametrize("seed_name, examples", [
    ("ok-adam.bpc", 150), ("ok-tiny.safetensors", 100), ("ok-xy.npz", 100),
    ("ok-compressed-fortran.npz", 60), ("ok-header.csv", 60),
])
def test_fuzzed_files_give_the_object_or_one_error(seed_name, examples, tmp_path_factory):
    _reader_harness(seed_name, examples)(str(tmp_path_factory.mktemp("fuzz")))


def _header_of(seed):
    with zipfile.ZipFile(io.BytesIO(seed)) as archive:
        return json.loads(archive.read("header.json")), [
            (info.filename, archive.read(info)) for info in archive.infolist()]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=6), children, max_size=4)),
    max_leaves=12)


@fuzz_settings(150)
@given(path=st.lists(st.sampled_from(["layers", 0, 1, "n_in", "n_out", "activation",
                                      "optimizer", "steps", "hyperparameters", "lr", "betas",
                                      "state", "model_state", "epochs_trained", "training",
                                      "dropout_rng", "state", "classes", "values", "dtype",
                                      "arrays", "shape", "name", "fit_loss", "progress",
                                      "version", "format"]), min_size=1, max_size=4),
       value=JSON_VALUES)
def test_fuzzed_header_fields_give_the_checkpoint_or_one_error(tmp_path_factory, path, value):
    """Structure-aware: one field of a valid header (found by a path of keys and
    indices) replaced by any JSON value."""
    header, members = _header_of(seed_bytes("ok-adam.bpc"))
    node = header
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    last = path[-1]
    if isinstance(node, dict) and isinstance(last, str) or \
            isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            archive.writestr(name, json.dumps(header).encode() if name == "header.json"
                             else data)
    read(buffer.getvalue(), ".bpc", str(tmp_path_factory.getbasetemp()))


# ------------------------------------------------------------ forward and train_step
ACTIVATIONS = sorted(bp.ACTIVATIONS)


@st.composite
def networks(draw):
    sizes = draw(st.lists(st.integers(1, 9), min_size=2, max_size=4))
    activations = [draw(st.sampled_from(ACTIVATIONS)) for _ in sizes[1:]]
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(1, 17))
    return sizes, activations, dtype, seed, n


def build(sizes, activations, dtype, seed):
    layers = [bp.Dense(a, b, act) for a, b, act in zip(sizes, sizes[1:], activations)]
    return bp.Model(layers, dtype=dtype, seed=seed)


def reference_forward(model, X):
    a = X.astype(np.float64)
    for layer in model.layers:
        z = a @ layer.W.astype(np.float64) + layer.b
        c = None if layer.c is None else layer.c.astype(np.float64)
        a = ref_activation(layer.activation, z, c, layer.negative_slope)[0]
    return a


@fuzz_settings(120)
@given(net=networks(), scale=st.sampled_from([1e-3, 1.0, 30.0]), data=st.data())
def test_forward_of_any_shape_matches_numpy(net, scale, data):
    sizes, activations, dtype, seed, n = net
    model = build(sizes, activations, dtype, seed)
    rng = np.random.default_rng(seed)
    X = rng.normal(0, scale, size=(n, sizes[0]))
    layout = data.draw(st.sampled_from(["c", "fortran", "strided", "list"]))
    given_X = {"c": X, "fortran": np.asfortranarray(X), "strided": np.repeat(X, 2, 1)[:, ::2],
               "list": X.tolist()}[layout]
    output = model.forward(given_X)
    expected = reference_forward(model, X.astype(dtype))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(output, expected, rtol=tol, atol=tol * max(1.0, scale))
    # predict may take another product kernel for the batch: equal to rounding
    np.testing.assert_allclose(model.predict(given_X), output, rtol=tol, atol=tol * scale)


BAD_VALUES = st.sampled_from([np.nan, np.inf, -np.inf, 1e300])


@fuzz_settings(120)
@given(net=networks(), where=st.sampled_from(["X", "target", "shape", "columns", "dtype"]),
       bad=BAD_VALUES, data=st.data())
def test_bad_input_to_train_step_changes_nothing(net, where, bad, data):
    sizes, activations, dtype, seed, n = net
    model = build(sizes, activations, dtype, seed)
    optimizer = bp.Adam(model, lr=0.01)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0]))
    y = rng.normal(size=(n, sizes[-1]))
    model.train_step(X, y, bp.MSELoss(), optimizer)       # state to keep
    before = (model.params.copy(), model.grads.copy(), optimizer.state_dict())
    row = data.draw(st.integers(0, n - 1))
    if where == "X":
        X = X.copy()
        X[row, data.draw(st.integers(0, sizes[0] - 1))] = bad
        if bad == 1e300 and dtype == np.float64:
            X[row, 0] = np.nan                      # 1e300 is fine in float64
    elif where == "target":
        y = y.copy()
        y[row, data.draw(st.integers(0, sizes[-1] - 1))] = np.nan if bad == 1e300 and \
            dtype == np.float64 else bad
    elif where == "shape":
        y = y[:-1] if n > 1 else np.ones((2, sizes[-1]))
    elif where == "columns":
        X = np.ones((n, sizes[0] + data.draw(st.integers(1, 3))))
    else:
        X = X.astype(data.draw(st.sampled_from([np.complex128, object, "U3"])))
    with pytest.raises((ValueError, TypeError)) as caught:
        model.train_step(X, y, bp.MSELoss(), optimizer)
    message = str(caught.value)
    assert ("X" in message.split()[0:2] or "target" in message or "X " in message
            or "X:" in message), message
    assert model.params.tobytes() == before[0].tobytes()
    assert model.grads.tobytes() == before[1].tobytes()
    after = optimizer.state_dict()
    assert after["steps"] == before[2]["steps"]
    for name, buffer in before[2]["state"].items():
        assert after["state"][name].tobytes() == buffer.tobytes()


@fuzz_settings(80)
@given(net=networks(), lr=st.floats(1e-4, 0.1))
def test_train_step_of_any_shape_matches_numpy(net, lr):
    """One fused Adam step on MSE from the NumPy formulas: the loss, then the update."""
    sizes, activations, dtype, seed, n = net
    if dtype == np.float32:
        dtype = np.float64                   # the reference is float64 throughout
    model = build(sizes, activations, dtype, seed)
    rng = np.random.default_rng(seed + 1)
    X = rng.normal(size=(n, sizes[0]))
    y = rng.normal(size=(n, sizes[-1]))
    twin = build(sizes, activations, dtype, seed)
    twin.params[...] = model.params
    value, grads = twin.loss_and_grad(X, y, bp.MSELoss())
    expected_value = mse(reference_forward(model, X), y)[0]
    params_before = model.params.copy()
    optimizer = bp.Adam(model, lr=lr)
    loss = model.train_step(X, y, bp.MSELoss(), optimizer, keep_grads=True)
    assert np.isclose(loss, expected_value, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.grads, grads, rtol=1e-9, atol=1e-12)
    p, _, _ = adam_step(params_before, grads, np.zeros_like(grads), np.zeros_like(grads), 1,
                        lr)
    np.testing.assert_allclose(model.params, p, rtol=1e-9, atol=1e-12)

