"""bpcore.distributed: data-parallel training over MPI.

The collective behaviour runs in 2-rank MPI jobs (tests/mpi/worker_*.py, each
asserting that its communicator really has 2 ranks) under the ``mpiexec`` beside
``sys.executable`` (``pip install mpi4py mpich`` puts it there); their oracles are one
process on the whole batch, NumPy, and each other rank. The single-process behaviour
(a communicator of one rank) and the errors run here. Everything that needs mpi4py
skips where it is absent.
"""
import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bpcore as bp

WORKERS = Path(__file__).resolve().parent / "mpi"
MPIEXEC = Path(sys.executable).with_name("mpiexec")
# the folder of the bpcore this process imported: the MPI ranks import the same one
IMPORTED_FROM = str(Path(bp.__file__).resolve().parent.parent)


def _environment():
    path = os.pathsep.join(p for p in (IMPORTED_FROM, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1"}


def _mpiexec(*args, timeout=240):
    """Run ``args`` on 2 ranks; return the CompletedProcess (a hang fails the test)."""
    pytest.importorskip("mpi4py")
    if not MPIEXEC.exists():
        pytest.skip(f"no mpiexec beside {sys.executable} (pip install mpich)")
    return subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-m", "mpi4py", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env=_environment())


@pytest.mark.parametrize("worker", ["worker_api.py", "worker_steps.py", "worker_fit.py"])
def test_two_ranks(worker, tmp_path):
    result = _mpiexec(str(WORKERS / worker), str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK rank 0" in result.stdout and "OK rank 1" in result.stdout, result.stdout


def test_cli_trains_on_two_ranks_and_rank_0_writes_one_checkpoint(tmp_path):
    out = tmp_path / "model.bpc"
    args = ["train", "--distributed", "--dataset", "moons", "--epochs", "3",
            "--batch-size", "16", "--validation-split", "0", "--out", str(out),
            "--verbose", "2"]
    result = _mpiexec("-m", "bpcore", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bpc"]
    assert result.stdout.count("saved") == 1 and "distributed: 2 ranks" in result.stdout
    checkpoint = bp.load_checkpoint(out)
    assert checkpoint.progress["epoch"] == 3
    assert type(checkpoint.optimizer) is bp.Adam and checkpoint.optimizer.steps > 0
    # the saved model is the one rank 0 scored: its loss on the same data, as printed
    from bpcore.cli import build_parser
    from bpcore.cli.data import load_data
    data = load_data(build_parser().parse_args(args), need_target=True)
    final = [line for line in result.stdout.splitlines() if line.startswith("final:")]
    printed = float(final[0].split()[2])
    scores = checkpoint.model.evaluate(data.X, data.y, loss="bce")
    assert scores["loss"] == pytest.approx(printed, rel=1e-3)


def test_cli_a_rank_that_fails_aborts_the_job_instead_of_leaving_the_other_waiting(
        tmp_path):
    pytest.importorskip("mpi4py")
    if not MPIEXEC.exists():
        pytest.skip(f"no mpiexec beside {sys.executable} (pip install mpich)")
    good = tmp_path / "good.csv"
    X, y = bp.datasets.moons(60, seed=0)
    np.savetxt(good, np.column_stack([X, y]), delimiter=",")
    rank = [sys.executable, "-m", "bpcore", "train", "--distributed", "--epochs", "50",
            "--out", str(tmp_path / "m.bpc"), "--data"]
    result = subprocess.run([str(MPIEXEC), "-n", "1", *rank, str(good), ":",
                             "-n", "1", *rank, str(tmp_path / "missing.csv")],
                            capture_output=True, text=True, timeout=120, env=_environment())
    assert result.returncode == 2, result.stdout + result.stderr
    assert "missing.csv" in result.stderr and not (tmp_path / "m.bpc").exists()


def test_cli_fewer_validation_rows_than_ranks_score_on_every_rank(tmp_path):
    out = tmp_path / "model.bpc"
    result = _mpiexec("-m", "bpcore", "train", "--distributed", "--dataset", "moons",
                      "--n-samples", "10", "--validation-split", "0.1", "--epochs", "2",
                      "--batch-size", "4", "--out", str(out), "--verbose", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 to validate" in result.stdout and bp.load_checkpoint(out).progress["epoch"] == 2


def test_the_example_on_two_ranks(tmp_path):
    example = Path(__file__).resolve().parents[1] / "examples" / "distributed_moons.py"
    result = _mpiexec(str(example), "--epochs", "10")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rank(s)" in result.stdout, result.stdout
    assert "same weights on every rank: True" in result.stdout
    for line in ("fit: ", "loop: "):
        accuracy = float(result.stdout.split(line)[1].split("accuracy ")[1].split()[0]
                         .rstrip(";"))
        assert accuracy > 0.9, result.stdout


# ------------------------------------------------------------------ one process
def test_import_bpcore_does_not_import_mpi4py():
    code = ("import sys, bpcore, bpcore.distributed, bpcore.train.loop; "
            "assert 'mpi4py' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, env=_environment())


def test_without_mpi4py_the_error_names_the_extra():
    code = ("import sys; sys.modules['mpi4py'] = None; sys.modules['mpi4py.MPI'] = None\n"
            "import bpcore.distributed as d\n"
            "try:\n    d.rank()\nexcept ImportError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=_environment(), check=True)
    assert "pip install 'bpcore[mpi]'" in result.stdout


def test_cli_without_mpi4py_is_one_line(tmp_path):
    code = ("import sys; sys.modules['mpi4py'] = None; sys.modules['mpi4py.MPI'] = None\n"
            "from bpcore.cli import main\n"
            f"sys.exit(main(['train', '--distributed', '--dataset', 'moons', '--out', "
            f"{str(tmp_path / 'm.bpc')!r}]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=_environment())
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--distributed" in result.stderr
    assert "bpcore[mpi]" in result.stderr and not list(tmp_path.iterdir())


@pytest.fixture
def dist():
    pytest.importorskip("mpi4py")
    import bpcore.distributed as distributed
    return distributed


def _net(seed=0):
    return bp.Model([bp.Dense(3, 6, "sigmoid"), bp.Dense(6, 2)], seed=seed)


def test_one_rank_is_the_plain_optimizer(dist):
    """On a communicator of one rank the mean is the gradient itself: train_step and
    fit give what the plain optimizer gives."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    for make in (lambda m: bp.SGD(m, lr=0.1, momentum=0.9), lambda m: bp.Adam(m, lr=0.01)):
        a, b = _net(), _net()
        opt_a, opt_b = dist.DistributedOptimizer(make(a)), make(b)
        for _ in range(5):
            va = a.train_step(X, y, bp.CrossEntropyLoss(), opt_a)
            vb = b.train_step(X, y, bp.CrossEntropyLoss(), opt_b)
            assert va == pytest.approx(vb, rel=1e-14)
        np.testing.assert_allclose(a.params, b.params, rtol=0, atol=1e-14)
        ha = a.fit(X, y, loss="cross_entropy", optimizer=opt_a, epochs=3, batch_size=16,
                   seed=1, verbose=0, validation_split=0.25, metrics=["accuracy"])
        hb = b.fit(X, y, loss="cross_entropy", optimizer=opt_b, epochs=3, batch_size=16,
                   seed=1, verbose=0, validation_split=0.25, metrics=["accuracy"])
        np.testing.assert_allclose(a.params, b.params, rtol=0, atol=1e-13)
        for key in hb.history:
            np.testing.assert_allclose(ha[key], hb[key], rtol=1e-12)
        assert opt_a.steps == opt_b.steps


def test_the_wrapper_shares_the_optimizer(dist):
    net = _net()
    plain = bp.Adam(net, lr=0.01)
    wrapped = dist.DistributedOptimizer(plain)
    assert isinstance(wrapped, bp.Adam) and isinstance(wrapped, dist.DistributedOptimizer)
    assert type(wrapped).__name__ == "DistributedAdam" and wrapped.optimizer is plain
    assert wrapped.comm.Get_size() == 1 and "Adam(lr=0.01" in repr(wrapped)
    wrapped.lr = 0.5
    assert plain.lr == 0.5 and plain.fused_scalars is wrapped.fused_scalars
    plain.weight_decay = 0.1
    assert wrapped.hyperparameters == plain.hyperparameters
    net.loss_and_grad(np.ones((2, 3)), np.zeros(2, int), bp.CrossEntropyLoss())
    wrapped.step()
    assert plain.steps == wrapped.steps == 1 and wrapped.state is plain.state
    assert wrapped.state_dict()["optimizer"] == "Adam"
    with pytest.raises(ValueError, match="lr"):
        wrapped.lr = -1.0
    assert plain.lr == 0.5


def test_a_checkpoint_of_the_wrapper_loads_as_the_plain_optimizer(dist, tmp_path):
    net = _net()
    wrapped = dist.DistributedOptimizer(bp.SGD(net, lr=0.1, momentum=0.5))
    net.fit(np.ones((8, 3)), np.arange(8) % 2, loss="cross_entropy", optimizer=wrapped,
            epochs=2, verbose=0)
    bp.checkpoint.save(tmp_path / "m.bpc", net, wrapped)
    loaded = bp.load_checkpoint(tmp_path / "m.bpc")
    assert type(loaded.optimizer) is bp.SGD and loaded.optimizer.steps == wrapped.steps
    np.testing.assert_array_equal(loaded.optimizer.state["momentum_buffer"],
                                  wrapped.state["momentum_buffer"])
    np.testing.assert_array_equal(loaded.model.params, net.params)


@pytest.mark.parametrize("bad, error, match", [
    (lambda d, m: d.DistributedOptimizer("adam"), TypeError, "optimizer must be a bpcore"),
    (lambda d, m: d.DistributedOptimizer(d.DistributedOptimizer(bp.Adam(m))), TypeError,
     "already a DistributedOptimizer"),
    (lambda d, m: d.DistributedOptimizer(bp.Adam(m), comm="world"), TypeError,
     "comm must be an mpi4py intracommunicator"),
    (lambda d, m: d.broadcast_parameters(m, root=1), ValueError,
     r"root must be a rank in \[0, 0\]"),
    (lambda d, m: d.broadcast_parameters("model"), TypeError, "model must be a bpcore Model"),
    (lambda d, m: d.broadcast_optimizer_state(m), TypeError, "optimizer must be a bpcore"),
    (lambda d, m: d.shard(-1), ValueError, "n"),
    (lambda d, m: d.shard(2.5), TypeError, "n"),
    (lambda d, m: d.allreduce(["a"]), TypeError, "real numbers"),
    (lambda d, m: d.allreduce([1.0], op="prod"), ValueError, "op must be one of"),
    (lambda d, m: d.DistributedOptimizer(bp.SGD(m)).synchronize(weight=-1), ValueError,
     "weight"),
])
def test_bad_arguments_are_refused_and_change_nothing(dist, bad, error, match):
    net = _net()
    before = net.params.copy()
    with pytest.raises(error, match=match):
        bad(dist, net)
    np.testing.assert_array_equal(net.params, before)


def test_the_wrapper_does_not_pickle_or_copy(dist):
    wrapped = dist.DistributedOptimizer(bp.Adam(_net()))
    for attempt in (pickle.dumps, copy.deepcopy, copy.copy):
        with pytest.raises(TypeError, match="save or copy its .optimizer"):
            attempt(wrapped)
    assert type(copy.deepcopy(wrapped.optimizer)) is bp.Adam


@pytest.mark.parametrize("kwargs, match", [
    ({"accumulate": 2}, "accumulate must be 1 with a DistributedOptimizer"),
    ({"class_weight": "balanced"}, "class_weight='balanced'"),
])
def test_fit_refuses_what_it_cannot_distribute(dist, kwargs, match):
    net = _net()
    wrapped = dist.DistributedOptimizer(bp.Adam(net))
    before = net.params.copy()
    with pytest.raises(ValueError, match=match):
        net.fit(np.ones((8, 3)), np.arange(8) % 2, loss="cross_entropy", optimizer=wrapped,
                verbose=0, **kwargs)
    np.testing.assert_array_equal(net.params, before)
    assert wrapped.steps == 0 and not wrapped.state and net.classes is None
