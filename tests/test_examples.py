"""The runnable examples run, in subprocesses, with few epochs (the full runs are for
people: two-moons reaches 100%, digits about 97% held out)."""
import importlib.util
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def run_example(name, *args, cwd):
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def test_two_moons_reproduces_micrograds_demo(tmp_path):
    out = run_example("two_moons.py", cwd=tmp_path)          # 100 full-batch steps: fast
    assert "final accuracy 100%" in out


def test_regression_sine(tmp_path):
    out = run_example("regression_sine.py", "--epochs", "5", cwd=tmp_path)
    assert "held-out: mse" in out and "r2" in out


def test_digits(tmp_path):
    out = run_example("digits.py", "--epochs", "5", cwd=tmp_path)
    if importlib.util.find_spec("sklearn") is None:
        assert "skipped" in out
    else:
        accuracy = float(out.split("held-out accuracy ")[1].split()[0])
        assert accuracy > 0.85


def test_examples_plot(tmp_path):
    pytest.importorskip("matplotlib")
    run_example("two_moons.py", "--epochs", "3", "--plot", "moons.png", cwd=tmp_path)
    run_example("regression_sine.py", "--epochs", "3", "--plot", "sine.png", cwd=tmp_path)
    for name in ("moons.png", "sine.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_distributed_moons_on_one_rank(tmp_path):
    """Without mpiexec the example is one rank (or says it needs mpi4py)."""
    out = run_example("distributed_moons.py", "--epochs", "5", cwd=tmp_path)
    if importlib.util.find_spec("mpi4py") is None:
        assert "skipped" in out
    else:
        assert "1 rank(s)" in out and "same weights on every rank: True" in out
        accuracy = float(out.split("loop: held-out accuracy ")[1].split(";")[0])
        assert accuracy > 0.8
