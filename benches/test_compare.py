"""benches/compare.py and benches/compare_sklearn.py run end to end, and
compare.py's warm-up keeps every block's state.

No test here asserts a timing: the subprocess run checks that compare.py's own
correctness gate (bpcore's weights against the NumPy step's after 5 steps, 1e-10 in
float64) passes and that it prints a row for bpcore; compare_sklearn.py's quick run
must print every row, with bpcore's adam fits matching scikit-learn's.
"""
import dataclasses
import os
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import bpcore as bp

from . import compare, compare_sklearn

ROOT = Path(__file__).resolve().parent.parent


class CountingPeer(compare.Peer):
    """A peer whose state is one counter; ``log`` (shared between peers if given)
    records the calls in order, a run of consecutive steps as one "run"."""

    def __init__(self, name="peer", log=None):
        self.name, self.state, self.saved = name, 0, 0
        self.log = [] if log is None else log

    def run(self):
        self.state += 1
        if not self.log or self.log[-1] != (self.name, "run"):
            self.log.append((self.name, "run"))

    def restore(self):
        self.state = self.saved
        self.log.append((self.name, "restore"))


def test_warm_up_runs_the_peer_from_its_saved_state():
    peer = CountingPeer()
    peer.saved, peer.state = 7, 100
    compare.warm_up(peer, 0.01)
    assert peer.log == [("peer", "restore"), ("peer", "run")]
    assert peer.state > 7               # it stepped from the saved state


def test_interleaved_samples_warms_every_block_only_with_threads(monkeypatch):
    monkeypatch.setattr(compare, "WARMUP_SECONDS", 0.005)
    for threads in (1, 2):
        log = []
        peers = {name: CountingPeer(name, log) for name in ("a", "b")}
        samples = compare.interleaved_samples(peers, rounds=3, threads=threads)
        assert set(samples) == {"a", "b"}
        assert all(len(v) == 3 and all(np.isfinite(v)) and min(v) > 0
                   for v in samples.values())
        # each block (the calibration's, then the rounds') is a restore and the timed
        # steps, after a warm-up of the same peer with more than one thread
        block = [("restore", "run")] if threads == 1 else [("restore", "run")] * 2
        expected = [(name, call) for _ in range(1 + 3) for name in ("a", "b")
                    for pair in block for call in pair]
        assert log == expected


def test_paired_ratio_is_the_median_of_each_rounds_ratio():
    # a peer 3x as slow as bpcore in two rounds of three, in a slow phase for the
    # second: each round's ratio is 1, 3, 3 (median 3); the ratio of the two medians,
    # 3 / 2, mixes the rounds
    peer, base = [2.0, 3.0, 30.0], [2.0, 1.0, 10.0]
    assert compare.paired_ratio(peer, base) == (3.0, 2.0, 3.0)
    assert statistics.median(peer) / statistics.median(base) == 1.5
    # ratios 1..5: quartiles by hand (inclusive: interpolated at 1/4 and 3/4 of the
    # way from the smallest to the largest, here the 2nd and 4th values)
    assert compare.paired_ratio([1, 2, 3, 4, 5], [1, 1, 1, 1, 1]) == (3, 2, 4)
    assert compare.paired_ratio([6.0], [4.0]) == (1.5, 1.5, 1.5)
    with pytest.raises(ValueError, match="equally long"):
        compare.paired_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-empty"):
        compare.paired_ratio([], [])


def test_compare_runs_and_its_check_passes():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "compare.py"), "--quick", "--threads", "2",
         "--only", "W1b", "--rounds", "1", "--plot", ""],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "CHECK FAILED" not in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("| W1b")]
    assert len(rows) == 2, result.stdout      # the step and predict rows
    # the one-thread step against one core's GEMM rate, under the table
    assert "one-thread GEMM limit:" in result.stdout
    assert any(line.startswith("W1b step: bpcore ") and "one-thread GEMM limit" in line
               for line in result.stdout.splitlines()), result.stdout


def test_compare_runs_w4_and_w5_and_their_checks_pass():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "compare.py"), "--quick", "--threads", "1",
         "--only", "W4,W5", "--rounds", "1", "--plot", ""],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "CHECK FAILED" not in result.stdout
    rows = [_cells(line)[0] for line in result.stdout.splitlines()
            if line.startswith("| W")]
    assert rows == ["W4 sigmoid", "W5 tanh"], result.stdout


