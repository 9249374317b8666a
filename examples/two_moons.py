"""Two-moons classification: micrograd's demo task, reproduced with bpcore.

micrograd's demo trains a 2-16-16-1 ReLU network on 100 two-moons points with a
max-margin (hinge) loss, an L2 penalty of 1e-4 and full-batch SGD whose learning
rate falls from 1.0 to 0.1 over 100 steps, and reaches 100% accuracy. The same
recipe here runs through bpcore's fit loop, with the hinge loss as a plain callable.

    python examples/two_moons.py [--epochs 100] [--plot moons.png]
"""
import argparse

import numpy as np

import bpcore as bp
from bpcore.datasets import moons
from bpcore.train.callbacks import LearningRateScheduler


def hinge(output, target):
    """Mean of max(0, 1 - y * score) for y in {-1, +1}; returns (value, dL/doutput)."""
    margins = 1.0 - target * output
    active = margins > 0
    value = float(np.where(active, margins, 0.0).mean())
    return value, np.where(active, -target, 0.0) / output.size


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--plot", metavar="PNG", help="draw the loss and decision boundary")
    args = parser.parse_args(argv)

    X, labels = moons(100, noise=0.1, seed=1)
    y = np.where(labels == 1, 1.0, -1.0).reshape(-1, 1)     # the hinge loss wants -1/+1
    model = bp.Model([bp.Dense(2, 16, "relu"), bp.Dense(16, 16, "relu"), bp.Dense(16, 1)],
                     seed=0)
    optimizer = bp.SGD(model, lr=1.0)
    schedule = LearningRateScheduler(lambda epoch: 1.0 - 0.9 * epoch / args.epochs)
    # micrograd's penalty 1e-4 * sum(p**2) covers biases too; l2 here is l2/2 * sum(W**2)
    history = model.fit(X, y, loss=hinge, optimizer=optimizer, epochs=args.epochs,
                        batch_size=len(X), seed=0, metrics=["accuracy"],
                        callbacks=[schedule], l2=2e-4, verbose=0)
    for epoch in range(0, args.epochs, max(1, args.epochs // 10)):
        print(f"step {epoch:3d}  loss {history['loss'][epoch]:.4f}  "
              f"accuracy {history['accuracy'][epoch]:.0%}")
    accuracy = float(np.mean((model.predict(X)[:, 0] > 0) == (labels == 1)))
    print(f"final accuracy {accuracy:.0%} after {args.epochs} full-batch steps "
          f"({model.n_params} parameters)")

    if args.plot:
        try:
            from bpcore.plotting import save_training_plot
            save_training_plot(args.plot, history, model, X, labels,
                               title="two moons, micrograd's recipe")
            print(f"wrote {args.plot}")
        except ImportError as error:
            print(f"no plot: {error}")


if __name__ == "__main__":
    main()
