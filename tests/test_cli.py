"""The command line: train, then evaluate and predict with the saved model, end to end
in subprocesses; outputs checked against the same model loaded in-process; user
mistakes end in one line on stderr and exit status 2."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import bpcore as _bpcore_package
from bpcore import checkpoint
from bpcore.cli import main
from bpcore.datasets import moons, sine

# the folder that holds the bpcore this process imported: the subprocesses import the
# same one, whichever copy the environment has installed
_IMPORTED_FROM = os.path.dirname(os.path.dirname(os.path.abspath(_bpcore_package.__file__)))


def bpcore(*args, cwd, code=None):
    """Run ``python -m bpcore ARGS`` (or ``code`` under ``python -c``) in ``cwd``, on the
    bpcore under test."""
    command = [sys.executable, "-c", code, *args] if code else \
        [sys.executable, "-m", "bpcore", *args]
    path = os.pathsep.join(p for p in (_IMPORTED_FROM, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning",
                               "PYTHONPATH": path})


def read_predictions(path):
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    return rows[0], rows[1:]


def test_train_on_the_default_data_set_then_predict_with_the_saved_model(tmp_path):
    trained = bpcore("train", "--epochs", "40", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "Traceback" not in trained.stderr
    assert "task: classification, 2 classes [0, 1]" in trained.stdout
    final = next(line for line in trained.stdout.splitlines() if line.startswith("final:"))
    assert "val_accuracy" in final
    # without a terminal, progress is about ten epoch lines on stderr
    assert trained.stderr.count("epoch ") == 10
    assert "saved model.bpc" in trained.stdout and (tmp_path / "model.bpc").is_file()

    predicted = bpcore("predict", "model.bpc", "--output", "predictions.csv", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    header, rows = read_predictions(tmp_path / "predictions.csv")
    assert header == ["output_0", "label"]

    model = checkpoint.load(tmp_path / "model.bpc")
    X, y = moons()                       # the default data set, default seed
    expected = model.predict(X)
    outputs = np.array([[float(row[0])] for row in rows])
    labels = np.array([int(row[1]) for row in rows])
    np.testing.assert_array_equal(outputs, expected)        # 17 digits read back exactly
    np.testing.assert_array_equal(labels, (expected[:, 0] > 0).astype(int))
    assert (labels == y).mean() >= 0.95

    # the same predictions as NPY and on stdout
    as_npy = bpcore("predict", "model.bpc", "-o", "outputs.npy", cwd=tmp_path)
    assert as_npy.returncode == 0, as_npy.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "outputs.npy"), expected)
    to_stdout = bpcore("predict", "model.bpc", cwd=tmp_path)
    assert to_stdout.stdout.splitlines() == (tmp_path / "predictions.csv").read_text().splitlines()


def test_csv_with_a_header_labels_1_and_2_sorted_by_class(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 3))
    y = np.where(X[:, 0] + X[:, 1] > 0, 2, 1)
    order = np.argsort(y, kind="stable")     # sorted: the validation split must shuffle
    with open(tmp_path / "train.csv", "w") as file:
        file.write("kind,a,b,c\n")
        for label, row in zip(y[order], X[order]):
            file.write(f"{label}," + ",".join(map(repr, row.tolist())) + "\n")
    trained = bpcore("train", "--data", "train.csv", "--target-columns", "kind",
                     "--layers", "3,8,2", "--epochs", "30", "--out", "net.bpc",
                     "--verbose", "0", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "classes" not in trained.stdout                  # verbose 0: results only

    model = checkpoint.load(tmp_path / "net.bpc")
    progress = checkpoint.load_checkpoint(tmp_path / "net.bpc").progress
    assert progress["task"] == {"kind": "classification", "loss": "cross_entropy",
                                "classes": [1, 2], "target_columns": ["kind"]}

    # the saved target column is dropped again for evaluate and predict
    evaluated = bpcore("evaluate", "net.bpc", "--data", "train.csv", "--json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    scores = json.loads(evaluated.stdout)
    expected = model.evaluate(X, y - 1, loss="cross_entropy", metrics=["accuracy"])
    assert scores["accuracy"] == pytest.approx(expected["accuracy"])
    assert scores["loss"] == pytest.approx(expected["loss"])
    assert scores["accuracy"] > 0.9

    predicted = bpcore("predict", "net.bpc", "--data", "train.csv", "-o", "p.npz",
                       "--probabilities", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    with np.load(tmp_path / "p.npz") as result:
        probabilities, labels = result["outputs"], result["labels"]
    logits = model.predict(X[order])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    np.testing.assert_array_equal(labels, logits.argmax(axis=1) + 1)


def test_regression_on_sine_from_npz(tmp_path):
    X, y = sine(300, seed=1)
    np.savez(tmp_path / "sine.npz", X=X, y=y)
    trained = bpcore("train", "--data", "sine.npz", "--activation", "tanh", "--epochs", "60",
                     "--verbose", "0", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "r2" in trained.stdout and "accuracy" not in trained.stdout
    predicted = bpcore("predict", "model.bpc", "--data", "sine.npz", "-o", "y.csv",
                       cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    header, rows = read_predictions(tmp_path / "y.csv")
    assert header == ["output_0"]                           # no labels for a regression
    outputs = np.array(rows, dtype=float)
    np.testing.assert_array_equal(outputs, checkpoint.load(tmp_path / "model.bpc").predict(X))
    assert np.mean((outputs - y) ** 2) < 0.05


def test_poisson_regression_of_counts_saves_its_loss_and_predicts_rates(tmp_path):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(400, 2))
    rate = np.exp(0.5 + X @ np.array([0.4, -0.3]))
    y = rng.poisson(rate)
    np.savez(tmp_path / "counts.npz", X=X, y=y)
    trained = bpcore("train", "--data", "counts.npz", "--loss", "poisson", "--layers", "2,1",
                     "--epochs", "40", "--verbose", "0", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "r2" in trained.stdout and "accuracy" not in trained.stdout
    saved = checkpoint.load_checkpoint(tmp_path / "model.bpc")
    assert saved.progress["task"]["kind"] == "regression"
    assert saved.progress["task"]["loss"] == "poisson"
    model = saved.model

    evaluated = bpcore("evaluate", "model.bpc", "--data", "counts.npz", "--json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    scores = json.loads(evaluated.stdout)
    z = model.predict(X)[:, 0]
    np.testing.assert_allclose(scores["loss"], np.mean(np.exp(z) - y * z), rtol=1e-12)
    np.testing.assert_allclose(scores["mae"], np.mean(np.abs(np.exp(z) - y)), rtol=1e-12)

    predicted = bpcore("predict", "model.bpc", "--data", "counts.npz", "-o", "p.csv",
                       cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    header, rows = read_predictions(tmp_path / "p.csv")
    assert header == ["output_0", "rate_0"]
    columns = np.array(rows, dtype=float)
    np.testing.assert_array_equal(columns[:, 0], z)
    np.testing.assert_allclose(columns[:, 1], np.exp(z), rtol=1e-15)
    assert np.mean(np.abs(columns[:, 1] - rate) / rate) < 0.2
    as_npz = bpcore("predict", "model.bpc", "--data", "counts.npz", "-o", "p.npz",
                    cwd=tmp_path)
    assert as_npz.returncode == 0, as_npz.stderr
    with np.load(tmp_path / "p.npz") as arrays:
        assert sorted(arrays.files) == ["outputs", "rates"]
        np.testing.assert_allclose(arrays["rates"][:, 0], np.exp(z), rtol=1e-15)


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    trained = bpcore("train", "--epochs", "5", "--plot", "curves.png", "--verbose", "0",
                     cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(png[16:20], "big")
    assert width == 1100                    # two panels: the loss and the boundary


def test_plot_without_matplotlib_names_the_extra_before_training(tmp_path):
    hide_matplotlib = ("import sys; sys.modules['matplotlib'] = None; "
                       "from bpcore.cli import main; sys.exit(main(sys.argv[1:]))")
    result = bpcore("train", "--plot", "x.png", cwd=tmp_path, code=hide_matplotlib)
    assert result.returncode == 2
    assert "bpcore[plot]" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "model.bpc").exists()


@pytest.mark.parametrize("args, words", [
    ([], "required"),
    (["fit"], "invalid choice"),
    (["train", "--layers", "2,x"], "--layers"),
    (["train", "--layers", "3,8,1"], "starts with 3 inputs but the data has 2"),
    (["train", "--layers", "2,8,3"], "2 classes"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--validation-split", "1"], "--validation-split"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--dataset", "sine", "--loss", "cross_entropy"], "class labels"),
    (["train", "--loss", "nll"], "--loss"),
    (["train", "--loss", "poisson", "--task", "classification"], "is for regression"),
    (["train", "--dataset", "sine", "--loss", "poisson"], "non-negative counts"),
    (["train", "--data", "missing.csv"], "no such file"),
    (["train", "--data", "data.json"], ".csv"),
    (["train", "--data", "bad.csv"], "bad.csv"),
    (["train", "--data", "bad.csv", "--dataset", "xor"], "not both"),
    (["train", "--out", "no/such/folder/m.bpc", "--epochs", "1"], "folder"),
    (["predict", "missing.bpc"], "not found"),
    (["predict", "bad.csv"], "checkpoint"),
])
def test_user_mistakes_are_one_line_and_exit_status_2(tmp_path, monkeypatch, capsys,
                                                      args, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.csv").write_text("1,2,3\n4,x,6\n")
    (tmp_path / "data.json").write_text("{}")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bpcore") and ": error: " in err
    assert words in err


def test_a_diverging_run_exits_1_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status = main(["train", "--optimizer", "sgd", "--lr", "1e30", "--activation", "identity",
                   "--epochs", "3", "--verbose", "0"])
    assert status == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "diverged" in err and "--lr" in err


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_saved_classification_task_without_classes_is_one_line_and_status_2(tmp_path,
                                                                              command):
    import bpcore as bp
    model = bp.Model([bp.Dense(2, 4, "relu"), bp.Dense(4, 2)], seed=0)
    checkpoint.save(tmp_path / "m.bpc", model,
                    progress={"task": {"kind": "classification", "loss": "cross_entropy"}})
    result = bpcore(command, "m.bpc", "--dataset", "moons", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "without its class labels" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("fraction", [0.2, 0.3])
def test_the_validation_split_is_stratified_by_class(tmp_path, monkeypatch, fraction):
    import bpcore as bp
    # a file sorted by class, with unequal classes: 60 of 5, 30 of 7, 10 of 9
    rng = np.random.default_rng(3)
    y = np.repeat([5, 7, 9], [60, 30, 10])
    X = rng.normal(size=(y.size, 2)) + y[:, None]
    data = tmp_path / "sorted.csv"
    data.write_text("".join(f"{a!r},{b!r},{label}\n" for (a, b), label in zip(X.tolist(), y)))
    seen = {}
    fit = bp.Model.fit

    def recording_fit(model, X_train, y_train, **options):
        seen["train"], seen["validation"] = (X_train, y_train), options["validation_data"]
        return fit(model, X_train, y_train, **options)

    monkeypatch.setattr(bp.Model, "fit", recording_fit)
    status = main(["train", "--data", str(data), "--epochs", "1", "--verbose", "0",
                   "--validation-split", str(fraction), "--out", str(tmp_path / "m.bpc")])
    assert status == 0
    X_val, codes_val = seen["validation"]
    X_train, codes_train = seen["train"]
    n_val = int(y.size * fraction)
    assert len(X_val) == n_val and len(X_train) == y.size - n_val
    # every row is held once, on one side; the rows' labels are read back from X
    rows = np.concatenate([X_train, X_val])
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, X.tolist()))
    position = {tuple(row): i for i, row in enumerate(X.tolist())}
    held = y[[position[tuple(row)] for row in X_val.tolist()]]
    np.testing.assert_array_equal(np.array([5, 7, 9])[codes_val], held)
    for label, count in zip(*np.unique(y, return_counts=True)):
        assert abs(np.sum(held == label) - n_val * count / y.size) < 1