def test_w4_and_w5_are_the_workloads_of_the_readme():
    # benches/README.md: W4 is W1 with sigmoid hidden layers; W5 is 64-128-10 tanh,
    # float32, batch 64, softmax cross-entropy, Adam 1e-3, digits-like data
    assert compare.W4 == dataclasses.replace(compare.W1, id="W4", activation="sigmoid")
    W5 = compare.W5
    assert (W5.sizes, np.dtype(W5.dtype), W5.batch, W5.loss, W5.optimizer, W5.lr,
            W5.activation) == ((64, 128, 10), np.float32, 64, "cross_entropy", "adam",
                               1e-3, "tanh")
    X, y = W5.data()
    assert X.shape == (64, 64) and X.dtype == np.float32
    assert X.min() >= 0 and X.max() < 1
    assert y.shape == (64,) and set(np.unique(y)) <= set(range(10))
    rows = compare.workload_list(quick=True, only="W4,W5")
    assert [(label, workload) for label, workload, _ in rows] == [
        ("W4 sigmoid", compare.W4), ("W5 tanh", compare.W5)]
    assert [label for label, *_ in compare.workload_list(False, "")][-2:] == [
        "W4 sigmoid", "W5 tanh"]


@pytest.mark.parametrize("workload", [compare.W4, compare.W5,
                                      compare.W5.with_dtype(np.float64)],
                         ids=lambda w: w.id)
def test_pytorch_peer_trains_like_bpcore_with_the_workload_activation(workload):
    torch = pytest.importorskip("torch")
    peers = compare.make_peers(workload, {"PyTorch": torch})
    kinds = {type(m) for m in peers["PyTorch"].net}
    expected = torch.nn.Sigmoid if workload.activation == "sigmoid" else torch.nn.Tanh
    assert expected in kinds and torch.nn.ReLU not in kinds
    assert compare.check(peers, workload) == {}


@pytest.mark.parametrize("workload", [compare.W4, compare.W5,
                                      compare.W5.with_dtype(np.float64)],
                         ids=lambda w: w.id)
def test_jax_peer_trains_like_bpcore_with_the_workload_activation(workload):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)      # as compare.py's start_jax: W4 is float64
    peers = compare.make_peers(workload, {"JAX jit": jax})
    assert set(peers) == {"bpcore", "NumPy", "JAX jit"}
    assert compare.check(peers, workload) == {}


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("workload", [compare.W4, compare.W5], ids=lambda w: w.id)
def test_sklearn_peer_has_the_workload_activation(workload):
    pytest.importorskip("sklearn")
    X, y = workload.data()
    model = compare.SklearnPeer(workload, X, y).model
    # its forward pass, written out with the workload's activation
    f = _sigmoid if workload.activation == "sigmoid" else np.tanh
    a = X.astype(np.float64)
    for W, b in zip(model.coefs_[:-1], model.intercepts_[:-1]):
        a = f(a @ W + b)
    out = a @ model.coefs_[-1] + model.intercepts_[-1]
    if workload.loss == "mse":
        np.testing.assert_allclose(model.predict(X), out.ravel(), rtol=1e-5, atol=1e-6)
    else:
        probabilities = np.exp(out - out.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(model.predict_proba(X), probabilities, rtol=1e-4,
                                   atol=1e-6)


def _close(actual, expected, terms):
    """Equal to rounding: float64 products of well-scaled terms (|x| |w| summed)."""
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-12 * terms.max())


def test_matmul_only_makes_the_step_products_in_row_major_layout():
    workload = compare.W2_MOMENTUM.with_dtype(np.float64)
    peer = compare.MatmulPeer(workload, blas_parallel=False)
    peer.run()
    n, sizes = workload.batch, workload.sizes
    layers = len(sizes) - 1
    assert len(peer.calls) == 3 * layers - 1     # forward, dW each; dX all but the first
    for l, (a, b, c, *_) in enumerate(peer.calls[:layers]):
        X, W, Z = b.T, a.T, c.T                  # Z = X . W on C-ordered arrays
        assert X.flags.c_contiguous and W.flags.c_contiguous and Z.flags.c_contiguous
        assert X.shape == (n, sizes[l]) and W.shape == (sizes[l], sizes[l + 1])
        _close(Z, X @ W, np.abs(X) @ np.abs(W))
    backward = iter(peer.calls[layers:])
    for l in range(layers - 1, -1, -1):
        if l > 0:                                # dX = delta . W^T
            a, b, c, ta, tb, alpha, beta = next(backward)
            W, delta, dX = a.T, b.T, c.T
            assert (ta, tb, alpha, beta) == (1, 0, 1.0, 0.0)
            assert W.shape == (sizes[l], sizes[l + 1]) and dX.shape == (n, sizes[l])
            _close(dX, delta @ W.T, np.abs(delta) @ np.abs(W.T))
        a, b, c, ta, tb, alpha, beta = next(backward)       # dW = X^T . delta
        delta, X, dW = a.T, b.T, c.T
        assert (ta, tb, alpha, beta) == (0, 1, 1.0, 0.0)   # one BLAS thread: dW
        assert X.shape == (n, sizes[l]) and dW.shape == (sizes[l], sizes[l + 1])
        _close(dW, X.T @ delta, np.abs(X.T) @ np.abs(delta))
    macs = sum(i * o for i, o in zip(sizes[:-1], sizes[1:]))
    assert peer.flops == 2 * n * (2 * macs + macs - sizes[0] * sizes[1])


