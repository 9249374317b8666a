"""The type hints say what the code does: Literal names match the registries, the
Model conveniences have the signatures of the functions they delegate to, and mypy
flags a wrongly typed call (where mypy is installed)."""
import inspect
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import bpcore as bp
from bpcore.nn.layers import Activation
from bpcore.nn.losses import LOSSES, REDUCTIONS, LossName, Reduction
from bpcore.train import loop
from bpcore.train.metrics import METRICS, MetricName


@pytest.mark.parametrize("alias, registry", [(Activation, bp.ACTIVATIONS), (LossName, LOSSES),
                                             (MetricName, METRICS), (Reduction, REDUCTIONS)])
def test_literal_names_are_the_registries_keys(alias, registry):
    assert set(typing.get_args(alias)) == set(registry)


@pytest.mark.parametrize("name", ["fit", "partial_fit", "evaluate"])
def test_model_conveniences_have_the_signatures_they_delegate_to(name):
    method = inspect.signature(getattr(bp.Model, name))
    function = inspect.signature(getattr(loop, name))
    wanted = [p for p in function.parameters.values() if not p.name.startswith("_")]
    assert [(p.name, p.kind, p.default) for p in list(method.parameters.values())[1:]] == \
        [(p.name, p.kind, p.default) for p in wanted[1:]]


def test_mypy_flags_wrong_argument_types(tmp_path):
    pytest.importorskip("mypy")
    script = tmp_path / "user_script.py"
    script.write_text(
        "import numpy as np\n"
        "import bpcore as bp\n"
        "model = bp.Model([bp.Dense(2, 3, 'relu'), bp.Dense(3, 1)])\n"
        "X, y = np.zeros((4, 2)), np.zeros(4)\n"
        "model.fit(X, y, loss='mse', epochs=3)\n"            # fine
        "model.fit(X, y, loss='mse', epochs='three')\n"      # line 6: str for int
        "bp.Dense(2, 3, activation=3)\n")                    # line 7: int for a name
    # an editable install is found through an import hook mypy does not follow: point
    # it at the package's folder (an installed package it finds by itself)
    env = dict(os.environ)
    parent = Path(bp.__file__).resolve().parent.parent
    if parent.name not in ("site-packages", "dist-packages"):
        env["MYPYPATH"] = str(parent)
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental",
                             "--cache-dir", str(tmp_path / "cache"), str(script)],
                            capture_output=True, text=True, cwd=tmp_path, env=env)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in errors] == ["6", "7"], result.stdout
