"""Checkpoints: exact round trips and resumes, atomic writes under SIGKILL, hostile files."""
import _io
import builtins
import io
import json
import os
import signal
import traceback
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from conftest import ACTIVATIONS, randomize

import bpcore as bp
from bpcore import checkpoint
from bpcore.checkpoint import CheckpointError


def small_model(rng, dtype=np.float64, activation="tanh", dropout=0.0):
    model = bp.Model([bp.Dense(4, 6, activation, negative_slope=0.2, dropout=dropout),
                      bp.Dense(6, 3, activation)], dtype=dtype, seed=0)
    randomize(model, rng)
    return model


def stray_temp_files(folder):
    return {name for name in os.listdir(folder) if name.startswith(".") and
            name.endswith(".tmp")}


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_round_trip_gives_bit_identical_predictions(tmp_path, rng, dtype, activation):
    model = small_model(rng, dtype, activation)
    X = rng.normal(size=(7, 4))
    checkpoint.save(tmp_path / "model.ckpt", model)
    loaded = checkpoint.load(tmp_path / "model.ckpt")

    assert repr(loaded) == repr(model) and loaded.dtype == model.dtype
    assert [l.negative_slope for l in loaded.layers] == [0.2, 0.01]
    assert loaded.params.dtype == model.params.dtype
    assert loaded.params.tobytes() == model.params.tobytes()
    assert loaded.predict(X).tobytes() == model.predict(X).tobytes()
    # the loaded model's views are bound to its own buffer
    assert all(np.shares_memory(p, loaded.params) for _, p, _ in loaded.named_parameters())


def test_model_state_round_trip(tmp_path, rng):
    """Dropout rates, the dropout generator, epochs_trained and the training flag."""
    model = small_model(rng, dropout=0.3)
    model.dropout_rng.random(5)                   # a generator part-way through
    model.epochs_trained = 4
    model.eval()
    path = tmp_path / "model.ckpt"
    checkpoint.save(path, model)
    loaded = checkpoint.load(path)

    assert loaded.layers[0].dropout == 0.3 and loaded.layers[1].dropout == 0.0
    assert loaded.epochs_trained == 4 and loaded.training is False
    assert np.array_equal(loaded.dropout_rng.random(6), model.dropout_rng.random(6))


def test_progress_round_trip_keeps_big_ints(tmp_path, rng):
    shuffle_rng = np.random.default_rng(2**70 + 3)
    shuffle_rng.random(3)
    progress = {"epoch": 12, "seed": 2**63 + 1, "shuffle": shuffle_rng.bit_generator.state,
                "best": {"val_loss": 0.125, "history": [1.5, 0.75]}, "done": False}
    model = small_model(rng)
    checkpoint.save(tmp_path / "model.ckpt", model, progress=progress)
    restored = checkpoint.load_checkpoint(tmp_path / "model.ckpt")
    assert restored.progress == progress and restored.optimizer is None
    generator = np.random.default_rng()
    generator.bit_generator.state = restored.progress["shuffle"]
    assert np.array_equal(generator.random(4), shuffle_rng.random(4))


OPTIMIZERS = {
    "sgd": lambda m: bp.SGD(m, lr=0.05),
    "sgd_momentum": lambda m: bp.SGD(m, lr=0.05, momentum=0.9, weight_decay=0.01),
    "sgd_nesterov": lambda m: bp.SGD(m, lr=0.05, momentum=0.5, nesterov=True),
    "adam": lambda m: bp.Adam(m, lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.001),
}


def batches(rng, count=5):
    return [(rng.normal(size=(10, 4)), rng.integers(0, 3, 10)) for _ in range(count)]


@pytest.mark.parametrize("steps", [0, 3])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_state_round_trip(tmp_path, rng, name, steps):
    model = small_model(rng)
    optimizer = OPTIMIZERS[name](model)
    for X, y in batches(rng, steps):
        model.loss_and_grad(X, y, bp.CrossEntropyLoss())
        optimizer.step()
    checkpoint.save(tmp_path / "model.ckpt", model, optimizer)
    restored = checkpoint.load_checkpoint(tmp_path / "model.ckpt")

    assert type(restored.optimizer) is type(optimizer)
    assert restored.optimizer.model is restored.model
    assert restored.optimizer.hyperparameters == optimizer.hyperparameters
    assert restored.optimizer.steps == steps
    assert restored.optimizer.state.keys() == optimizer.state.keys()
    for key, buffer in optimizer.state.items():
        assert restored.optimizer.state[key].tobytes() == buffer.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["sgd_momentum", "adam"])
