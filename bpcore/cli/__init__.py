"""The command line: ``bpcore train | evaluate | predict`` (also ``python -m bpcore``).

train     builds a network from ``--layers``/``--activation``, fits it on a CSV or NPZ
          file, or on a generated data set (two-moons by default), prints the final
          metrics and saves a checkpoint; ``--plot`` draws the loss curves (and, for
          2-D inputs, the decision boundary).
evaluate  prints the loss and metrics of a saved model on data with targets.
predict   writes a saved model's outputs, and class labels for a classifier (the
          rates exp(output) for a Poisson regression), as CSV (to stdout by default),
          NPY or NPZ.

The task travels with the model: ``train`` stores it (classification or regression,
the loss, the class labels, the target columns) in the checkpoint's ``progress``
under ``"task"``, so ``evaluate`` and ``predict`` need only the model file. Reading
the data and deciding the task live in ``bpcore.cli.data``.

User mistakes (bad arguments, unreadable files, data that does not fit the model)
end in one line on stderr and exit status 2, never a traceback; a run whose loss
diverges ends with status 1.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

import numpy as np
import numpy.typing as npt

from .. import __version__
from ..checkpoint import CheckpointError, load_checkpoint, save
from ..datasets import DATASETS
from ..nn import ACTIVATIONS, LOSSES, Dense, Model
from ..optim import SGD, Adam, Optimizer
from ..train import Callback, EarlyStopping, LambdaCallback, TrainingDiverged
from ..train.loop import split_indices
from .data import (
    MAX_AUTO_CLASSES,
    REGRESSION_LOSSES,
    TASKS,
    Data,
    Task,
    UsageError,
    choose_task,
    load_data,
    short_list,
)

# the optimizers the command line offers (their options: --lr, and --momentum for SGD)
OPTIMIZERS = {"adam": Adam, "sgd": SGD}
DEFAULT_HIDDEN = (16, 16)
#: seconds a failing rank of a distributed run waits between flushing its output and
#: aborting the MPI job (_abort_the_job)
ABORT_GRACE = 0.5

#: how a command reports progress: ``log(message, stream=None)`` (stdout by default)
Log = Callable[..., None]


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')", self.prog)


def _layer_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"must be at least two comma-separated positive integers such as 2,16,16,1; "
            f"got {text!r}")
    return sizes


def _integer_from(low: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer >= low, else the error says ``what`` was expected."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}")
        return value
    return parse


_positive_int = _integer_from(1, "a positive integer")
_seed = _integer_from(0, "a non-negative integer")


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0; got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1); got {text!r}")
    return value


def _columns(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data (--data FILE, or a generated --dataset)")
    group.add_argument("--data", metavar="FILE",
                       help="a CSV file (numbers; a header row is optional; the target is "
                            "the last column unless --target-columns says otherwise) or an "
                            "NPZ file with the arrays X and y")
    group.add_argument("--dataset", choices=sorted(DATASETS),
                       help="a generated data set when no --data is given (default: moons)")
    group.add_argument("--target-columns", type=_columns, metavar="COLS",
                       help="CSV target columns: names or indices, comma-separated "
                            "(default: the last column, or the one the model was trained on)")
    group.add_argument("--delimiter", help="CSV field separator (default ',' and tab for .tsv)")
    group.add_argument("--n-samples", type=_positive_int, metavar="N",
                       help="samples of the generated data set")
    group.add_argument("--noise", type=_non_negative_float,
                       help="noise of the generated data set")
    group.add_argument("--data-seed", type=_seed, default=0, metavar="SEED",
                       help="seed of the generated data set (default 0)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the three commands."""
    parser = _Parser(prog="bpcore", description="Train dense networks with exact "
                     "backpropagation; evaluate and apply the saved models.")
    parser.add_argument("--version", action="version", version=f"bpcore {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=_Parser)

    train = commands.add_parser(
        "train", help="train a network and save it",
        description="Train a network on a CSV/NPZ file or a generated data set, print the "
                    "final metrics and save the model.")
    _add_data_arguments(train)
    net = train.add_argument_group("network and training")
    net.add_argument("--layers", type=_layer_sizes, metavar="SIZES",
                     help="layer sizes from inputs to outputs, e.g. 2,16,16,1 (default: "
                          "the data's features, 16, 16, and the outputs the task needs)")
    net.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu",
                     help="activation of the hidden layers (default relu); the output "
                          "layer is identity (logits for classifiers)")
    net.add_argument("--task", choices=TASKS, default="auto",
                     help="auto (default) decides from --loss, the data set or the target: "
                          f"one integer column with at most {MAX_AUTO_CLASSES} values is "
                          "class labels")
    net.add_argument("--loss", choices=sorted(LOSSES),
                     help="default: bce for two classes and one output, cross_entropy for "
                          "one output per class, mse for regression (poisson: a regression "
                          "of counts, the output being the log of the rate)")
    net.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam")
    net.add_argument("--lr", type=_non_negative_float, default=0.01,
                     help="learning rate (default 0.01)")
    net.add_argument("--momentum", type=_fraction, default=0.0, help="SGD momentum")
    net.add_argument("--l2", type=_non_negative_float, default=0.0,
                     help="L2 penalty l2/2 * sum(W**2) on the weights")
    net.add_argument("--epochs", type=_positive_int, default=100)
    net.add_argument("--batch-size", type=_positive_int, default=32)
    net.add_argument("--seed", type=_seed, default=0,
                     help="seeds the weights, the shuffling and the validation split")
    net.add_argument("--validation-split", type=_fraction, default=0.2, metavar="FRACTION",
                     help="fraction of the samples, drawn at random (stratified by class "
                          "for a classifier), held out for validation (default 0.2; 0 for "
                          "none)")
    net.add_argument("--patience", type=_positive_int,
                     help="stop when the validation loss has not improved for this many "
                          "epochs, keeping the best weights")
    net.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    net.add_argument("--distributed", action="store_true",
                     help="data-parallel over MPI: run as 'mpiexec -n N bpcore train "
                          "--distributed ...'; each rank trains on its shard, rank 0 "
                          "prints and writes --out (needs the mpi extra: mpi4py)")
    output = train.add_argument_group("output")
    output.add_argument("--out", default="model.bpc", metavar="FILE",
                        help="where to save the model (default model.bpc)")
    output.add_argument("--plot", metavar="PNG",
                        help="write the loss curves (and the decision boundary for 2-D "
                             "inputs) to this PNG; needs matplotlib (pip install "
                             "'bpcore[plot]')")
    output.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="0 quiet; 1 (default) a progress bar on a terminal, else about "
                             "ten epoch lines; 2 a line per epoch")

    evaluate = commands.add_parser(
        "evaluate", help="print a saved model's loss and metrics on data",
        description="Print the loss and metrics of a saved model on data with targets.")
    evaluate.add_argument("model", help="a model file written by 'bpcore train'")
    _add_data_arguments(evaluate)
    evaluate.add_argument("--loss", choices=sorted(LOSSES),
                          help="needed only for a model saved without its task")
    evaluate.add_argument("--json", action="store_true", help="print the results as JSON")

    predict = commands.add_parser(
        "predict", help="write a saved model's predictions",
        description="Write the model's outputs (logits for classifiers, log-rates for a "
                    "Poisson regression), and each sample's class label for a "
                    "classifier or its rates for a Poisson regression.")
    predict.add_argument("model", help="a model file written by 'bpcore train'")
    _add_data_arguments(predict)
    predict.add_argument("--output", "-o", default="-", metavar="FILE",
                         help="a .csv (columns output_0.. and label, or rate_0.. for a "
                              "Poisson regression), .npy (the outputs) or .npz (arrays "
                              "outputs and labels, or rates) file; default: CSV on stdout")
    predict.add_argument("--probabilities", action="store_true",
                         help="write probabilities (softmax or sigmoid of the logits) "
                              "instead of logits for a classifier")
    return parser


