"""scikit-learn's digits (8x8 images, 10 classes, shipped with scikit-learn: no
download) with a 64-64-10 ReLU network, scored on a held-out quarter.

    python examples/digits.py [--epochs 30] [--plot digits.png]

Without scikit-learn installed, it says so and exits cleanly.
"""
import argparse
import sys

import numpy as np

import bpcore as bp


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--plot", metavar="PNG", help="draw the loss curves")
    args = parser.parse_args(argv)
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        print("this example needs scikit-learn for its digits data: "
              "pip install scikit-learn (skipped)")
        return 0

    X, y = load_digits(return_X_y=True)
    X = X / 16.0                                    # pixel intensities 0..16 -> [0, 1]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    model = bp.Model([bp.Dense(64, 64, "relu"), bp.Dense(64, 10)], seed=0)
    history = model.fit(X_train, y_train, loss="cross_entropy",
                        optimizer=bp.Adam(model, lr=1e-3), epochs=args.epochs,
                        batch_size=32, seed=0, validation_data=(X_test, y_test),
                        metrics=["accuracy"], verbose=0)
    predicted = model.predict(X_test).argmax(axis=1)
    print(f"{len(X_train)} training and {len(X_test)} test images, {args.epochs} epochs")
    print(f"held-out accuracy {np.mean(predicted == y_test):.4f}")
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (y_test, predicted), 1)
    print("confusion matrix (rows: true digit, columns: predicted)")
    for digit, row in enumerate(confusion):
        print(f"  {digit}: " + " ".join(f"{count:3d}" for count in row))

    if args.plot:
        try:
            from bpcore.plotting import save_training_plot
            save_training_plot(args.plot, history, title="64-64-10 relu on digits")
            print(f"wrote {args.plot}")
        except ImportError as error:
            print(f"no plot: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