def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, name, dtype):
    """N steps, save, load, M more steps == N + M steps, bit for bit.

    Batches are drawn by a generator whose state travels in ``progress``; the hidden
    layer has dropout, so the model's dropout generator must travel too.
    """
    data = batches(np.random.default_rng(7), count=6)
    loss = bp.CrossEntropyLoss()

    def start():
        model = small_model(np.random.default_rng(3), dtype, dropout=0.25)
        return model, OPTIMIZERS[name](model), np.random.default_rng(11)

    def train(model, optimizer, picker, steps):
        for _ in range(steps):
            X, y = data[picker.integers(len(data))]
            model.loss_and_grad(X, y, loss)
            optimizer.step()

    N, M = 7, 6
    model, optimizer, picker = start()
    train(model, optimizer, picker, N + M)

    first, first_optimizer, first_picker = start()
    train(first, first_optimizer, first_picker, N)
    path = tmp_path / "run.ckpt"
    checkpoint.save(path, first, first_optimizer,
                    progress={"step": N, "picker": first_picker.bit_generator.state})
    del first, first_optimizer, first_picker
    restored = checkpoint.load_checkpoint(path)
    picker = np.random.default_rng()
    picker.bit_generator.state = restored.progress["picker"]
    train(restored.model, restored.optimizer, picker, M)

    assert restored.progress["step"] == N and restored.optimizer.steps == N + M
    assert restored.model.params.tobytes() == model.params.tobytes()
    for key, buffer in optimizer.state.items():
        assert restored.optimizer.state[key].tobytes() == buffer.tobytes()


EVERY_OPTIMIZER = sorted((cls for cls in vars(bp.optim.optimizers).values() if isinstance(cls, type)
                          and issubclass(cls, bp.Optimizer) and cls is not bp.Optimizer),
                         key=lambda cls: cls.__name__)


@pytest.mark.parametrize("cls", EVERY_OPTIMIZER, ids=lambda cls: cls.__name__)
def test_every_optimizer_resumes_bit_identically(tmp_path, cls):
    """Each optimizer in bpcore.optim.optimizers, with its defaults: 4 + 3 steps == 7 steps."""
    data = batches(np.random.default_rng(5), count=7)

    def train(model, optimizer, steps):
        for X, y in steps:
            model.loss_and_grad(X, y, bp.CrossEntropyLoss())
            optimizer.step()

    model = small_model(np.random.default_rng(3))
    optimizer = cls(model)
    train(model, optimizer, data)
    first = small_model(np.random.default_rng(3))
    first_optimizer = cls(first)
    train(first, first_optimizer, data[:4])
    checkpoint.save(tmp_path / "run.ckpt", first, first_optimizer)
    restored = checkpoint.load_checkpoint(tmp_path / "run.ckpt")
    assert type(restored.optimizer) is cls
    train(restored.model, restored.optimizer, data[4:])
    assert restored.model.params.tobytes() == model.params.tobytes()


def test_optimizer_subclass_is_found_by_name(tmp_path, rng):
    """Subclasses of subclasses are rebuilt; the module disambiguates equal names."""
    class TunedSGD(bp.SGD):
        pass

    model = small_model(rng)
    optimizer = TunedSGD(model, lr=0.1, momentum=0.5)
    X, y = batches(rng, 1)[0]
    model.loss_and_grad(X, y, bp.CrossEntropyLoss())
    optimizer.step()
    checkpoint.save(tmp_path / "model.ckpt", model, optimizer)
    restored = checkpoint.load_checkpoint(tmp_path / "model.ckpt").optimizer
    assert type(restored) is TunedSGD and restored.steps == 1


# ------------------------------------------------- class labels and the fit's loss
def spirals_labels(kind):
    X, y = bp.datasets.spirals(60, n_classes=2 if kind == "bools" else 3, seed=0)
    labels = {"strings": np.array(["cat", "dog", "émeu"])[y] if kind == "strings" else None,
              "one-to-k": y + 1, "floats": (y + 1).astype(float),
              "uint8": y.astype(np.uint8), "float32": (2 * y).astype(np.float32),
              "bools": y.astype(bool)}[kind]
    return X, labels


@pytest.mark.parametrize("kind", ["strings", "one-to-k", "floats", "uint8", "float32",
                                  "bools"])
def test_classes_and_fit_loss_round_trip(tmp_path, kind):
    X, labels = spirals_labels(kind)
    classes, codes = np.unique(labels, return_inverse=True)
    model = bp.Model([bp.Dense(2, 6, "tanh"), bp.Dense(6, classes.size)], seed=0)
    model.fit(X, labels, loss=bp.CrossEntropyLoss(reduction="sum"), epochs=2, verbose=0,
              seed=0)
    path = tmp_path / "model.ckpt"
    checkpoint.save(path, model)
    loaded = checkpoint.load(path)

    assert loaded.classes.dtype == classes.dtype
    np.testing.assert_array_equal(loaded.classes, classes)
    assert type(loaded.fit_loss) is bp.CrossEntropyLoss
    assert loaded.fit_loss.reduction == "sum"
    # the oracles: the saved classes by the arg-max, and the loss of the codes
    np.testing.assert_array_equal(loaded.predict_labels(X),
                                  classes[model.predict(X).argmax(axis=1)])
    value, _ = bp.CrossEntropyLoss(reduction="sum")(model.predict(X), codes)
    assert loaded.evaluate(X, labels) == {"loss": pytest.approx(value, rel=1e-12)}