# plain SGD: W += -lr X^T . delta (alpha -lr, beta 1); SGD with momentum on more than
# one BLAS thread: buf = momentum buf + X^T . delta (alpha 1, beta momentum)
@pytest.mark.parametrize("workload, blas_parallel, alpha, beta", [
    (compare.W1, None, -compare.W1.lr, 1.0),
    (compare.W2_MOMENTUM.with_dtype(np.float64), True, 1.0, compare.W2_MOMENTUM.momentum),
], ids=["plain-sgd", "momentum"])
def test_matmul_only_adds_weight_products_into_a_buffer(workload, blas_parallel, alpha,
                                                        beta):
    peer = compare.MatmulPeer(workload, blas_parallel=blas_parallel)
    dW_calls = [call for call in peer.calls if call[4] == 1]
    assert len(dW_calls) == len(workload.sizes) - 1
    before = [c.T.copy() for _, _, c, *_ in dW_calls]
    peer.run()
    for (a, b, c, _ta, _tb, alpha_, beta_), old in zip(dW_calls, before):
        delta, X = a.T, b.T
        assert (alpha_, beta_) == (alpha, beta)
        _close(c.T, beta * old + alpha * (X.T @ delta),
               np.abs(old) + np.abs(X.T) @ np.abs(delta))


# ------------------------------------------------------------ compare_sklearn.py
def _cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_compare_sklearn_quick_prints_every_row_and_adam_matches_scikit_learn():
    pytest.importorskip("sklearn")
    result = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "compare_sklearn.py"), "--quick",
         "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [_cells(line) for line in result.stdout.splitlines()
            if line.startswith(("| moons", "| digits", "| diabetes"))]
    expected = ([(task, solver, activation) for task in ("moons", "digits")
                 for solver, activation in compare_sklearn.CLASSIFIER_ROWS]
                + [("diabetes", solver, activation)
                   for solver, activation in compare_sklearn.REGRESSOR_ROWS])
    assert [(r[0].split()[0], r[2], r[3]) for r in rows] == expected, result.stdout
    for (task, solver, activation), row in zip(expected, rows):
        max_iter = int(row[4])
        n_ours, n_theirs = row[5].split(" / ")
        assert 1 <= float(n_theirs) <= max_iter, row
        if solver == "adam":
            # same parameters, same random_state: scikit-learn's own fit is the
            # oracle for bpcore's epoch count, weights and score (float64)
            assert n_ours == n_theirs, row
            assert float(row[8]) < 1e-8, row
            assert row[6] == row[7], row
        elif row[6] != "not available":           # lbfgs, where bpcore has it
            assert 1 <= float(n_ours) <= max_iter, row
            assert np.isfinite(float(row[8])), row
        float32 = (task, solver, activation) == compare_sklearn.FLOAT32_ROW
        assert (row[12] != "–") == float32, row


class _MissingSolver:
    """An estimator whose fit raises ImportError, as bpcore's lbfgs does where
    bpcore.optim.minimize is missing."""

    def __init__(self, **params):
        self.params = params

    def fit(self, X, y):
        raise ImportError("No module named 'somewhere.minimize'")


