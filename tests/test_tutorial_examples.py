"""The tutorial walk-throughs in examples/ run and print their key results."""
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(name):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / name)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def numbers_after(label, text):
    return [float(m) for m in re.findall(re.escape(label) + r"\s*([-+0-9.e]+)", text)]


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_tutorial_000_node_walkthrough():
    out = run("tutorial_000_node_walkthrough.py")
    g = sigmoid(16)                       # node 7 with the tutorial's numbers: h = 4 + 5 + 6 + 1
    assert f"dloss/db7    = -6 * c g (1 - g)     = {-6 * g * (1 - g):.6e}" in out
    gathered = re.search(r"sum = (\S+)\s+the engine's dloss/dx2 = (\S+)", out)
    assert gathered.group(1) == gathered.group(2)
    assert max(numbers_after("and the engine's:", out)) < 1e-12


def test_tutorial_001_linear_loop():
    out = run("tutorial_001_linear_loop.py")
    assert numbers_after("largest difference:", out) == [0.0]
    # the trap: three backward calls without zero_grad give three times the gradient
    calls = re.findall(r"dloss/dw = (\S+) \(scalar engine\), (\S+) \(Cython core\)", out)
    (first, core_first), (second, core_second), (third, core_third) = calls
    assert (first, second, third) == (core_first, core_second, core_third)
    assert float(second) == pytest.approx(2 * float(first), rel=1e-6)
    assert float(third) == pytest.approx(3 * float(first), rel=1e-6)


def test_tutorial_001_moons_scalar_vs_core():
    out = run("tutorial_001_moons_scalar_vs_core.py")
    rows = re.findall(r"^\s+\d+\s+(\S+)\s+(\S+)\s+(\S+)\s+\S+\s+\S+$", out, re.MULTILINE)
    assert len(rows) == 5
    for core_loss, scalar_loss, gradient_gap in rows:
        assert float(scalar_loss) == pytest.approx(float(core_loss), rel=1e-12)
        assert float(gradient_gap) < 1e-12
    assert "training accuracy 100%" in out


def test_tutorial_002_apples():
    out = run("tutorial_002_apples.py")
    assert numbers_after("dOrange:", out) == [3.3000000000000003] * 3
    assert numbers_after("dTax:", out) == [200.0, 650.0, 650.0, 650.0]
    assert "digraph" in out


def test_tutorial_003_chain_rule():
    out = run("tutorial_003_chain_rule.py")
    assert "by engine: f = -2, df/dx = 1, df/dy = 2, df/dz = -1" in out
    assert max(numbers_after("largest difference from the engine", out)) < 1e-12