def test_a_bce_model_keeps_its_two_labels(tmp_path):
    X, y = bp.datasets.moons(50, seed=0)
    labels = np.array(["no", "yes"])[y]
    model = bp.Model([bp.Dense(2, 1)], seed=0)
    model.fit(X, labels, loss="bce", epochs=2, verbose=0, seed=0)
    checkpoint.save(tmp_path / "model.ckpt", model)
    loaded = checkpoint.load(tmp_path / "model.ckpt")
    np.testing.assert_array_equal(loaded.classes, ["no", "yes"])
    assert type(loaded.fit_loss) is bp.BCEWithLogitsLoss and loaded.fit_loss.reduction == "mean"
    np.testing.assert_array_equal(loaded.predict_labels(X),
                                  np.where(model.predict(X)[:, 0] > 0, "yes", "no"))


def test_a_custom_loss_is_not_saved(tmp_path):
    class OwnCrossEntropy(bp.CrossEntropyLoss):
        pass

    X, labels = spirals_labels("one-to-k")
    model = bp.Model([bp.Dense(2, 3)], seed=0)
    model.fit(X, labels, loss=OwnCrossEntropy(), epochs=1, verbose=0)
    checkpoint.save(tmp_path / "model.ckpt", model)
    loaded = checkpoint.load(tmp_path / "model.ckpt")
    assert loaded.fit_loss is None
    np.testing.assert_array_equal(loaded.classes, [1, 2, 3])


def test_a_file_written_without_classes_and_fit_loss_still_loads(tmp_path):
    X, labels = spirals_labels("strings")
    model = bp.Model([bp.Dense(2, 3)], seed=0)
    model.fit(X, labels, loss="cross_entropy", epochs=1, verbose=0)
    path = tmp_path / "model.ckpt"
    checkpoint.save(path, model)

    def as_the_old_code_wrote_it(header):
        assert header["version"] == 1
        del header["model_state"]["classes"], header["model_state"]["fit_loss"]

    edit(path, header=as_the_old_code_wrote_it)
    loaded = checkpoint.load(path)
    assert loaded.classes is None and loaded.fit_loss is None
    assert loaded.params.tobytes() == model.params.tobytes()
    np.testing.assert_array_equal(loaded.predict_labels(X), model.predict(X).argmax(axis=1))


def object_labels():
    labels = np.empty(3, dtype=object)
    labels[:] = [(0, 1), (0, 2), (1, 0)]
    return labels


@pytest.mark.parametrize("classes, error, match", [
    (object_labels(), TypeError, "model.classes must be a 1-D array of strings, integers"),
    (np.array(["2020-01-01", "2021-01-01", "2022-01-01"], dtype="datetime64[D]"), TypeError,
     "got an array of shape"),
    (np.array([b"a", b"b", b"c"]), TypeError, r"dtype \|S1"),
    (np.array([1, 2]), ValueError, "one label per output"),
    (np.array([0.0, 1.0, np.inf]), ValueError, "must be finite"),
], ids=["tuples", "dates", "bytes", "count", "inf"])
def test_classes_a_checkpoint_cannot_keep_are_refused_before_writing(tmp_path, classes, error,
                                                                     match):
    model = bp.Model([bp.Dense(2, 3)], seed=0)
    path = tmp_path / "model.ckpt"
    checkpoint.save(path, model)
    old = path.read_bytes()
    model.classes = classes
    with pytest.raises(error, match=match):
        checkpoint.save(path, model)
    with pytest.raises(error, match=match):
        checkpoint.save(tmp_path / "new.ckpt", model)
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt"]
    assert path.read_bytes() == old


# ---------------------------------------------------------------- save checks
def test_save_checks_arguments_before_creating_anything(tmp_path, rng):
    model, other = small_model(rng), small_model(rng)
    path = tmp_path / "model.ckpt"
    with pytest.raises(TypeError, match="model must be a bpcore Model"):
        checkpoint.save(path, "model")
    with pytest.raises(TypeError, match="optimizer must be a bpcore Optimizer"):
        checkpoint.save(path, model, optimizer="adam")
    with pytest.raises(ValueError, match="optimizer is bound to another model"):
        checkpoint.save(path, model, bp.Adam(other))
    with pytest.raises(TypeError, match="progress must be a dict"):
        checkpoint.save(path, model, progress=[1, 2])
    with pytest.raises(TypeError, match="progress must be a JSON-serializable dict"):
        checkpoint.save(path, model, progress={"weights": np.zeros(3)})
    with pytest.raises(TypeError, match="path must be"):
        checkpoint.save(3.5, model)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        checkpoint.save(tmp_path, model)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.save(tmp_path / "missing" / "model.ckpt", model)
    model.dropout_rng = np.random.RandomState(0)
    with pytest.raises(TypeError, match="model.dropout_rng"):
        checkpoint.save(path, model)
    assert os.listdir(tmp_path) == []


