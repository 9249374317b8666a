"""bpcore's fit loop beside scikit-learn's MLPClassifier, same tasks, same run.

    python benches/compare_sklearn.py [--seeds 5] [--threads 1]

Two tasks, each trained by both libraries with the same architecture, Adam (same
learning rate, betas, eps), the same batch size and number of epochs, reshuffled every
epoch, no L2 penalty (sklearn's alpha=0), float64:

  moons   1000 points (noise 0.2), 2-16-16-1 ReLU, logistic output (bpcore: bce on
          one logit), lr 0.01, 100 epochs of batch 32
  digits  scikit-learn's 1797 8x8 images scaled to [0, 1], 64-64-10 ReLU, softmax
          output (bpcore: cross_entropy), lr 0.001, 50 epochs of batch 32

scikit-learn runs every epoch: ``max_iter=epochs``, ``tol=0`` and
``n_iter_no_change`` above the epoch count (checked: ``n_iter_ == epochs``). Both
sides are split 75/25 (stratified) with the same seed and are scored on the held-out
quarter. Each cell is over ``--seeds`` seeds (0, 1, ...; weights and shuffling):
accuracy is the mean (min-max), epochs/second the median (and best) of the whole
``fit`` call (building the model included). BLAS is pinned to ``--threads`` threads for both
(bpcore calls SciPy's BLAS, scikit-learn NumPy's) when threadpoolctl is installed.
The weight initialisations differ (bpcore: He normal for ReLU; scikit-learn: Glorot
uniform), so accuracies agree only up to seed noise.
"""
import argparse
import os
import platform
import statistics
import time
import warnings

import numpy as np

import bpcore as bp
from bpcore.datasets import moons

try:
    import threadpoolctl
except ImportError:
    threadpoolctl = None


def moons_task():
    X, y = moons(1000, noise=0.2, seed=0)
    return dict(name="moons", X=X, y=y, hidden=(16, 16), lr=0.01, epochs=100, batch=32)


def digits_task():
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    return dict(name="digits", X=X / 16.0, y=y, hidden=(64,), lr=0.001, epochs=50, batch=32)


def fit_bpcore(task, X, y, seed, dtype):
    """(fitted predict function, seconds) for bpcore."""
    classes = int(y.max()) + 1
    sizes = [X.shape[1], *task["hidden"], 1 if classes == 2 else classes]
    started = time.perf_counter()
    layers = [bp.Dense(i, o, "relu") for i, o in zip(sizes[:-2], sizes[1:-1])]
    model = bp.Model(layers + [bp.Dense(sizes[-2], sizes[-1])], dtype=dtype, seed=seed)
    if classes == 2:
        loss, target = "bce", y.astype(np.float64).reshape(-1, 1)
    else:
        loss, target = "cross_entropy", y
    history = model.fit(X, target, loss=loss, optimizer=bp.Adam(model, lr=task["lr"]),
                        epochs=task["epochs"], batch_size=task["batch"], seed=seed,
                        verbose=0)
    seconds = time.perf_counter() - started
    assert len(history["loss"]) == task["epochs"]

    def predict(X_test):
        output = model.predict(X_test)
        return (output[:, 0] > 0).astype(int) if classes == 2 else output.argmax(axis=1)
    return predict, seconds


def fit_sklearn(task, X, y, seed):
    """(fitted predict function, seconds) for scikit-learn's MLPClassifier."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    epochs = task["epochs"]
    started = time.perf_counter()
    model = MLPClassifier(hidden_layer_sizes=task["hidden"], activation="relu",
                          solver="adam", alpha=0.0, batch_size=task["batch"],
                          learning_rate_init=task["lr"], max_iter=epochs, shuffle=True,
                          random_state=seed, tol=0.0, n_iter_no_change=epochs + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)   # max_iter reached: wanted
        model.fit(X, y)
    seconds = time.perf_counter() - started
    assert model.n_iter_ == epochs, f"scikit-learn stopped after {model.n_iter_} epochs"
    return model.predict, seconds


def measure(task, seeds):
    """Rows ``(library, accuracies, seconds)`` for one task."""
    from sklearn.model_selection import train_test_split
    X_train, X_test, y_train, y_test = train_test_split(
        task["X"], task["y"], test_size=0.25, stratify=task["y"], random_state=0)
    runs = {"bpcore float64": lambda s: fit_bpcore(task, X_train, y_train, s, np.float64),
            "bpcore float32": lambda s: fit_bpcore(task, X_train, y_train, s, np.float32),
            "scikit-learn MLPClassifier": lambda s: fit_sklearn(task, X_train, y_train, s)}
    rows = []
    for library, run in runs.items():
        accuracies, seconds = [], []
        for seed in range(seeds):
            predict, elapsed = run(seed)
            accuracies.append(float(np.mean(predict(X_test) == y_test)))
            seconds.append(elapsed)
        rows.append((library, accuracies, seconds))
    return rows, len(X_train), len(X_test)


def blas_lines():
    if threadpoolctl is None:
        return ["BLAS: threadpoolctl not installed, threads not pinned"]
    return [f"BLAS: {i.get('internal_api')} {i.get('version')} kernel={i.get('architecture')} "
            f"threads={i.get('num_threads')} ({os.path.basename(i.get('filepath', ''))})"
            for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int,
                        default=int(os.environ.get("BPCORE_BENCH_THREADS", "1")))
    args = parser.parse_args()
    try:
        import sklearn
    except ImportError:
        print("scikit-learn is not installed: pip install scikit-learn (nothing measured)")
        return
    limits = None
    if threadpoolctl is not None:
        limits = threadpoolctl.threadpool_limits(limits=args.threads, user_api="blas")
    print(f"bpcore {bp.__version__}, scikit-learn {sklearn.__version__}, numpy "
          f"{np.__version__}, Python {platform.python_version()}, {platform.machine()}")
    for line in blas_lines():
        print(line)
    print()
    print("| task | network | epochs x batch | library | held-out accuracy | epochs/s median "
          "(best) |")
    print("|---|---|---|---|---|---|")
    for make in (moons_task, digits_task):
        task = make()
        rows, n_train, n_test = measure(task, args.seeds)
        classes = int(task["y"].max()) + 1
        net = "-".join(map(str, [task["X"].shape[1], *task["hidden"],
                                 1 if classes == 2 else classes]))
        where = f"{task['name']} ({n_train} train / {n_test} test)"
        for library, accuracies, seconds in rows:
            mean = statistics.mean(accuracies)
            spread = f"{min(accuracies):.3f}-{max(accuracies):.3f}"
            rate = task["epochs"] / statistics.median(seconds)
            best = task["epochs"] / min(seconds)
            print(f"| {where} | {net} relu | {task['epochs']} x {task['batch']} | {library} "
                  f"| {mean:.3f} ({spread}) | {rate:,.0f} ({best:,.0f}) |")
    print(f"\nover seeds 0..{args.seeds - 1}: mean (min-max) accuracy, median (best) epochs/s")
    if limits is not None:
        limits.restore_original_limits()


if __name__ == "__main__":
    main()
