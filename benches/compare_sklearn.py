"""bpcore.sklearn's MLPClassifier/MLPRegressor beside scikit-learn's, same parameters, same run.

    python benches/compare_sklearn.py [--seeds 5] [--threads 1] [--quick]

``bpcore.sklearn.MLPClassifier``/``MLPRegressor`` are drop-in replacements for
``sklearn.neural_network``'s: the same ``random_state`` draws the same initial weights,
the same shuffles and batches, and the same update rules, so with equal parameters
both libraries train the same network to the same weights (to rounding), and stop at
the same epoch. This script fits both with identical parameters, scikit-learn's
defaults otherwise (alpha=1e-4, batch_size="auto" = min(200, n), tol=1e-4,
n_iter_no_change=10; early stopping by ``tol`` happens as it does in each library),
float64:

  moons     1000 points (noise 0.2), hidden (16, 16), classifier; adam and lbfgs,
            relu and tanh
  digits    scikit-learn's 1797 8x8 images scaled to [0, 1] (X / 16), hidden (64,),
            classifier; adam and lbfgs, relu and tanh
  diabetes  scikit-learn's 442 patients, X and y standardised with the training
            split's mean and standard deviation, hidden (32,), regressor; adam and
            lbfgs, relu

``max_iter`` is 200 (moons), 100 (digits) and 500 (diabetes) epochs for adam and 200
iterations for lbfgs. The classification tasks are split 75/25 stratified, diabetes
75/25 plainly, both with ``random_state=0``, and every fit is scored on the held-out
quarter (accuracy, or R^2). Each row is over ``--seeds`` seeds (``random_state`` 0,
1, ...), the two libraries alternating seed by seed: score mean (min-max), mean
``n_iter_``, the largest difference between the two libraries' fitted weights, and
the time of the whole ``fit`` call (validation and model building included) as median
(best) in ms, with scikit-learn's median over bpcore's. The digits adam relu row also
times bpcore with ``dtype="float32"`` (its own trajectory, so its own epoch count).

``solver="lbfgs"`` needs ``bpcore.optim.minimize``; where bpcore does not have it, the
bpcore side of the lbfgs rows reads "not available". ``--quick`` (the smoke test's)
runs one seed with every ``max_iter`` divided by 10. BLAS and OpenMP are pinned to
``--threads`` threads for both (bpcore calls SciPy's BLAS, scikit-learn NumPy's) when
threadpoolctl is installed.
"""
import argparse
import gc
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):              # run as a script: this checkout's bpcore first
    sys.path.insert(0, str(HERE.parent))

import bpcore as bp  # noqa: E402
from bpcore.datasets import moons  # noqa: E402

try:
    import threadpoolctl
except ImportError:
    threadpoolctl = None

#: (solver, activation) of every row of a classification task, and of the regression's
CLASSIFIER_ROWS = [("adam", "relu"), ("adam", "tanh"), ("lbfgs", "relu"), ("lbfgs", "tanh")]
REGRESSOR_ROWS = [("adam", "relu"), ("lbfgs", "relu")]
LBFGS_MAX_ITER = 200
#: the one row that also times bpcore in float32
FLOAT32_ROW = ("digits", "adam", "relu")


def _split(X, y, stratify):
    from sklearn.model_selection import train_test_split
    return train_test_split(X, y, test_size=0.25, random_state=0,
                            stratify=y if stratify else None)


def moons_task():
    X, y = moons(1000, noise=0.2, seed=0)
    return dict(name="moons", kind="classifier", data=_split(X, y, True), hidden=(16, 16),
                adam_max_iter=200, rows=CLASSIFIER_ROWS)


def digits_task():
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    return dict(name="digits", kind="classifier", data=_split(X / 16.0, y, True),
                hidden=(64,), adam_max_iter=100, rows=CLASSIFIER_ROWS)


def diabetes_task():
    from sklearn.datasets import load_diabetes
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = _split(X, y, False)
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    y_mean, y_std = y_train.mean(), y_train.std()
    data = ((X_train - mean) / std, (X_test - mean) / std,
            (y_train - y_mean) / y_std, (y_test - y_mean) / y_std)
    return dict(name="diabetes", kind="regressor", data=data, hidden=(32,),
                adam_max_iter=500, rows=REGRESSOR_ROWS)


def estimators(kind):
    """(bpcore's class, scikit-learn's class) for "classifier" or "regressor"."""
    import sklearn.neural_network as sk

    import bpcore.sklearn as bps
    if kind == "classifier":
        return bps.MLPClassifier, sk.MLPClassifier
    return bps.MLPRegressor, sk.MLPRegressor


