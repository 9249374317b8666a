"""Backprop you can see: the chain-rule terms of one neuron, and a DOT picture of a model.

``explain`` follows the tutorial's three scenes for a unit j of a layer:
dL/da_j is gathered from the units it feeds (or comes from the loss for an output
unit), the cached local derivative turns it into delta_j = dL/dz_j, and each
parameter's gradient is delta_j times that parameter's local factor
(x_i for w_ij, 1 for b_j, g_j for the scale c_j of a scaled unit).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ._typing import Dense, FloatArray, Model


def _layer_index(model: Model, layer: object) -> int:
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if not -len(model.layers) <= layer < len(model.layers):
            raise ValueError(f"layer must index one of the model's {len(model.layers)} "
                             f"layers; got {layer}")
        return int(layer) % len(model.layers)
    if layer in model.layers:
        return model.layers.index(layer)
    raise TypeError(f"layer must be a layer index or a Dense of this model; got {layer!r}")


def _present(view: FloatArray | None) -> FloatArray:
    """A per-node view of the last step, there once a forward and a backward ran."""
    if view is None:
        raise ValueError("explain needs a forward and a backward first (e.g. loss_and_grad)")
    return view


def explain(model: Model, layer: int | Dense, unit: int, sample: int = 0) -> str:
    """Return (and print) the chain-rule terms of ``unit`` in ``layer`` for ``sample``
    of the last forward/backward, with their numbers."""
    i = _layer_index(model, layer)
    dense = model.layers[i]
    if isinstance(unit, bool) or not isinstance(unit, (int, np.integer)) \
            or not 0 <= unit < dense.n_out:
        raise ValueError(f"unit must be in [0, {dense.n_out - 1}] for layers[{i}]; got {unit!r}")
    if dense.a is None or dense.delta is None:
        raise ValueError("explain needs a forward and a backward first (e.g. loss_and_grad)")
    n = dense.a.shape[0]
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or not 0 <= sample < n:
        raise ValueError(f"sample must be in [0, {n - 1}]; got {sample!r}")
    x = _present(model._input if i == 0 else model.layers[i - 1].a)[sample]
    z, a = _present(dense.z)[sample, unit], dense.a[sample, unit]
    derivative = _present(dense.derivative)[sample, unit]
    grad_a, delta = _present(dense.grad_a)[sample, unit], dense.delta[sample, unit]
    f = {"identity": "z", "sigmoid": "sigmoid(z)", "tanh": "tanh(z)", "relu": "max(z, 0)",
         "leaky_relu": "z if z > 0 else slope*z", "scaled_sigmoid": "c*g, g = sigmoid(z)"}
    local = {"identity": "1", "sigmoid": "g*(1-g)", "tanh": "1-a^2", "relu": "[z > 0]",
             "leaky_relu": "1 if z > 0 else slope", "scaled_sigmoid": "c*g*(1-g)"}
    lines = [f"layers[{i}] unit {unit} ({dense.activation}), sample {sample} of {n}:",
             f"  z = sum_k w_k*x_k + b = {z:.6g}",
             f"  a = {f[dense.activation]} = {a:.6g}"]
    if dense.c is not None:         # a scaled unit
        g = 1.0 / (1.0 + np.exp(-z))
        lines.append(f"    g = {g:.6g}, c = {dense.c[unit]:.6g}")
    lines.append(f"  cached local derivative da/dz = {local[dense.activation]} = {derivative:.6g}")
    if i == len(model.layers) - 1:
        lines.append(f"  dL/da = {grad_a:.6g}   (from the loss: an output unit)")
    else:
        nxt = model.layers[i + 1]
        nxt_delta = _present(nxt.delta)
        terms = [(k, nxt_delta[sample, k], nxt.W[unit, k]) for k in range(nxt.n_out)]
        lines.append(f"  dL/da = sum over the {nxt.n_out} units of layers[{i + 1}] it feeds "
                     "of delta_k * w_jk:")
        lines += [f"    unit {k}: {d:.6g} * {w:.6g} = {d * w:.6g}" for k, d, w in terms]
        lines.append(f"    sum = {grad_a:.6g}")
    lines.append(f"  delta = dL/dz = dL/da * da/dz = {grad_a:.6g} * {derivative:.6g} = {delta:.6g}")
    lines.append("  this sample's share of the gradients (summed over samples in dW, db):")
    lines.append(f"    dL/db = delta = {delta:.6g}")
    for k in range(min(dense.n_in, 8)):
        lines.append(f"    dL/dw[{k}] = delta * x[{k}] = {delta:.6g} * {x[k]:.6g} = "
                     f"{delta * x[k]:.6g}")
    if dense.n_in > 8:
        lines.append(f"    ... ({dense.n_in - 8} more inputs)")
    if dense.has_scale:
        g = 1.0 / (1.0 + np.exp(-z))
        lines.append(f"    dL/dc = dL/da * g = {grad_a:.6g} * {g:.6g} = {grad_a * g:.6g}")
    lines.append(f"  accumulated over the batch: dL/db = {dense.db[unit]:.6g}"
                 + (f", dL/dc = {dense.dc[unit]:.6g}" if dense.dc is not None else ""))
    text = "\n".join(lines)
    print(text)
    return text


def to_dot(model: Model, values: bool = False) -> str:
    """Graphviz DOT text of the model: one node per layer (shape, activation,
    parameter count) and the input; with ``values`` the last step's mean |a| and
    mean |delta| per layer."""
    lines = ["digraph model {", "  rankdir=LR;", "  node [shape=record, fontsize=10];",
             f'  input [label="input | {model.n_in} features"];']
    previous = "input"
    for i, layer in enumerate(model.layers):
        parts = [f"layers[{i}]: Dense", f"{layer.n_in} x {layer.n_out}", layer.activation,
                 f"{sum(int(np.prod(s)) for _, s in layer.parameter_shapes())} params"]
        if layer.dropout:
            parts.append(f"dropout {layer.dropout:g}")
        if values and layer.a is not None:
            parts.append(f"mean abs a = {np.abs(layer.a).mean():.4g}")
            if layer.delta is not None:
                parts.append(f"mean abs delta = {np.abs(layer.delta).mean():.4g}")
        lines.append(f'  layer{i} [label="{" | ".join(parts)}"];')
        lines.append(f'  {previous} -> layer{i} [label="{layer.n_in}"];')
        previous = f"layer{i}"
    lines.append("}")
    return "\n".join(lines) + "\n"
