"""Regression: fit y = sin(x) + noise with a small tanh network, scored on held-out data.

    python examples/regression_sine.py [--epochs 300] [--plot sine.png]
"""
import argparse

import numpy as np

import bpcore as bp
from bpcore.datasets import sine


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--plot", metavar="PNG", help="draw the loss and the fitted curve")
    args = parser.parse_args(argv)

    X, y = sine(500, noise=0.1, seed=0)
    X_train, y_train, X_test, y_test = X[:400], y[:400], X[400:], y[400:]
    model = bp.Model([bp.Dense(1, 32, "tanh"), bp.Dense(32, 32, "tanh"), bp.Dense(32, 1)],
                     seed=0)
    history = model.fit(X_train, y_train, loss="mse", optimizer=bp.Adam(model, lr=0.01),
                        epochs=args.epochs, batch_size=32, seed=0,
                        validation_data=(X_test, y_test), metrics=["r2"], verbose=0)
    scores = model.evaluate(X_test, y_test, loss="mse", metrics=["mae", "r2"])
    print(f"held-out: mse {scores['loss']:.4f}  mae {scores['mae']:.4f}  "
          f"r2 {scores['r2']:.4f}  (noise variance {0.1 ** 2:.4f})")
    grid = np.linspace(-np.pi, np.pi, 9).reshape(-1, 1)
    for x, predicted in zip(grid[:, 0], model.predict(grid)[:, 0]):
        print(f"  x {x:+.3f}  model {predicted:+.3f}  sin(x) {np.sin(x):+.3f}")

    if args.plot:
        try:
            from bpcore.plotting import save_training_plot
            save_training_plot(args.plot, history, model, X_test, y_test, classifier=False,
                               title="1-32-32-1 tanh on sin(x) + noise")
            print(f"wrote {args.plot}")
        except ImportError as error:
            print(f"no plot: {error}")


if __name__ == "__main__":
    main()
