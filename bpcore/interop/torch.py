"""bpcore and PyTorch: models both ways, torch-named state dicts, and a bpcore model
as a differentiable block inside a torch graph.

torch is optional: it is imported inside these functions, never when this module
(or ``bpcore``) is imported.

- ``from_torch(module)``: a ``Model`` from an ``nn.Sequential`` of ``Linear`` layers,
  activations and ``Dropout``;
- ``to_torch(model)``: the equivalent ``nn.Sequential``;
- ``state_dict(model)``, ``load_state_dict(model, sd, strict=True)``: the parameters
  under torch's names and layouts (``{index}.weight`` of shape (out, in), ...);
- ``as_torch_function(model)``: a ``torch.nn.Module`` running bpcore's forward and
  backward, whose parameter shares memory with ``model.params``.

The mapping, module by module (``Linear`` must have a bias):

=========================  =======================================================
torch                      bpcore
=========================  =======================================================
``Linear(n_in, n_out)``    ``Dense(n_in, n_out)``, ``W = weight.T``, ``b = bias``
``Sigmoid``, ``Tanh``,     the activation of the ``Dense`` before it
``ReLU``, ``LeakyReLU``
``ScaledSigmoid`` (below)  ``scaled_sigmoid``, ``c = scale``
``Dropout(p)``             ``dropout=p`` of the ``Dense`` before it (after its
                           activation): both are inverted dropout
``Identity``               nothing
=========================  =======================================================

``ScaledSigmoid`` is a small torch module of bpcore's (``scale * sigmoid(x)``, a
learnable ``scale`` per unit), since torch has none; ``scaled_sigmoid_module()``
returns the class.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .. import _validation
from ..nn.layers import Dense
from ..nn.model import Model

if TYPE_CHECKING:
    import torch as _torch

    from .._typing import Seed
    from ._torch_modules import BpcoreModule

__all__ = ["as_torch_function", "from_torch", "load_state_dict", "scaled_sigmoid_module",
           "state_dict", "to_torch"]

_DTYPES = ("float32", "float64")


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as error:
        raise ImportError("bpcore.interop.torch needs PyTorch: pip install torch") from error
    return torch


def scaled_sigmoid_module() -> type[_torch.nn.Module]:
    """The torch module class of bpcore's ``scaled_sigmoid`` activation:
    ``ScaledSigmoid(num_features)`` computes ``scale * sigmoid(x)`` with a learnable
    ``scale`` of shape (num_features,)."""
    _import_torch()
    from ._torch_modules import ScaledSigmoid
    return ScaledSigmoid


# ------------------------------------------------------------------ the mapping
def _activation_of(child: Any, nn: Any, scaled: type) -> tuple[str, float] | None:
    """(bpcore activation, negative_slope) for an activation module, else None."""
    if type(child) is nn.Sigmoid:
        return "sigmoid", 0.01
    if type(child) is nn.Tanh:
        return "tanh", 0.01
    if type(child) is nn.ReLU:
        return "relu", 0.01
    if type(child) is nn.LeakyReLU:
        return "leaky_relu", float(child.negative_slope)
    if type(child) is scaled:
        return "scaled_sigmoid", 0.01
    return None


class _Spec(NamedTuple):
    """One Dense layer read off a Sequential, and where its tensors came from."""

    linear: Any               # the Linear module
    linear_name: str          # its name in the Sequential ("0")
    activation: str
    negative_slope: float
    scale: Any                # the ScaledSigmoid module, or None
    dropout: float


def _read_sequential(module: Any) -> tuple[list[_Spec], Any]:
    """The layers of ``module`` and its parameters' torch dtype; raises on anything
    bpcore cannot express, naming the first module it cannot take."""
    torch = _import_torch()
    nn = torch.nn
    from ._torch_modules import ScaledSigmoid
    if not isinstance(module, nn.Sequential):
        raise TypeError("module must be a torch.nn.Sequential of Linear layers and "
                        f"activations; got {type(module).__name__}")
    specs: list[dict[str, Any]] = []
    # what the current layer has taken after its Linear: "linear", "activation", "dropout"
    stage = None
    for name, child in module.named_children():
        where = f"module[{name}] ({type(child).__name__})"
        if type(child) is nn.Identity:
            continue
        if type(child) is nn.Linear:
            if child.bias is None:
                raise ValueError(f"{where} has no bias; bpcore's Dense always has one "
                                 "(build the Linear with bias=True)")
            if specs and specs[-1]["linear"].out_features != child.in_features:
                raise ValueError(
                    f"{where} has in_features={child.in_features} but the Linear before it "
                    f"has out_features={specs[-1]['linear'].out_features}; consecutive "
                    "Linear layers must agree")
            specs.append({"linear": child, "linear_name": name, "activation": "identity",
                          "negative_slope": 0.01, "scale": None, "dropout": 0.0})
            stage = "linear"
            continue
        activation = _activation_of(child, nn, ScaledSigmoid)
        if activation is not None:
            if stage != "linear":
                raise ValueError(
                    f"{where} is not supported here: bpcore takes one activation right after "
                    "each Linear (then optionally Dropout)")
            kind, slope = activation
            if kind == "leaky_relu" and not slope >= 0:
                raise ValueError(f"{where} has negative_slope={slope}; bpcore's leaky_relu "
                                 "needs a slope >= 0")
            if kind == "scaled_sigmoid" and child.scale.shape != (specs[-1]["linear"]
                                                                  .out_features,):
                raise ValueError(
                    f"{where} has scale of shape {tuple(child.scale.shape)}; it must have "
                    f"the width of the Linear before it, "
                    f"({specs[-1]['linear'].out_features},)")
            specs[-1].update(activation=kind, negative_slope=slope,
                             scale=child if kind == "scaled_sigmoid" else None)
            stage = "activation"
            continue
        if type(child) is nn.Dropout:
            if stage not in ("linear", "activation"):
                raise ValueError(f"{where} is not supported here: bpcore takes Dropout only "
                                 "after a Linear or its activation, once per layer")
            if not 0 <= child.p < 1:
                raise ValueError(f"{where} has p={child.p}; bpcore's dropout needs 0 <= p < 1")
            specs[-1]["dropout"] = float(child.p)
            stage = "dropout"
            continue
        raise TypeError(f"{where} is not supported: bpcore.interop.torch maps Linear, "
                        "Sigmoid, Tanh, ReLU, LeakyReLU, ScaledSigmoid, Dropout and Identity")
    if not specs:
        raise ValueError("module must hold at least one Linear layer; got none")
    dtypes = {p.dtype for p in module.parameters()}
    if len(dtypes) != 1:
        raise TypeError(f"module's parameters must all have one dtype; got "
                        f"{sorted(str(d) for d in dtypes)}")
    dtype = dtypes.pop()
    if str(dtype).removeprefix("torch.") not in _DTYPES:
        raise TypeError(f"module's parameters must be torch.float32 or torch.float64; got "
                        f"{dtype}")
    return [_Spec(**spec) for spec in specs], dtype


def _numpy(tensor: Any) -> np.ndarray:
    """A numpy copy of a tensor (any device)."""
    return np.array(tensor.detach().cpu().numpy())


def from_torch(module: _torch.nn.Sequential, *, seed: Seed = None) -> Model:
    """Build a bpcore ``Model`` equal to a ``torch.nn.Sequential``.

    Parameters
    ----------
    module : torch.nn.Sequential
        ``Linear`` layers (with bias), each optionally followed by one activation
        (``Sigmoid``, ``Tanh``, ``ReLU``, ``LeakyReLU`` with a slope >= 0, or
        ``ScaledSigmoid``) and then optionally one ``Dropout``; ``Identity`` anywhere.
        All parameters float32 or float64 (the model's dtype), on any device.
    seed : int, numpy Generator or None
        Seeds the model's dropout masks.

    Returns
    -------
    Model
        Holding copies of the module's parameters (``W = weight.T``), in the module's
        training mode. Raises TypeError naming the first module bpcore has no layer
        for (``module[2] (Conv2d)``), ValueError for one in a place bpcore cannot take.
    """
    specs, dtype = _read_sequential(module)
    layers = [Dense(s.linear.in_features, s.linear.out_features, s.activation,  # type: ignore[arg-type]
                    negative_slope=s.negative_slope, dropout=s.dropout) for s in specs]
    model = Model(layers, dtype=str(dtype).removeprefix("torch."), seed=seed)
    for spec, layer in zip(specs, layers):
        layer.W[...] = _numpy(spec.linear.weight).T
        layer.b[...] = _numpy(spec.linear.bias)
        if layer.c is not None:
            layer.c[...] = _numpy(spec.scale.scale)
    model.train(bool(module.training))
    return model


def _torch_dtype(model: Model) -> Any:
    return getattr(_import_torch(), model.dtype.name)


def _check_model(model: object) -> Model:
    if not isinstance(model, Model):
        raise TypeError(f"model must be a bpcore Model; got {_validation.describe(model)}")
    return model


def to_torch(model: Model) -> _torch.nn.Sequential:
    """The ``torch.nn.Sequential`` equal to a bpcore ``Model``.

    Each ``Dense`` becomes a ``Linear`` (``weight = W.T``), then its activation's
    module (none for identity; ``ScaledSigmoid`` for scaled_sigmoid), then
    ``Dropout(p)`` when it has dropout. The tensors are copies in the model's dtype on
    the CPU, and the module is in the model's training mode. ``state_dict(model)``
    uses the names of this module.
    """
    model = _check_model(model)
    torch = _import_torch()
    nn = torch.nn
    from ._torch_modules import ScaledSigmoid
    dtype = _torch_dtype(model)
    children: list[Any] = []
    with torch.no_grad():
        for layer in model.layers:
            linear = nn.Linear(layer.n_in, layer.n_out, dtype=dtype)
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.W.T)))
            linear.bias.copy_(torch.from_numpy(layer.b))
            children.append(linear)
            if layer.activation == "sigmoid":
                children.append(nn.Sigmoid())
            elif layer.activation == "tanh":
                children.append(nn.Tanh())
            elif layer.activation == "relu":
                children.append(nn.ReLU())
            elif layer.activation == "leaky_relu":
                children.append(nn.LeakyReLU(layer.negative_slope))
            elif layer.activation == "scaled_sigmoid":
                scaled = ScaledSigmoid(layer.n_out, dtype=dtype)
                assert layer.c is not None
                scaled.scale.copy_(torch.from_numpy(layer.c))
                children.append(scaled)
            if layer.dropout > 0:
                children.append(nn.Dropout(layer.dropout))
    return nn.Sequential(*children).train(model.training)


# ------------------------------------------------------------------ state dicts
def _torch_names(model: Model) -> list[tuple[str, Any, str, bool]]:
    """(torch name, layer, bpcore attribute, transposed) per tensor, in the order of
    ``to_torch(model).state_dict()``."""
    return _layer_names(model.layers)


def _layer_names(layers: Sequence[Dense]) -> list[tuple[str, Any, str, bool]]:
    """``_torch_names`` of a model made of ``layers`` (which need not be bound yet)."""
    names: list[tuple[str, Any, str, bool]] = []
    index = 0
    for layer in layers:
        names.append((f"{index}.weight", layer, "W", True))
        names.append((f"{index}.bias", layer, "b", False))
        index += 1
        if layer.activation != "identity":
            if layer.has_scale:
                names.append((f"{index}.scale", layer, "c", False))
            index += 1
        if layer.dropout > 0:
            index += 1
    return names


def state_dict(model: Model) -> OrderedDict[str, _torch.Tensor]:
    """The model's parameters under torch's names and layouts: those of
    ``to_torch(model).state_dict()`` (``0.weight`` of shape (n_out, n_in), ``0.bias``,
    ``{i}.scale`` for scaled sigmoid units), in that order.

    As torch's, the tensors share memory with the parameters (``weight`` is a
    transposed view of ``W``): writes into them change the model; ``clone()`` them
    for a snapshot.
    """
    model = _check_model(model)
    torch = _import_torch()
    result: OrderedDict[str, Any] = OrderedDict()
    for name, layer, attr, transposed in _torch_names(model):
        array = getattr(layer, attr)
        result[name] = torch.from_numpy(array.T if transposed else array)
    return result


def load_state_dict(model: Model, state_dict: Mapping[str, Any], strict: bool = True) -> Any:
    """Copy a torch-named state dict into the model's parameters, as torch's
    ``Module.load_state_dict`` does for ``to_torch(model)``.

    Parameters
    ----------
    model : Model
    state_dict : mapping of str to tensor or array
        Names and shapes as ``state_dict(model)`` gives them (``weight`` is
        (n_out, n_in)); values are converted to the model's dtype and must be finite.
    strict : bool
        When True, a missing or unexpected key is an error; when False, the keys that
        match are loaded and the others reported.

    Returns
    -------
    torch's ``_IncompatibleKeys(missing_keys, unexpected_keys)``.

    Every check runs before anything is written: on error (ValueError: a key missing or
    unexpected under ``strict``, a shape that differs; TypeError: a value that is not
    a real tensor or array) the model is unchanged. Unlike torch, a shape mismatch is a
    ValueError, not a RuntimeError (messages follow torch's).
    """
    model = _check_model(model)
    torch = _import_torch()
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of names to tensors; got "
                        f"{_validation.describe(state_dict)}")
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be True or False; got {_validation.describe(strict)}")
    for key in state_dict:
        if not isinstance(key, str):
            raise TypeError(f"state_dict's keys must be str; got {_validation.describe(key)}")
    expected = _torch_names(model)
    known = {name for name, _, _, _ in expected}
    missing = [name for name, _, _, _ in expected if name not in state_dict]
    unexpected = [key for key in state_dict if key not in known]
    errors = []
    if strict and unexpected:
        errors.append("Unexpected key(s) in state_dict: "
                      + ", ".join(f'"{k}"' for k in unexpected) + ".")
    if strict and missing:
        errors.insert(0, "Missing key(s) in state_dict: "
                      + ", ".join(f'"{k}"' for k in missing) + ".")
    writes = []
    for name, layer, attr, transposed in expected:
        if name not in state_dict:
            continue
        value = state_dict[name]
        if isinstance(value, torch.Tensor):
            if value.is_complex() or value.dtype == torch.bool:
                raise TypeError(f"state_dict[{name!r}] must be a real tensor; got dtype "
                                f"{value.dtype}")
            array = _numpy(value)
        else:
            array = _validation.as_array(value, f"state_dict[{name!r}]")
            if array.dtype.kind not in "fiu":
                raise TypeError(f"state_dict[{name!r}] must be a real tensor or array; got "
                                f"{_validation.describe(value)}")
        target = getattr(layer, attr)
        shape = target.T.shape if transposed else target.shape
        if array.shape != shape:
            errors.append(f"size mismatch for {name}: copying a param with shape "
                          f"{tuple(array.shape)} from checkpoint, the shape in current model "
                          f"is {shape}.")
            continue
        array = array.astype(model.dtype)
        _validation.check_finite(array, f"state_dict[{name!r}]")
        writes.append((target, array.T if transposed else array))
    if errors:
        raise ValueError("Error(s) in loading state_dict for bpcore Model:\n\t"
                         + "\n\t".join(errors))
    for target, array in writes:
        target[...] = array
    from torch.nn.modules.module import _IncompatibleKeys
    return _IncompatibleKeys(missing, unexpected)


# ------------------------------------------------------------- inside a graph
def as_torch_function(model: Model) -> BpcoreModule:
    """A ``torch.nn.Module`` whose forward and backward are the model's own.

    ``module(X)`` runs ``model.forward`` on a CPU tensor X of the model's dtype and
    shape (n_samples, n_in); its backward runs ``model.backward`` and hands torch
    dL/dX and the gradient of ``module.params``, a 1-D ``torch.nn.Parameter``
    sharing memory with ``model.params``. So the block can sit inside a larger torch
    model, and a torch optimizer over ``module.parameters()`` trains the bpcore model
    in place. Each backward zeroes ``model.grads`` and leaves that call's gradient
    there. If another forward ran in between, backward runs this input's forward
    again (with dropout active it cannot, and raises RuntimeError). The module's
    ``train()``/``eval()`` set the model's mode too. Double backward is not supported.
    """
    model = _check_model(model)
    _import_torch()
    from ._torch_modules import BpcoreModule
    return BpcoreModule(model)