def _split(X: npt.NDArray[Any], y: npt.NDArray[Any], fraction: float, seed: int,
           labels: npt.NDArray[Any] | None = None
           ) -> tuple[tuple[npt.NDArray[Any], npt.NDArray[Any]],
                      tuple[npt.NDArray[Any], npt.NDArray[Any]] | None]:
    """A random train/validation split (files are often sorted by class), stratified
    by ``labels`` (each row's class) when given, as ``fit(validation_split=...)``
    splits for a classifier."""
    if not fraction:
        return (X, y), None
    n_val = int(len(X) * fraction)
    if n_val < 1 or n_val >= len(X):
        raise UsageError(f"--validation-split {fraction} leaves {n_val} validation samples of "
                         f"{len(X)}; each side needs at least one")
    train, val = split_indices(len(X), n_val, seed, labels)
    return (X[train], y[train]), (X[val], y[val])


def _format(logs: dict[str, float]) -> str:
    return "  ".join(f"{name} {value:.4g}" for name, value in logs.items())


def _progress(args: argparse.Namespace, log: Log) -> tuple[int, list[Callback]]:
    """(fit verbose level, callbacks) for the progress the user asked for."""
    if args.verbose == 1 and not sys.stderr.isatty():
        every = max(1, args.epochs // 10)

        def report(epoch: int, logs: dict[str, float]) -> None:
            if (epoch + 1) % every == 0 or epoch + 1 == args.epochs:
                shown = {k: v for k, v in logs.items() if k != "lr"}
                log(f"epoch {epoch + 1}/{args.epochs}  {_format(shown)}", stream=sys.stderr)
        return 0, [LambdaCallback(on_epoch_end=report)]
    return args.verbose, []


def _silent(message: str, stream: TextIO | None = None) -> None:
    """The log of the ranks other than 0 of a distributed run."""


def _check_writable(path: str, option: str) -> None:
    """Fail before training rather than after it."""
    if os.path.isdir(path):
        raise UsageError(f"{option} {path!r} is a folder; give a file name")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {path!r}: the folder {folder!r} does not exist")


def _ranks(args: argparse.Namespace) -> Any:
    """bpcore.distributed for --distributed (UsageError without mpi4py), else None."""
    if not args.distributed:
        return None
    from .. import distributed
    try:
        distributed.size()
    except ImportError as error:
        raise UsageError(f"--distributed: {error}") from None
    return distributed


def _check_outputs(args: argparse.Namespace) -> None:
    _check_writable(args.out, "--out")
    if args.plot is not None:
        _check_writable(args.plot, "--plot")
        from ..plotting import require_matplotlib
        try:
            require_matplotlib()
        except ImportError as error:
            raise UsageError(f"--plot: {error}") from None


def run_train(args, log):
    dist = _ranks(args)
    root = dist is None or dist.rank() == 0
    if dist is None:
        _check_outputs(args)
    else:
        # rank 0 writes: it checks, and every rank stops on its refusal
        refusal = None
        if root:
            try:
                _check_outputs(args)
            except UsageError as error:
                refusal = str(error)
        refusal = dist.allgather(refusal)[0]
        if refusal is not None:
            raise UsageError(refusal)
        if not root:
            log = _silent
    data = load_data(args, need_target=True)
    X, y = data.X, data.y
    task, n_out, reason = choose_task(args, y, data.source)
    task.target_columns = data.target_columns
    sizes = args.layers or [X.shape[1], *DEFAULT_HIDDEN, n_out]
    if sizes[0] != X.shape[1]:
        raise UsageError(f"--layers starts with {sizes[0]} inputs but the data has "
                         f"{X.shape[1]} feature(s)")
    target = task.encode(y)
    classes = np.asarray(target).reshape(-1) if task.kind == "classification" else None
    (X_train, y_train), validation = _split(X, target, args.validation_split, args.seed,
                                            classes)

    layers = [Dense(n_in, width, args.activation) for n_in, width in zip(sizes, sizes[1:-1])]
    layers.append(Dense(sizes[-2], sizes[-1]))          # identity: logits or values
    model = Model(layers, dtype=np.dtype(args.dtype), seed=args.seed)
    optimizer: Optimizer
    if args.optimizer == "sgd":
        optimizer = SGD(model, lr=args.lr, momentum=args.momentum)
    else:
        if args.momentum:
            raise UsageError("--momentum applies to --optimizer sgd")
        optimizer = Adam(model, lr=args.lr)
    train_rows, validation_rows = (X_train, y_train), validation
    if dist is not None:
        # each rank its shard of the training and the validation rows (fit averages
        # the validation scores over the ranks)
        optimizer = dist.DistributedOptimizer(optimizer)
        part = dist.shard(len(X_train))
        train_rows = (X_train[part], y_train[part])
        if len(X_train) < dist.size():
            raise UsageError(f"--distributed: {len(X_train)} training samples for "
                             f"{dist.size()} ranks; each rank needs at least one")
        if validation is not None and len(validation[0]) >= dist.size():
            # (fewer rows than ranks: every rank scores them all, the same mean)
            part = dist.shard(len(validation[0]))
            validation_rows = (validation[0][part], validation[1][part])
    verbose, callbacks = _progress(args, log)
    if args.patience is not None:
        if validation is None:
            raise UsageError("--patience watches the validation loss; give a "
                             "--validation-split above 0")
        callbacks.append(EarlyStopping(patience=args.patience))

    shape = "-".join(map(str, sizes))
    n_val = 0 if validation is None else len(validation[0])
    log(f"data: {data.source}, {len(X)} samples of {X.shape[1]} feature(s); "
        f"{len(X_train)} to train, {n_val} to validate")
    what = (f"classification, {len(task.classes)} classes {short_list(task.classes)}"
            if task.kind == "classification" else "regression")
    log(f"task: {what} ({reason}); loss {task.loss}")
    log(f"model: {shape} {args.activation}, {model.n_params} parameters, {args.dtype}; "
        f"{args.optimizer} lr {args.lr:g}, {args.epochs} epochs of batch {args.batch_size}")
    if dist is not None:
        log(f"distributed: {dist.size()} ranks, each a shard of about "
            f"{len(train_rows[0])} samples and batch {args.batch_size}")
    started = time.perf_counter()
    history = model.fit(*train_rows, loss=task.loss, optimizer=optimizer,
                        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                        validation_data=validation_rows, metrics=task.metrics,
                        callbacks=callbacks, verbose=verbose, l2=args.l2)
    seconds = time.perf_counter() - started
    epochs = len(history.epoch)

    if not root:
        return 0        # every rank holds the same model: rank 0 reports and saves it
    final = model.evaluate(X_train, y_train, loss=task.loss, metrics=task.metrics)
    if validation is not None:
        scores = model.evaluate(*validation, loss=task.loss, metrics=task.metrics)
        final.update({"val_" + name: value for name, value in scores.items()})
    log(f"trained {epochs} epochs in {seconds:.2f} s ({epochs / max(seconds, 1e-9):,.0f} "
        "epochs/s)")
    print(f"final: {_format(final)}", flush=True)

    progress = {"epoch": epochs, "seed": args.seed,
                "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
                "task": task.to_json()}
    save(args.out, model, optimizer, progress=progress)
    print(f"saved {args.out}", flush=True)
    if args.plot is not None:
        from ..plotting import save_training_plot
        title = f"{shape} {args.activation} on {os.path.basename(data.source)}"
        save_training_plot(args.plot, history, model, X, _plot_labels(task, target),
                           classifier=task.kind == "classification", title=title)
        print(f"wrote {args.plot}", flush=True)
    return 0


def _plot_labels(task: Task, target: npt.NDArray[Any]) -> npt.NDArray[Any]:
    if task.kind == "classification":
        return np.asarray(target).reshape(-1).astype(np.int64)
    return target


def _load_model(path: str) -> tuple[Model, Task | None]:
    if not os.path.isfile(path):
        what = "is not a regular file" if os.path.exists(path) else "not found"
        raise UsageError(f"model file {path!r} {what}")
    checkpoint = load_checkpoint(path)
    return checkpoint.model, Task.from_progress(checkpoint.progress)


def run_evaluate(args, log):
    model, task = _load_model(args.model)
    if task is None:
        if args.loss is None:
            raise UsageError(f"{args.model} was saved without its task; pass --loss")
        kind = "regression" if args.loss in REGRESSION_LOSSES else "classification"
        task = Task(kind, args.loss, list(range(max(2, model.n_out))) if kind ==
                    "classification" else None)
    elif args.loss is not None and args.loss != task.loss:
        raise UsageError(f"{args.model} was trained with --loss {task.loss}; got --loss "
                         f"{args.loss}")
    data = load_data(args, need_target=True, target_columns=task.target_columns)
    _check_features(model, data)
    scores = model.evaluate(data.X, task.encode(data.y), loss=task.loss, metrics=task.metrics)
    if args.json:
        print(json.dumps(scores))
    else:
        print(f"{data.source}, {len(data.X)} samples: {_format(scores)}")
    return 0


def _check_features(model: Model, data: Data) -> None:
    if data.X.shape[1] != model.n_in:
        extra = " besides its target column(s)" if data.y is not None else ""
        raise UsageError(f"{data.source} has {data.X.shape[1]} feature column(s){extra}; "
                         f"the model takes {model.n_in}")


def run_predict(args, log):
    model, task = _load_model(args.model)
    data = load_data(args, need_target=False, n_features=model.n_in,
                     target_columns=task.target_columns if task else None)
    _check_features(model, data)
    extension = os.path.splitext(args.output)[1].lower() if args.output != "-" else ".csv"
    if extension not in (".csv", ".npy", ".npz"):
        raise UsageError(f"--output {args.output!r}: expected a .csv, .npy or .npz file")
    if args.output != "-":
        _check_writable(args.output, "--output")
    output = model.predict(data.X)
    classifier = task is not None and task.kind == "classification"
    labels = task.labels(output) if classifier else None
    rates = None
    if task is not None and task.loss == "poisson":
        with np.errstate(over="ignore"):
            rates = np.exp(output)          # +inf where exp overflows
    if args.probabilities:
        if not classifier:
            raise UsageError("--probabilities needs a classifier; this model is a regression"
                             if task else "--probabilities needs a model saved with its task")
        output = _probabilities(output)
    if extension == ".npy":
        np.save(args.output, output)
    elif extension == ".npz":
        arrays = {"outputs": output}
        if labels is not None:
            arrays["labels"] = labels
        if rates is not None:
            arrays["rates"] = rates
        np.savez(args.output, **arrays)
    elif args.output == "-":
        _write_csv(sys.stdout, output, labels, rates)
    else:
        with open(args.output, "w", encoding="utf-8", newline="") as file:
            _write_csv(file, output, labels, rates)
    if args.output != "-":
        log(f"wrote {len(output)} predictions to {args.output}")
    return 0


def _probabilities(logits: npt.NDArray[Any]) -> npt.NDArray[Any]:
    if logits.shape[1] == 1:
        return 0.5 * (1.0 + np.tanh(0.5 * logits))          # sigmoid without overflow
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _write_csv(file: TextIO, output: npt.NDArray[Any], labels: npt.NDArray[Any] | None,
               rates: npt.NDArray[Any] | None = None) -> None:
    names = [f"output_{i}" for i in range(output.shape[1])]
    # 17 significant digits read back to the same float64 (9 do for float32)
    digits = 9 if output.dtype == np.float32 else 17
    columns = [output[:, i].tolist() for i in range(output.shape[1])]
    if labels is not None:
        names.append("label")
        columns.append(labels.tolist())
    if rates is not None:
        names += [f"rate_{i}" for i in range(rates.shape[1])]
        columns += [rates[:, i].tolist() for i in range(rates.shape[1])]
    file.write(",".join(names) + "\n")
    for row in zip(*columns):
        file.write(",".join(f"{v:.{digits}g}" if isinstance(v, float) else str(v)
                            for v in row) + "\n")


COMMANDS: dict[str, Callable[[argparse.Namespace, Log], int]] = {
    "train": run_train, "evaluate": run_evaluate, "predict": run_predict}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0, 1 diverged, 2 user mistake).

    In a ``--distributed`` run of more than one rank, a rank that fails aborts the
    whole MPI job with its status (``MPI_Abort``), so that no other rank waits for it."""
    try:
        status = _main(argv)
    except BaseException:
        _abort_the_job(1)                # (then the traceback, where it returns)
        raise
    if status:
        _abort_the_job(status)
    return status


def _abort_the_job(status: int) -> None:
    """MPI_Abort of COMM_WORLD when this process is a rank of a multi-rank job.

    The rank's output is flushed first and given ABORT_GRACE seconds to reach the
    launcher: MPICH's launcher tears the job down on an abort without draining what
    its ranks wrote last. Two-rank runs, two at a time, lost the failing rank's
    one-line error once in about 50 that way, and none in 100 with the pause."""
    MPI = sys.modules.get("mpi4py.MPI")
    if MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized() \
            and MPI.COMM_WORLD.Get_size() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(ABORT_GRACE)
        MPI.COMM_WORLD.Abort(status)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    prog = parser.prog
    try:
        args = parser.parse_args(argv)
        prog = f"bpcore {args.command}"
        quiet = getattr(args, "verbose", 1) == 0

        def log(message: str, stream: TextIO | None = None) -> None:
            if not quiet:
                print(message, file=stream or sys.stdout, flush=True)
        return COMMANDS[args.command](args, log)
    except UsageError as error:
        message, prog = str(error), error.prog or prog
    except CheckpointError as error:
        message = str(error)
    except BrokenPipeError:
        # the reader of stdout left (e.g. "| head"): no message, and none at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (OSError, ValueError) as error:
        # files that cannot be read or written, data bpcore rejects (NaN, shapes)
        message = str(error) or type(error).__name__
    except MemoryError:
        # say, --layers too wide for this machine
        message = "out of memory; try smaller --layers, --batch-size or data"
    except TrainingDiverged as error:
        print(f"{prog}: training diverged: {error}; try a lower --lr", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2
