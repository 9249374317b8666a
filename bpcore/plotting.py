"""Pictures of a training run: the loss curves and, for 2-D inputs, the decision
boundary (or, for a 1-D regression, the fitted curve).

matplotlib is optional (``pip install 'bpcore[plot]'``) and imported only when a
picture is drawn. Figures are built on matplotlib's object API and rendered by the
Agg canvas, never through pyplot: drawing here opens no window and leaves the
backend of the caller's session alone.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ._typing import History, Model

# class colours (colour-blind safe, Okabe-Ito): points in full, regions lightened
_COLORS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000"]


def require_matplotlib() -> tuple[type[Figure], type[FigureCanvasAgg]]:
    """Import matplotlib's Figure and Agg canvas, or raise ImportError naming the extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plotting needs matplotlib; install it with "
                          "pip install 'bpcore[plot]'") from None
    return Figure, FigureCanvasAgg


def plot_history(ax: Axes, history: History | Mapping[str, Sequence[float]]) -> None:
    """Draw the training and validation loss per epoch on ``ax`` (a log scale when
    the losses are positive)."""
    # a History's dict of logs, or such a dict itself
    logs = cast("Mapping[str, Sequence[float]]", getattr(history, "history", history))
    for name, style in (("loss", "-"), ("val_loss", "--")):
        values = logs.get(name)
        if values:
            epochs = np.arange(1, len(values) + 1)
            label = "training" if name == "loss" else "validation"
            ax.plot(epochs, values, style, label=label, marker="o" if len(values) == 1 else None)
    values = [v for name in ("loss", "val_loss") for v in logs.get(name, [])]
    if values and min(values) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    ax.grid(True, alpha=0.3)
    ax.legend()


def predicted_classes(model: Model, X: npt.ArrayLike) -> npt.NDArray[np.intp | np.int64]:
    """The class index of each row: the arg-max of the logits, or logit > 0 for one output."""
    output = model.predict(X)
    if output.shape[1] == 1:
        return (output[:, 0] > 0).astype(np.int64)
    return output.argmax(axis=1)


def plot_decision_boundary(ax: Axes, model: Model, X: npt.ArrayLike, y: npt.ArrayLike,
                           resolution: int = 300) -> None:
    """Shade the class the model predicts over the plane around X (2 features) and
    draw the samples coloured by their true class index ``y``."""
    from matplotlib.colors import ListedColormap

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).reshape(-1)
    low, high = X.min(axis=0), X.max(axis=0)
    margin = 0.1 * np.maximum(high - low, 1e-9)
    xs = np.linspace(low[0] - margin[0], high[0] + margin[0], resolution)
    ys = np.linspace(low[1] - margin[1], high[1] + margin[1], resolution)
    grid_x, grid_y = np.meshgrid(xs, ys)
    grid = np.c_[grid_x.ravel(), grid_y.ravel()]
    regions = predicted_classes(model, grid).reshape(grid_x.shape)
    k = max(model.n_out, 2)
    colors = [_COLORS[i % len(_COLORS)] for i in range(k)]
    levels = np.arange(k + 1) - 0.5
    ax.contourf(grid_x, grid_y, regions, levels=levels, cmap=ListedColormap(colors), alpha=0.25)
    ax.contour(grid_x, grid_y, regions, levels=levels[1:-1], colors="k", linewidths=0.8)
    ax.scatter(X[:, 0], X[:, 1], c=[colors[int(c) % k] for c in y], s=14,
               edgecolors="k", linewidths=0.3)
    accuracy = float(np.mean(predicted_classes(model, X) == y))
    ax.set_title(f"decision boundary (accuracy {accuracy:.3f})")
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")


def plot_fit_1d(ax: Axes, model: Model, X: npt.ArrayLike, y: npt.ArrayLike,
                resolution: int = 400) -> None:
    """Draw the samples of a 1-feature regression and the model's curve through them."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(len(X), -1)
    xs = np.linspace(X[:, 0].min(), X[:, 0].max(), resolution).reshape(-1, 1)
    ax.scatter(X[:, 0], y[:, 0], s=10, color=_COLORS[4], label="data")
    ax.plot(xs[:, 0], model.predict(xs)[:, 0], color=_COLORS[5], linewidth=2, label="model")
    ax.set_title("fit")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.grid(True, alpha=0.3)
    ax.legend()


def training_figure(history: History | Mapping[str, Sequence[float]],
                    model: Model | None = None, X: npt.ArrayLike | None = None,
                    y: npt.ArrayLike | None = None, *, classifier: bool = True,
                    title: str | None = None) -> Figure:
    """A matplotlib Figure: the loss curves, beside the decision boundary when X has 2
    features and the model classifies, or the fitted curve for a 1-feature regression."""
    Figure, FigureCanvasAgg = require_matplotlib()
    second = None
    if model is not None and X is not None and y is not None:
        n_features = np.shape(X)[1]
        if classifier and n_features == 2:
            second = plot_decision_boundary
        elif not classifier and n_features == 1 and model.n_out == 1:
            second = plot_fit_1d
    figure = Figure(figsize=(11 if second else 5.5, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2 if second else 1, squeeze=False)[0]
    plot_history(axes[0], history)
    if second is not None and model is not None and X is not None and y is not None:
        second(axes[1], model, X, y)        # (second is set only with all three)
    if title:
        figure.suptitle(title)
    return figure


def save_training_plot(path: str | os.PathLike[str],
                       history: History | Mapping[str, Sequence[float]],
                       model: Model | None = None, X: npt.ArrayLike | None = None,
                       y: npt.ArrayLike | None = None, *, classifier: bool = True,
                       title: str | None = None, dpi: float = 100
                       ) -> str | os.PathLike[str]:
    """Write ``training_figure(...)`` to ``path`` (PNG by its extension)."""
    figure = training_figure(history, model, X, y, classifier=classifier, title=title)
    figure.savefig(path, dpi=dpi)
    return path