def test_measure_reports_a_missing_solver_and_still_measures_scikit_learn(monkeypatch):
    sk = pytest.importorskip("sklearn.neural_network")
    task = compare_sklearn.moons_task()
    monkeypatch.setattr(compare_sklearn, "estimators",
                        lambda kind: (_MissingSolver, sk.MLPClassifier))
    results, max_iter = compare_sklearn.measure(task, "lbfgs", "tanh", seeds=2, scale=10)
    assert max_iter == compare_sklearn.LBFGS_MAX_ITER // 10
    assert results["bpcore"] == {
        "missing": "bpcore lbfgs: No module named 'somewhere.minimize'"}
    assert results["weights"] == []
    X_train, X_test, y_train, y_test = task["data"]
    for seed in range(2):                  # scikit-learn's side, refitted here
        reference = sk.MLPClassifier(hidden_layer_sizes=(16, 16), activation="tanh",
                                     solver="lbfgs", max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")       # lbfgs stops at max_iter
            reference.fit(X_train, y_train)
        assert results["scikit-learn"]["score"][seed] == reference.score(X_test, y_test)
        assert results["scikit-learn"]["n_iter"][seed] == reference.n_iter_
    cells = _cells(compare_sklearn.table_rows(task, "lbfgs", "tanh", results, max_iter))
    assert cells[5] == f"– / {max_iter:.1f}"       # scikit-learn ran max_iter both times
    assert cells[6] == "not available"
    assert cells[8] == cells[9] == cells[11] == "–"


def test_diabetes_is_standardised_with_the_training_split_statistics():
    datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.model_selection import train_test_split
    X, y = datasets.load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25,
                                                        random_state=0)
    got = compare_sklearn.diabetes_task()["data"]
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    np.testing.assert_allclose(got[0], (X_train - mean) / std, rtol=1e-12)
    np.testing.assert_allclose(got[1], (X_test - mean) / std, rtol=1e-12)
    np.testing.assert_allclose(got[2], (y_train - y_train.mean()) / y_train.std(),
                               rtol=1e-12)
    np.testing.assert_allclose(got[3], (y_test - y_train.mean()) / y_train.std(),
                               rtol=1e-12)


def test_classification_splits_are_stratified_75_25():
    pytest.importorskip("sklearn")
    for task in (compare_sklearn.moons_task(), compare_sklearn.digits_task()):
        X_train, X_test, y_train, y_test = task["data"]
        n = len(y_train) + len(y_test)
        assert len(y_test) == int(np.ceil(0.25 * n))
        # every class keeps its share in the test quarter (to one sample)
        labels, counts = np.unique(np.concatenate([y_train, y_test]), return_counts=True)
        test_counts = np.array([np.sum(y_test == label) for label in labels])
        assert np.all(np.abs(test_counts - counts * len(y_test) / n) <= 1)


def test_cells_by_hand():
    assert compare_sklearn.score_cell([0.9, 0.8, 1.0]) == "0.900 (0.800-1.000)"
    # median of 2, 1, 4 ms is 2 ms; best 1 ms
    assert compare_sklearn.time_cell([0.002, 0.001, 0.004]) == "2.0 (1.0)"
    assert compare_sklearn.time_cell([1.5]) == "1,500.0 (1,500.0)"
    # scikit-learn's median 6 ms over bpcore's 2 ms
    assert compare_sklearn.ratio_cell([0.006, 0.005, 0.9], [0.002, 0.001, 0.003]) == "3.0x"


CPUINFO = """processor	: 0
vendor_id	: GenuineIntel
model name	: Example CPU @ 2.00GHz
flags		: fpu sse2 avx avx2 fma avx512f avx512bw
bugs		:

processor	: 1
model name	: Example CPU @ 2.00GHz
flags		: fpu sse2 avx avx2 fma avx512f avx512bw
"""


def test_cpu_lines_read_the_model_name_and_vector_flags():
    assert compare_sklearn.cpu_lines(CPUINFO) == [
        "CPU: Example CPU @ 2.00GHz", "vector extensions: avx512f, avx2"]
    older = CPUINFO.replace(" avx512f avx512bw", "").replace(" avx2", "")
    assert compare_sklearn.cpu_lines(older)[1] == "vector extensions: neither avx512f nor avx2"
    # no "model name" (some ARM kernels) and no flags line
    assert compare_sklearn.cpu_lines("processor\t: 0\nFeatures\t: fp asimd\n") == [
        "CPU: model name not listed"]


def test_the_fit_rows_train_like_the_bare_loop_and_print(capsys):
    # the F rows' gate is itself checked: fit over FIT_EPOCHS unshuffled epochs and
    # the bare train_step loop over the same batches end with the same parameters
    label, sizes, dtype, batch, _opt, lr, X, y = compare.fit_rows()[0]
    models = []
    for kind in (compare.FitEpochsPeer, compare.BareLoopPeer):
        layers = [bp.Dense(a, b, "relu") for a, b in zip(sizes[:-2], sizes[1:-1])]
        model = bp.Model(layers + [bp.Dense(sizes[-2], sizes[-1])], dtype=dtype, seed=0)
        kind(model, bp.Adam(model, lr=lr), bp.CrossEntropyLoss(), X.astype(dtype), y,
             batch).run()
        models.append(model)
    np.testing.assert_array_equal(models[0].params, models[1].params)
    assert models[0].epochs_trained == compare.FIT_EPOCHS
    compare.fit_overhead("F1", rounds=1, threads=1)
    out = capsys.readouterr().out
    assert "| F1 fit, two moons | 10 |" in out and "CHECK FAILED" not in out