def test_failed_save_leaves_old_file_and_no_temporary_file(tmp_path, rng, monkeypatch):
    model = small_model(rng)
    path = tmp_path / "model.ckpt"
    checkpoint.save(path, model, progress={"version": 1})
    old = path.read_bytes()

    real_write_array = np.lib.format.write_array

    def write_half_then_fail(file, array, **options):
        file.write(b"\0" * 100)
        raise OSError("disk full")

    model.params += 1.0
    monkeypatch.setattr(np.lib.format, "write_array", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, model, progress={"version": 2})
    monkeypatch.setattr(np.lib.format, "write_array", real_write_array)

    assert os.listdir(tmp_path) == ["model.ckpt"]
    assert path.read_bytes() == old
    assert checkpoint.load_checkpoint(path).progress == {"version": 1}


def test_load_ignores_stray_temporary_files(tmp_path, rng):
    model = small_model(rng)
    path = tmp_path / "model.ckpt"
    checkpoint.save(path, model)
    (tmp_path / ".model.ckpt.0123456789ab.tmp").write_bytes(path.read_bytes()[:50])
    (tmp_path / ".model.ckpt.ba9876543210.tmp").write_bytes(b"garbage")
    assert checkpoint.load(path).params.tobytes() == model.params.tobytes()
    model.params *= 2
    checkpoint.save(path, model)                       # and saving again works beside them
    assert checkpoint.load(path).params.tobytes() == model.params.tobytes()
    assert len(stray_temp_files(tmp_path)) == 2


def test_save_is_deterministic(tmp_path, rng):
    model = small_model(rng)
    checkpoint.save(tmp_path / "a.ckpt", model, bp.Adam(model), progress={"epoch": 1})
    checkpoint.save(tmp_path / "b.ckpt", model, bp.Adam(model), progress={"epoch": 1})
    assert (tmp_path / "a.ckpt").read_bytes() == (tmp_path / "b.ckpt").read_bytes()


# ----------------------------------------------------------- killed mid-write
# A forked child saves a new version over a checkpoint and stops at a chosen point of
# the save: every file it opens for writing is wrapped so that at the chosen write
# call, after letting a chosen number of its bytes through, it flushes what it has
# written to the OS, tells the parent and waits; or it stops just after the rename.
# The parent SIGKILLs it there. The points: before the first byte, half-way into
# every write call the save makes, after the last byte, and after the rename: every
# stage of a save, the same on any machine, at any speed. After every kill the file
# must hold one whole version: the previous one for a kill before the rename, the
# new one after it.
RENAMED = "renamed"           # the kill point just after os.replace
FIRST = 100                   # the first version: versions of three digits write headers
                              # of one length, so each save makes the same write calls


def versioned(model, optimizer, version):
    """Set every parameter and optimizer state entry to ``version``."""
    model.params.fill(version)
    for buffer in optimizer.state.values():
        buffer.fill(version)


def model_with_state():
    """A model and its Adam (after one step, so that it has state buffers to save)."""
    model = bp.Model([bp.Dense(8, 16, "tanh"), bp.Dense(16, 4)], seed=0)
    optimizer = bp.Adam(model)
    model.loss_and_grad(np.ones((3, 8)), np.zeros(3, dtype=np.int64), bp.CrossEntropyLoss())
    optimizer.step()
    return model, optimizer


def naive_save(path, model, optimizer, progress):
    # the same archive, written straight over the target: NOT atomic
    header, arrays = checkpoint._describe(model, optimizer, progress)
    with open(path, "wb") as file:
        checkpoint._write_zip(file, json.dumps(header).encode(), arrays)


WRITERS = {"atomic": checkpoint.save, "naive": naive_save}


