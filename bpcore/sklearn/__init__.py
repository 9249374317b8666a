"""scikit-learn estimators on bpcore's engine: drop-in ``MLPClassifier`` and ``MLPRegressor``.

    from bpcore.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(64,), random_state=0).fit(X, y)

They take scikit-learn's parameters (same names, defaults and meanings), follow its
documented training behaviour (``batch_size="auto"``, the ``invscaling`` and
``adaptive`` schedules, ``n_iter_no_change`` with ``tol``, early stopping on a
stratified split, warm starts, ``partial_fit``, sample weights) and expose its fitted
attributes (``coefs_``, ``intercepts_``, ``loss_curve_``, ...). The initial weights are
drawn exactly as scikit-learn draws them, so the same ``random_state`` starts both
libraries from the same weights. ``model_`` is the underlying ``bpcore.Model``.

scikit-learn is an optional dependency: ``pip install "bpcore[sklearn]"``. Importing
``bpcore`` does not import it; importing this module does.
"""
try:
    import sklearn  # noqa: F401
except ImportError as error:      # pragma: no cover - exercised only without the extra
    raise ImportError("bpcore.sklearn needs scikit-learn: pip install \"bpcore[sklearn]\""
                      ) from error

from ._estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