def timed_fit(estimator, X, y):
    """Seconds of ``estimator.fit(X, y)`` (garbage collector off; scikit-learn's
    "max_iter reached" warnings, which both libraries raise alike, silenced)."""
    from sklearn.exceptions import ConvergenceWarning
    gc.collect()
    gc.disable()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            started = time.perf_counter()
            estimator.fit(X, y)
            return time.perf_counter() - started
    finally:
        gc.enable()


def weight_difference(ours, theirs):
    """The largest absolute difference between two fitted networks' weights and biases."""
    pairs = list(zip(ours.coefs_, theirs.coefs_)) + list(zip(ours.intercepts_,
                                                               theirs.intercepts_))
    return max(float(np.max(np.abs(np.asarray(a, dtype=np.float64) - b))) for a, b in pairs)


def measure(task, solver, activation, seeds, scale):
    """One row: ``{library: {"score": [...], "seconds": [...], "n_iter": [...]}`` plus
    ``"weights"`` (largest weight difference per seed); a bpcore side that raised
    ImportError is ``{"missing": message}``."""
    ours_class, theirs_class = estimators(task["kind"])
    X_train, X_test, y_train, y_test = task["data"]
    max_iter = task["adam_max_iter"] if solver == "adam" else LBFGS_MAX_ITER
    params = dict(hidden_layer_sizes=task["hidden"], activation=activation, solver=solver,
                  max_iter=max(1, max_iter // scale))
    runs = {"bpcore": lambda seed: ours_class(**params, random_state=seed),
            "scikit-learn": lambda seed: theirs_class(**params, random_state=seed)}
    if (task["name"], solver, activation) == FLOAT32_ROW:
        runs["bpcore float32"] = lambda seed: ours_class(**params, random_state=seed,
                                                         dtype="float32")
    results = {library: dict(score=[], seconds=[], n_iter=[]) for library in runs}
    results["weights"] = []
    for seed in range(seeds):
        fitted = {}
        order = list(runs) if seed % 2 == 0 else list(reversed(runs))
        for library in order:
            if "missing" in results[library]:
                continue
            estimator = runs[library](seed)
            try:
                seconds = timed_fit(estimator, X_train, y_train)
            except ImportError as error:       # lbfgs before bpcore.optim.minimize
                results[library] = {"missing": f"bpcore {solver}: {error}"}
                continue
            fitted[library] = estimator
            results[library]["score"].append(float(estimator.score(X_test, y_test)))
            results[library]["seconds"].append(seconds)
            results[library]["n_iter"].append(estimator.n_iter_)
        if "bpcore" in fitted:
            results["weights"].append(weight_difference(fitted["bpcore"],
                                                        fitted["scikit-learn"]))
    return results, params["max_iter"]


def warm_up(tasks):
    """One untimed 2-iteration fit per estimator class and solver, so that no row pays
    for first-call imports and set-up."""
    for task in tasks:
        X, _, y, _ = task["data"]
        for estimator_class in estimators(task["kind"]):
            for solver in {solver for solver, _ in task["rows"]}:
                try:
                    timed_fit(estimator_class(hidden_layer_sizes=task["hidden"],
                                              solver=solver, max_iter=2, random_state=0),
                              X[:100], y[:100])
                except ImportError:
                    pass


# ------------------------------------------------------------------------ report
def score_cell(scores):
    """Mean (min-max) of the scores, three decimals."""
    return f"{statistics.mean(scores):.3f} ({min(scores):.3f}-{max(scores):.3f})"


def time_cell(seconds):
    """Median (best) in milliseconds."""
    return f"{1e3 * statistics.median(seconds):,.1f} ({1e3 * min(seconds):,.1f})"


def ratio_cell(theirs, ours):
    """scikit-learn's median time over bpcore's, e.g. ``3.2x``."""
    return f"{statistics.median(theirs) / statistics.median(ours):.1f}x"


def cpu_lines(cpuinfo):
    """The CPU's model name and which of avx512f/avx2 it has, from the text of Linux's
    /proc/cpuinfo (its first processor's entries)."""
    model, flags = None, None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and flags is None:
            flags = set(value.split())
    lines = [f"CPU: {model or 'model name not listed'}"]
    if flags is not None:
        have = [flag for flag in ("avx512f", "avx2") if flag in flags]
        lines.append("vector extensions: " + (", ".join(have) or "neither avx512f nor avx2"))
    return lines


def machine_lines():
    """CPU lines from /proc/cpuinfo on Linux, else what ``platform`` knows."""
    if platform.system() == "Linux":
        try:
            with open("/proc/cpuinfo") as f:
                lines = cpu_lines(f.read())
        except OSError:
            lines = [f"CPU: {platform.processor() or platform.machine()}"]
    else:
        lines = [f"CPU: {platform.processor() or platform.machine()}"]
    lines[0] += f", {os.cpu_count()} logical CPUs"
    return lines


def blas_lines():
    if threadpoolctl is None:
        return ["BLAS: threadpoolctl not installed, threads not pinned"]
    return [f"BLAS: {i.get('internal_api')} {i.get('version')} kernel={i.get('architecture')} "
            f"threads={i.get('num_threads')} ({os.path.basename(i.get('filepath', ''))})"
            for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]


def table_rows(task, solver, activation, results, max_iter):
    """The Markdown row of one measured (task, solver, activation)."""
    X_train, X_test, y_train, _ = task["data"]
    outputs = 1 if task["kind"] == "regressor" or len(np.unique(y_train)) == 2 else \
        len(np.unique(y_train))
    net = "-".join(map(str, [X_train.shape[1], *task["hidden"], outputs]))
    metric = "R²" if task["kind"] == "regressor" else "accuracy"
    where = f"{task['name']} ({len(X_train)} / {len(X_test)}), {metric}"
    ours, theirs = results["bpcore"], results["scikit-learn"]
    if "missing" in ours:
        n_iter = f"– / {statistics.mean(theirs['n_iter']):.1f}"
        our_score, our_time, ratio, weights = "not available", "–", "–", "–"
    else:
        n_iter = (f"{statistics.mean(ours['n_iter']):.1f} / "
                  f"{statistics.mean(theirs['n_iter']):.1f}")
        our_score, our_time = score_cell(ours["score"]), time_cell(ours["seconds"])
        ratio = ratio_cell(theirs["seconds"], ours["seconds"])
        weights = f"{max(results['weights']):.1e}"
    single = results.get("bpcore float32")
    if single is None:
        float32 = "–"
    elif "missing" in single:
        float32 = "not available"
    else:
        float32 = (f"{time_cell(single['seconds'])} ms, {score_cell(single['score'])}, "
                   f"{statistics.mean(single['n_iter']):.1f} it")
    return (f"| {where} | {net} | {solver} | {activation} | {max_iter} | {n_iter} "
            f"| {our_score} | {score_cell(theirs['score'])} | {weights} | {our_time} "
            f"| {time_cell(theirs['seconds'])} | {ratio} | {float32} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int,
                        default=int(os.environ.get("BPCORE_BENCH_THREADS", "1")))
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: one seed, every max_iter divided by 10")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1; got {args.seeds}")
    seeds, scale = (1, 10) if args.quick else (args.seeds, 1)
    try:
        import scipy
        import sklearn
        import sklearn.neural_network  # noqa: F401  (loads its OpenMP runtime, pinned too)

        import bpcore.sklearn  # noqa: F401
    except ImportError:
        print("scikit-learn is not installed: pip install scikit-learn (nothing measured)")
        return
    limits = None
    if threadpoolctl is not None:
        limits = threadpoolctl.threadpool_limits(limits=args.threads)   # BLAS and OpenMP
    print(f"bpcore {bp.__version__}, scikit-learn {sklearn.__version__}, numpy "
          f"{np.__version__}, scipy {scipy.__version__}, Python "
          f"{platform.python_version()}, {platform.machine()}")
    for line in machine_lines() + blas_lines():
        print(line)
    print(f"threads: {args.threads} per library; seeds: {seeds}"
          + (" (--quick: max_iter / 10)" if args.quick else ""))
    print()
    tasks = [moons_task(), digits_task(), diabetes_task()]
    warm_up(tasks)
    print("| task (train / test), score | network | solver | activation | max_iter "
          "| mean n_iter_ bpcore / scikit-learn | score bpcore | score scikit-learn "
          "| max abs weight difference | fit ms bpcore | fit ms scikit-learn "
          "| scikit-learn / bpcore | bpcore float32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    missing = set()
    for task in tasks:
        for solver, activation in task["rows"]:
            results, max_iter = measure(task, solver, activation, seeds, scale)
            missing.update(r["missing"] for r in results.values()
                           if isinstance(r, dict) and "missing" in r)
            print(table_rows(task, solver, activation, results, max_iter), flush=True)
    print(f"\nover seeds 0..{seeds - 1}: score mean (min-max); fit time median (best) "
          "in ms; scikit-learn / bpcore = ratio of the median times; weight difference: "
          "largest over seeds, float64")
    for message in sorted(missing):
        print(f"not available: {message}")
    if limits is not None:
        limits.restore_original_limits()


if __name__ == "__main__":
    main()
