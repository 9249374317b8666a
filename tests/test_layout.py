"""The package's layers import in one direction only (docs/design.md).

Every import in bpcore/ is read from the source, module-level and function-level
alike, and checked against the layer order: kernels, then the helpers, then nn,
optim (with distributed), checkpoint, train, the scikit-learn estimators and the
interop helpers (one layer), and cli; the scalar engine imports nothing of the rest.
"""
import ast
from pathlib import Path

import pytest

import bpcore

PACKAGE = Path(bpcore.__file__).resolve().parent

# The layer of each module (by its dotted name under bpcore, first match wins): a
# module may import modules of a lower layer, and of its own layer without a circle.
LAYERS = [
    ("kernels", ("_kernels", "_engine", "_dense", "_losses", "_flat")),
    ("helpers", ("_validation", "_aligned", "_typing", "_build_info", "threads", "inspection",
                 "datasets", "plotting")),
    ("nn", ("nn",)),
    ("optim", ("optim", "distributed")),
    ("checkpoint", ("checkpoint", "gradcheck")),
    ("train", ("train",)),
    ("estimators", ("sklearn", "interop")),
    ("cli", ("cli", "__main__")),
]
STANDALONE = "scalar"


def module_name(path):
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(name):
    head = name.split(".")[0]
    for rank, (_, members) in enumerate(LAYERS):
        if head in members:
            return rank
    return None


def imports_of(path, source=None):
    """The bpcore modules (dotted under bpcore; '' for bpcore itself) that the file at
    ``path`` (or ``source`` given as that file's text) imports anywhere in its body."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if name else []
                if not is_package:
                    base = base[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "bpcore" or node.module.startswith("bpcore.")):
                target = node.module[len("bpcore."):] if "." in node.module else ""
            else:
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}" if target else alias.name
                found.add(candidate if (PACKAGE / candidate.replace(".", "/")).exists()
                          or (PACKAGE / (candidate.replace(".", "/") + ".py")).exists()
                          or layer_of(candidate) == 0 else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("bpcore."):
                    found.add(alias.name[len("bpcore."):])
    return found


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def test_the_layer_table_covers_every_module():
    for name in MODULES:
        if name and not name.startswith(STANDALONE):
            assert layer_of(name) is not None, f"bpcore.{name} has no layer in LAYERS"


@pytest.mark.parametrize("name", [n for n in MODULES if n], ids=str)
def test_imports_point_down_the_layers(name):
    for target in imports_of(MODULES[name]):
        if target == "" and name == "cli":
            continue                               # --version reads bpcore.__version__
        assert target != "", f"bpcore.{name} imports the package root"
        if name.startswith(STANDALONE):
            assert target.startswith(STANDALONE), f"bpcore.{name} imports bpcore.{target}"
            continue
        assert not target.startswith(STANDALONE), f"bpcore.{name} imports bpcore.{target}"
        assert layer_of(target) <= layer_of(name), \
            f"bpcore.{name} ({LAYERS[layer_of(name)][0]}) imports bpcore.{target} " \
            f"({LAYERS[layer_of(target)][0]}), a layer above it"


def test_no_import_circle():
    graph = {name: {t for t in imports_of(path) if t in MODULES and t != name}
             for name, path in MODULES.items() if name}
    # a module of a package imports the package's __init__ only through a parent's
    # name; follow every edge and look for a way back
    for start in graph:
        seen, stack = set(), list(graph[start])
        while stack:
            node = stack.pop()
            assert node != start, f"bpcore.{start} imports itself through a circle"
            if node not in seen:
                seen.add(node)
                stack.extend(graph.get(node, ()))


def test_the_checker_sees_planted_upward_imports():
    # the checks must be able to fail: a function-level import of train planted in
    # nn/model.py, and of nn in the scalar engine, are both found
    model = PACKAGE / "nn" / "model.py"
    planted = model.read_text() + "\n\ndef _planted():\n    from ..train import fit\n"
    assert "train" not in imports_of(model)
    assert "train" in imports_of(model, planted)
    assert layer_of("train") > layer_of("nn.model")
    engine = PACKAGE / "scalar" / "engine.py"
    planted = engine.read_text() + "\nfrom bpcore.nn import layers\n"
    assert "nn.layers" in imports_of(engine, planted)