def _save_in_child(path, writer, model, optimizer, version, stop, report, block):
    """In the forked child: save with ``writer``, stopping at ``stop`` (a pair (write
    call, bytes of it let through), RENAMED, or None: never, then report the lengths
    of the write calls). Never returns."""
    status = 1
    try:
        lengths = []

        def stop_here():
            os.write(report, b"stopped\n")
            os.read(block, 1)        # until SIGKILL (or end of file: the parent is gone)
            os._exit(3)

        class Tripwire:
            """A file opened for writing, which stops the save at ``stop``."""

            def __init__(self, file):
                self._file = file

            def write(self, data):
                data = memoryview(data).cast("B")
                lengths.append(len(data))
                if isinstance(stop, tuple) and stop[0] == len(lengths) - 1:
                    self._file.write(data[:stop[1]])
                    self._file.flush()
                    stop_here()
                return self._file.write(data)

            def __getattr__(self, name):
                return getattr(self._file, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc_info):
                self._file.close()

        real_open, real_replace = io.open, os.replace

        def tripwire_open(file, mode="r", *args, **kwargs):
            opened = real_open(file, mode, *args, **kwargs)
            return Tripwire(opened) if set(mode) & set("wxa+") else opened

        def replace_then_stop(*args, **kwargs):
            real_replace(*args, **kwargs)
            if stop == RENAMED:
                stop_here()

        # every way to open a file (os.fdopen calls io.open; tempfile calls _io.open)
        io.open = _io.open = builtins.open = tripwire_open
        os.replace = replace_then_stop
        WRITERS[writer](path, model, optimizer, progress={"version": version})
        os.write(report, json.dumps(lengths).encode())
        status = 0
    except BaseException:
        os.write(report, traceback.format_exc().encode())
    finally:
        os._exit(status)


def save_in_a_child(path, writer, model, optimizer, version, stop):
    """Save ``version`` to ``path`` in a forked child and SIGKILL it at ``stop``; with
    ``stop`` None, let it finish and return the lengths of its write calls."""
    versioned(model, optimizer, version)
    report_r, report_w = os.pipe()
    block_r, block_w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)      # fork beside threads
        pid = os.fork()
    if pid == 0:                                  # the child, which never returns
        try:
            os.close(report_r)
            os.close(block_w)
            _save_in_child(path, writer, model, optimizer, version, stop, report_w, block_r)
        finally:
            os._exit(1)
    os.close(report_w)
    os.close(block_r)
    status = None
    try:
        with os.fdopen(report_r, "rb") as reader:
            message = reader.readline()
            if message != b"stopped\n":
                message += reader.read()                          # up to the child's exit
        if stop is None:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, message.decode()
            return json.loads(message)
        assert message == b"stopped\n", \
            f"the save did not reach kill point {stop!r}: {message.decode()}"
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(block_w)


def held_version(path):
    """The version the checkpoint at ``path`` holds whole (header, parameters and
    optimizer state agreeing), "mixed" when they disagree, None when it cannot be
    loaded."""
    try:
        restored = checkpoint.load_checkpoint(path)
    except (CheckpointError, OSError):
        return None
    version = restored.progress["version"]
    arrays = [restored.model.params, *restored.optimizer.state.values()]
    return version if all((array == version).all() for array in arrays) else "mixed"


