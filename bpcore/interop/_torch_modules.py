"""The torch classes of ``bpcore.interop.torch``.

This module imports torch at its top; ``bpcore.interop.torch`` imports it only inside
the functions that need it, so ``import bpcore`` never imports torch.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from ..nn.model import Model


class ScaledSigmoid(torch.nn.Module):
    """``scale * sigmoid(x)`` with a learnable ``scale`` per unit: bpcore's
    ``scaled_sigmoid`` activation as a torch module (torch has none).

    Parameters
    ----------
    num_features : int
        Number of units (the width of the ``Linear`` it follows).
    dtype : torch.dtype or None
        Of ``scale`` (torch's default dtype when None).

    ``scale`` has shape (num_features,) and starts at 1, as bpcore's ``c``.
    """

    def __init__(self, num_features: int, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.num_features = num_features
        self.scale = torch.nn.Parameter(torch.ones(num_features, dtype=dtype))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """``scale * sigmoid(input)``, the scale broadcast over the last dimension."""
        return self.scale * torch.sigmoid(input)

    def extra_repr(self) -> str:
        """The width, for ``repr``."""
        return f"{self.num_features}"


class _Pass:
    """What one forward of a ``BpcoreModule`` leaves for its backward."""

    def __init__(self, X: np.ndarray, kept: object, recomputable: bool) -> None:
        self.X = X                      # the (private) copy handed to model.forward
        # the input the model kept for its backward: a later forward replaces it
        self.kept = kept
        self.recomputable = recomputable


class _BpcoreFunction(torch.autograd.Function):
    """A bpcore model's forward and backward as a torch autograd function of
    ``(X, params)``; ``params`` must share memory with ``model.params``."""

    @staticmethod
    def forward(ctx: Any, X: torch.Tensor, params: torch.Tensor,
                owner: BpcoreModule) -> torch.Tensor:
        model = owner.model
        # a private copy: torch (gradcheck, say) may change X in place, and bpcore
        # keeps the array it is handed for backward
        X_np = np.array(X.detach().numpy(), dtype=model.dtype, order="C")
        output = model.forward(X_np)
        active_dropout = model.training and any(layer.dropout > 0 for layer in model.layers)
        ctx.owner = owner
        ctx.bp_pass = _Pass(X_np, model._input, recomputable=not active_dropout)
        # saved so that torch refuses a backward after X or params changed in place
        ctx.save_for_backward(X, params)
        return torch.from_numpy(np.array(output))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        _ = ctx.saved_tensors    # (torch checks that X and params were not changed)
        owner: BpcoreModule = ctx.owner
        model = owner.model
        bp_pass: _Pass = ctx.bp_pass
        if model._input is not bp_pass.kept:
            # another forward ran since this one and overwrote bpcore's caches
            if not bp_pass.recomputable:
                raise RuntimeError(
                    "bpcore: the model ran another forward before this output's backward, "
                    "and with dropout active the mask of this pass is gone; call backward "
                    "after each forward, or switch dropout off (module.eval())")
            model.forward(bp_pass.X)
            bp_pass.kept = model._input
        model.zero_grad()
        grad_input = model.backward(grad_output.detach().numpy())
        dX = torch.from_numpy(np.array(grad_input)) if ctx.needs_input_grad[0] else None
        dparams = torch.from_numpy(model.grads.copy()) if ctx.needs_input_grad[1] else None
        return dX, dparams, None


class BpcoreModule(torch.nn.Module):
    """A bpcore ``Model`` as a torch module: its forward and backward run bpcore's.

    Build it with ``bpcore.interop.torch.as_torch_function(model)``. The one parameter,
    ``params``, is a 1-D tensor sharing memory with ``model.params``: torch optimizers
    update the model in place, and its gradient is the gradient of the flat buffer
    (``model.grads``'s layout). ``train()``/``eval()`` set the model's mode too.
    Inputs must be CPU tensors of the model's dtype, of shape (n_samples, n_in).
    """

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model
        self.params = torch.nn.Parameter(torch.from_numpy(model.params))
        self.training = model.training

    def train(self, mode: bool = True) -> BpcoreModule:
        """Set training mode here and on the bpcore model (dropout on); return self."""
        super().train(mode)
        self.model.train(mode)
        return self

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """The model's output for ``input`` (n_samples, n_in), differentiable in both
        the input and ``params``."""
        model = self.model
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor; got {type(input).__name__}")
        expected = getattr(torch, model.dtype.name)
        if input.dtype != expected:
            raise TypeError(f"input must have the model's dtype {expected}; got {input.dtype}")
        if input.device.type != "cpu":
            raise ValueError(f"input must be on the CPU, where the model is; got a tensor "
                             f"on {input.device}")
        if input.dim() != 2 or input.shape[1] != model.n_in:
            raise ValueError(f"input must have shape (n_samples, {model.n_in}); got shape "
                             f"{tuple(input.shape)}")
        params = self.params
        if (params.dtype != expected or params.device.type != "cpu"
                or params.data_ptr() != model.params.ctypes.data
                or tuple(params.shape) != model.params.shape):
            raise RuntimeError("params no longer shares memory with model.params (was it "
                               "rebound or moved?); build a new module with "
                               "as_torch_function(model)")
        model.train(self.training)
        return _BpcoreFunction.apply(input, params, self)

    def extra_repr(self) -> str:
        """The bpcore model, for ``repr``."""
        return repr(self.model)
