"""Tutorial 001: the PyTorch-style training loop, on bpcore and on the scalar engine.

The tutorial fits Linear(1, 1) to x = [1, 2, 3, 4], y = 2x with SGD (lr 0.01), mean
squared error, and each epoch: forward, loss, zero_grad, backward, clip the gradient
norm at 1.0, step. Here the same loop runs twice from the same initial weights:

  - on bpcore's Cython core: Model([Dense(1, 1)]), MSELoss, SGD, clip_grad_norm;
  - on the scalar engine: MLP.from_model(model), scalar_nn.mse, a hand-written step.

Then the accumulation trap: backward() adds to .grad, so a loop that forgets
zero_grad() steps along the sum of all past gradients.

Run from the repository root:  python examples/tutorial_001_linear_loop.py
"""
import math

import numpy as np

import bpcore as bp
from bpcore.scalar import nn as scalar_nn

EPOCHS, LR, MAX_NORM = 100, 0.01, 1.0


def clip_grad_norm(parameters, max_norm):
    """PyTorch's rule on Values: scale all grads by max_norm / (norm + 1e-6) if < 1."""
    norm = math.sqrt(sum(p.grad * p.grad for p in parameters))
    coefficient = max_norm / (norm + 1e-6)
    if coefficient < 1:
        for p in parameters:
            p.grad *= coefficient
    return norm


def sgd_step(parameters, lr):
    for p in parameters:
        p.data -= lr * p.grad


def main():
    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    y = 2 * x

    model = bp.Model([bp.Dense(1, 1)], seed=0)
    optimizer = bp.SGD(model, lr=LR)
    criterion = bp.MSELoss()
    mlp = scalar_nn.MLP.from_model(model)             # the same initial w and b
    params = mlp.parameters()                         # [w, b], model.params' order
    print(f"initial w = {params[0].data:+.6f}, b = {params[1].data:+.6f}\n")
    print(" epoch   loss (Cython core)   loss (scalar engine)   grad norm before clipping")

    clipped = 0
    for epoch in range(1, EPOCHS + 1):
        # bpcore: the tutorial's loop line by line
        y_pred = model.forward(x)
        loss, grad_output = criterion(y_pred, y)
        optimizer.zero_grad()
        model.backward(grad_output)
        norm = bp.clip_grad_norm(model, max_norm=MAX_NORM)
        clipped += norm > MAX_NORM
        optimizer.step()

        # the scalar engine: the same loop on Values
        scalar_loss = scalar_nn.mse(mlp.forward(x.tolist()), y.tolist())
        mlp.zero_grad()
        scalar_loss.backward()
        clip_grad_norm(params, MAX_NORM)
        sgd_step(params, LR)

        if epoch in (1, 2, 3, 10, 25, 50, 100):
            print(f"  {epoch:4d}   {loss:18.12f}   {scalar_loss.data:20.12f}   {norm:12.6f}")

    w, b = model.layers[0].W[0, 0], model.layers[0].b[0]
    print(f"\nafter {EPOCHS} epochs, Cython core:   w = {w:.12f}, b = {b:+.12f}")
    print(f"after {EPOCHS} epochs, scalar engine: w = {params[0].data:.12f}, "
          f"b = {params[1].data:+.12f}")
    print(f"largest difference: {max(abs(w - params[0].data), abs(b - params[1].data)):.1e}")
    print(f"(y = 2x has w = 2, b = 0: clipping cut the step in {clipped} of {EPOCHS} epochs, "
          f"so the fit is still on its way)\n")

    print("The trap: backward() ADDS to .grad. One loss, backward called three times:")
    scalar_loss = scalar_nn.mse(mlp.forward(x.tolist()), y.tolist())
    mlp.zero_grad()
    model.forward(x)
    _, grad_output = criterion(model.last_output, y)
    model.zero_grad()
    for call in range(1, 4):
        scalar_loss.backward()
        model.backward(grad_output)
        print(f"  after backward #{call}: dloss/dw = {params[0].grad:+.6f} (scalar engine), "
              f"{model.layers[0].dW[0, 0]:+.6f} (Cython core)")
    print("  -> call mlp.zero_grad() / model.zero_grad() before every step's backward.")


if __name__ == "__main__":
    main()