def kill_at_every_stage(folder, writer):
    """Save version FIRST, then per kill point a forked save of the next version,
    killed there. Returns per kill point (point, the version saved, the version the file
    held after, the temporary files the kill left behind)."""
    path = folder / "model.ckpt"
    model, optimizer = model_with_state()
    versioned(model, optimizer, FIRST)
    checkpoint.save(path, model, optimizer, progress={"version": FIRST})
    (folder / "count").mkdir()
    lengths = save_in_a_child(folder / "count" / "model.ckpt", writer, model, optimizer,
                              FIRST + 1, None)
    last = len(lengths) - 1
    points = ([(0, 0)] + [(i, length // 2) for i, length in enumerate(lengths)]
              + [(last, lengths[last])])
    points = list(dict.fromkeys(points)) + ([RENAMED] if writer == "atomic" else [])
    outcomes = []
    for version, point in enumerate(points, start=FIRST + 1):
        before = stray_temp_files(folder)
        save_in_a_child(path, writer, model, optimizer, version, point)
        outcomes.append((point, version, held_version(path),
                         stray_temp_files(folder) - before))
    return outcomes


def broken_promises(outcomes):
    """The kill points after which the file did not hold the version it must: the
    previous whole version before the rename, the new one after it."""
    broken, previous = [], FIRST
    for point, version, held, _ in outcomes:
        if held != (version if point == RENAMED else previous):
            broken.append(point)
        if held is not None and held != "mixed":
            previous = held
    return broken


needs_fork_and_sigkill = pytest.mark.skipif(
    not hasattr(os, "fork") or not hasattr(signal, "SIGKILL"), reason="needs fork and SIGKILL")


@needs_fork_and_sigkill
def test_save_killed_at_any_stage_leaves_one_whole_version(tmp_path):
    outcomes = kill_at_every_stage(tmp_path, "atomic")
    # header, params and two optimizer buffers: a local header, data and a
    # directory entry each, at least
    assert len(outcomes) > 3 * 4
    assert broken_promises(outcomes) == []
    for point, _, _, left_behind in outcomes:
        # a kill before the rename leaves its temporary file (which load ignores)
        assert len(left_behind) == (0 if point == RENAMED else 1)
    assert [held for *_, held, _ in outcomes][-2:] == [FIRST, FIRST + len(outcomes)]


@needs_fork_and_sigkill
def test_kill_harness_catches_a_non_atomic_writer(tmp_path):
    """The same harness, with a writer that writes straight over the target, sees a
    broken file after every kill: proof that the test above can fail."""
    outcomes = kill_at_every_stage(tmp_path, "naive")
    assert len(outcomes) > 3 * 4
    assert broken_promises(outcomes) == [point for point, *_ in outcomes]


# -------------------------------------------------------------- hostile files
def members_of(path):
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def write_members(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, data)


def npy_bytes(descr, shape, data=b""):
    """A hand-made .npy: a header declaring (descr, shape), then ``data``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


def edit(path, *, header=None, replace=None, drop=(), add=(), compression=zipfile.ZIP_STORED):
    """Rewrite the checkpoint at ``path`` with its header and members changed."""
    members = []
    for name, data in members_of(path):
        if name in drop:
            continue
        if name == "header.json" and header is not None:
            content = json.loads(data)
            header(content)
            data = json.dumps(content).encode()
        if replace and name in replace:
            data = replace[name]
        members.append((name, data))
    write_members(path, members + list(add), compression)


class Canary:
    """Unpickling this creates a file: proof that code in a checkpoint ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def saved(tmp_path, rng):
    """A valid checkpoint (model, Adam after one step, progress) to spoil."""
    model = small_model(rng)
    optimizer = bp.Adam(model)
    X, y = batches(rng, 1)[0]
    model.loss_and_grad(X, y, bp.CrossEntropyLoss())
    optimizer.step()
    path = tmp_path / "model.ckpt"
    checkpoint.save(path, model, optimizer, progress={"epoch": 1})
    return path, model


def assert_refused(path, match):
    with pytest.raises(CheckpointError, match=match) as caught:
        checkpoint.load_checkpoint(path)
    assert str(path) in str(caught.value) and caught.value.path == os.fspath(path)
    # one error, no second traceback ("During handling of the above exception ...")
    error = caught.value
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    return caught.value


@pytest.mark.parametrize("cut", [0, 1, 4, 40, 0.25, 0.5, 0.75, -100, -22, -1])
def test_truncated_file_is_refused(saved, cut):
    path, _ = saved
    data = path.read_bytes()
    end = int(cut * len(data)) if isinstance(cut, float) else cut % len(data)
    path.write_bytes(data[:end])
    assert_refused(path, "not a zip archive|truncated|corrupt")


def test_flipped_data_byte_is_refused(saved):
    path, model = saved
    data = bytearray(path.read_bytes())
    start = data.find(model.params.tobytes()[:16])
    assert start > 0
    data[start + 5] ^= 0x10
    path.write_bytes(bytes(data))
    assert_refused(path, "corrupt.*CRC")


@pytest.mark.parametrize("content", [b"", b"hello, I am text\n", b"PK\x03\x04" + b"\0" * 40],
                         ids=["empty", "text", "zip-magic-only"])
def test_non_zip_file_is_refused(tmp_path, content):
    path = tmp_path / "model.ckpt"
    path.write_bytes(content)
    assert_refused(path, "not a zip archive")


def test_plain_npy_file_is_refused(tmp_path):
    path = tmp_path / "model.ckpt"
    with open(path, "wb") as file:
        np.save(file, np.zeros(10))
    assert_refused(path, "not a zip archive")


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "absent.ckpt")


HEADER_CASES = {
    "future-version": (lambda h: h.update(version=2), r"format version 2 \(a newer bpcore"),
    "older-version": (lambda h: h.update(version=0), "format version 0"),
    "version-not-int": (lambda h: h.update(version="1"), "no integer format version"),
    "no-version": (lambda h: h.pop("version"), "no integer format version"),
    "other-format": (lambda h: h.update(format="keras"), "names format 'keras'"),
    "bad-dtype": (lambda h: h.update(dtype="object"), "dtype must be 'float32' or"),
    "no-layers": (lambda h: h.update(layers=[]), "lists no layers"),
    "layers-not-list": (lambda h: h.update(layers="Dense"), "'layers' must be a list"),
    "bad-activation": (lambda h: h["layers"][0].update(activation="exec"),
                       r"layers\[0\]: activation must be one of"),
    "float-size": (lambda h: h["layers"][0].update(n_in=4.0),
                   r"layers\[0\]: n_in must be a positive integer"),
    "unknown-layer-key": (lambda h: h["layers"][1].update(bias=False),
                          r"layers\[1\] must have the keys"),
    "layers-disagree": (lambda h: h["layers"][1].update(n_in=4),
                             r"layers\[0\] has n_out=6 but layers\[1\] has n_in=4"),
    "arrays-listing-wrong": (lambda h: h["arrays"][0].update(shape=[5]), "lists the arrays"),
    "architecture-changed": (lambda h: h["layers"][1].update(n_out=4), "lists the arrays"),
    "unknown-optimizer": (lambda h: h["optimizer"].update({"class": "Evil"}),
                          "'Evil'.*not a known bpcore Optimizer"),
    "non-optimizer-class": (lambda h: h["optimizer"].update({"class": "Model"}),
                            "not a known bpcore Optimizer"),
    "bad-hyperparameter": (lambda h: h["optimizer"]["hyperparameters"].update(lr=-1),
                           "lr must be a finite number"),
    "extra-hyperparameter": (lambda h: h["optimizer"]["hyperparameters"].update(code="x"),
                             "hyperparameters of Adam must be"),
    "bad-buffer-name": (lambda h: h["optimizer"].update(state=["../evil"]),
                        "distinct buffer names"),
    "bad-rng": (lambda h: h["model_state"]["dropout_rng"].update(bit_generator="os.system"),
                "names bit generator 'os.system'"),
    "bad-rng-state": (lambda h: h["model_state"]["dropout_rng"].update(state={"x": 1}),
                      "dropout_rng state is invalid"),
    "bad-epochs": (lambda h: h["model_state"].update(epochs_trained=-3), "epochs_trained"),
    "bad-progress": (lambda h: h.update(progress=[1, 2]), "'progress' must be an object"),
    "classes-object-dtype": (lambda h: h["model_state"].update(
        classes={"dtype": "|O", "values": ["a", "b", "c"]}), "classes dtype must name"),
    "classes-wrong-count": (lambda h: h["model_state"].update(
        classes={"dtype": "<i8", "values": [1, 2]}), "classes values must be a list"),
    "classes-wrong-type": (lambda h: h["model_state"].update(
        classes={"dtype": "<i8", "values": ["1", "2", "3"]}), "classes values must be a list"),
    "classes-unsorted": (lambda h: h["model_state"].update(
        classes={"dtype": "<U1", "values": ["b", "a", "c"]}), "distinct and sorted"),
    "classes-overflow": (lambda h: h["model_state"].update(
        classes={"dtype": "|u1", "values": [1, 2, 300]}), "do not fit dtype|distinct and sorted"),
    "classes-extra-key": (lambda h: h["model_state"].update(
        classes={"dtype": "<i8", "values": [0, 1, 2], "code": "x"}), "must be null or an object"),
    "fit-loss-unknown": (lambda h: h["model_state"].update(
        fit_loss={"name": "hinge", "reduction": "mean"}), "fit_loss must be null or name"),
    "fit-loss-reduction": (lambda h: h["model_state"].update(
        fit_loss={"name": "mse", "reduction": "max"}), "fit_loss must be null or name"),
}


@pytest.mark.parametrize("case", HEADER_CASES)
def test_bad_header_is_refused(saved, case):
    change, match = HEADER_CASES[case]
    path, _ = saved
    edit(path, header=change)
    assert_refused(path, match)


@pytest.mark.parametrize("content, match", [
    (b"[1, 2, 3]", "must hold a JSON object; got list"),
    (b"\"bpcore-checkpoint\"", "must hold a JSON object; got str"),
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON|so many JSON values"),
], ids=["list", "string", "syntax", "not-utf8", "deeply-nested"])
def test_header_that_is_not_a_json_object_is_refused(saved, content, match):
    path, _ = saved
    edit(path, replace={"header.json": content})
    assert_refused(path, match)


def test_missing_header_is_refused(saved):
    path, _ = saved
    edit(path, drop={"header.json"})
    assert_refused(path, "no header.json")


def test_pickled_header_is_refused(saved, tmp_path):
    import pickle
    path, _ = saved
    marker = tmp_path / "pickle-ran"
    edit(path, replace={"header.json": pickle.dumps(Canary(str(marker)))})
    assert_refused(path, "not valid JSON")
    assert not marker.exists()


def test_extra_member_is_refused(saved):
    path, _ = saved
    edit(path, add=[("run_me.py", b"import os")])
    assert_refused(path, r"unexpected members \['run_me.py'\]")


def test_missing_member_is_refused(saved):
    path, _ = saved
    edit(path, drop={"optimizer.exp_avg_sq.npy"})
    assert_refused(path, r"lacks the members \['optimizer.exp_avg_sq.npy'\]")


def test_duplicate_member_is_refused(saved):
    path, _ = saved
    with pytest.warns(UserWarning, match="Duplicate name"):
        edit(path, add=[("params.npy", b"x")])
    assert_refused(path, "holds 'params.npy' twice")


def test_too_many_members_are_refused(saved):
    path, _ = saved
    edit(path, add=[(f"m{i}", b"") for i in range(100)])
    assert_refused(path, "at most 64")


def test_member_larger_than_the_file_is_refused(saved):
    """A forged zip directory declaring 10**9 bytes of params in a 3 kB file."""
    path, _ = saved
    edit(path)                                   # plain zip records, no zip64
    data = bytearray(path.read_bytes())
    entry = data.find(b"PK\x01\x02")
    while data[entry + 46:entry + 46 + len(b"params.npy")] != b"params.npy":
        entry = data.find(b"PK\x01\x02", entry + 4)
        assert entry > 0
    data[entry + 20:entry + 28] = (10**9).to_bytes(4, "little") * 2
    path.write_bytes(bytes(data))
    assert_refused(path, "'params.npy' declares 1000000000 bytes, more than the file holds")


def test_compressed_member_is_refused(saved):
    path, _ = saved
    edit(path, compression=zipfile.ZIP_DEFLATED)
    assert_refused(path, "is compressed")


@pytest.mark.parametrize("shorter", [1, 20])
@pytest.mark.parametrize("member", ["params.npy", "optimizer.exp_avg.npy"])
def test_array_of_wrong_shape_is_refused(saved, member, shorter):
    """One value short hides in the .npy header's slack: its header says so; twenty
    short is already refused from the zip directory."""
    path, model = saved
    wrong = io.BytesIO()
    np.save(wrong, np.zeros(model.n_params - shorter))
    edit(path, replace={member: wrong.getvalue()})
    assert_refused(path, f"member '{member}' (declares shape|holds .* bytes; an array of "
                         rf"shape \({model.n_params},\))")


def test_npy_header_shape_is_checked_before_data(saved):
    """Right byte count, but the .npy header declares another shape or dtype."""
    path, model = saved
    data = model.params.tobytes()
    for descr, shape in [("<f8", (model.n_params // 3, 3)), ("<f8", (model.n_params + 1,)),
                         ("<i8", (model.n_params,)), (">f8", (model.n_params,))]:
        edit(path, replace={"params.npy": npy_bytes(descr, shape, data)})
        assert_refused(path, "member 'params.npy' declares shape")


@pytest.mark.parametrize("declared", [(10**12,), (2**31, 2**20)])
def test_huge_declared_shape_fails_without_allocating(saved, declared):
    path, model = saved
    edit(path, replace={"params.npy": npy_bytes("<f8", declared, model.params.tobytes())})
    tracemalloc.start()
    try:
        assert_refused(path, "declares shape")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_huge_architecture_fails_without_allocating(saved):
    """Header, listing and .npy header all agree on 10**12 parameters; the file
    holds a few bytes. Refused from the zip directory's sizes alone."""
    path, _ = saved
    n_params = 10**6 * 10**6 + 10**6

    def huge(header):
        header["layers"] = [{"n_in": 10**6, "n_out": 10**6, "activation": "identity",
                             "negative_slope": 0.01, "dropout": 0.0}]
        header["optimizer"] = None
        header["arrays"] = [{"name": "params.npy", "shape": [n_params], "dtype": "<f8"}]

    edit(path, header=huge, drop={"optimizer.exp_avg.npy", "optimizer.exp_avg_sq.npy"},
         replace={"params.npy": npy_bytes("<f8", (n_params,), b"\0" * 64)})
    tracemalloc.start()
    try:
        assert_refused(path, f"member 'params.npy' holds .* bytes; an array of shape "
                             rf"\({n_params},\)")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_pickled_object_array_is_refused_without_running_it(saved, tmp_path):
    path, model = saved
    marker = tmp_path / "pickle-ran"
    objects = np.empty(model.n_params, dtype=object)
    objects[:] = [Canary(str(marker))] * model.n_params
    pickled = io.BytesIO()
    np.save(pickled, objects, allow_pickle=True)
    edit(path, replace={"params.npy": pickled.getvalue()})
    assert_refused(path, "params.npy")
    assert not marker.exists()

    # the same pickle padded to the byte count the architecture expects
    payload = pickled.getvalue()[128:]
    nbytes = model.params.nbytes
    crafted = npy_bytes("|O", (model.n_params,), payload[:nbytes].ljust(nbytes, b"."))
    edit(path, replace={"params.npy": crafted})
    assert_refused(path, "holds Python objects")
    assert not marker.exists()


def test_nan_in_optimizer_state_is_refused(saved):
    path, model = saved
    state = io.BytesIO()
    np.save(state, np.full(model.n_params, np.nan))
    edit(path, replace={"optimizer.exp_avg.npy": state.getvalue()})
    assert_refused(path, "NaN or infinity")
