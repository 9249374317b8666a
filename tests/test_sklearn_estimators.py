"""bpcore.sklearn's MLPClassifier/MLPRegressor against scikit-learn's own estimators.

The oracle is scikit-learn: bpcore draws scikit-learn's initial weights from the same
``random_state`` and follows its batches, objective and update rules, so the same
parameters must give the same trained weights, loss curve and counters (to rounding).
"""
import copy
import inspect
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import neural_network as sk_nn  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_multilabel_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from bpcore.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

SK = {MLPClassifier: sk_nn.MLPClassifier, MLPRegressor: sk_nn.MLPRegressor}


def _fit_both(cls, X, y, fit_kwargs=None, **params):
    """(bpcore estimator, scikit-learn estimator), each fitted with ``params``."""
    fit_kwargs = fit_kwargs or {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = cls(**params).fit(X, y, **fit_kwargs)
        theirs = SK[cls](**params).fit(X, y, **fit_kwargs)
    return ours, theirs


def _assert_same_fit(ours, theirs, rtol=1e-9, atol=1e-11):
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.n_layers_ == theirs.n_layers_
    assert ours.n_outputs_ == theirs.n_outputs_
    assert ours.out_activation_ == theirs.out_activation_
    for mine, other in zip(ours.coefs_ + ours.intercepts_,
                           theirs.coefs_ + theirs.intercepts_):
        assert mine.shape == other.shape and mine.dtype == other.dtype
        np.testing.assert_allclose(mine, other, rtol=rtol, atol=atol)
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=rtol)
    if hasattr(theirs, "loss_curve_"):
        assert ours.t_ == theirs.t_
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=rtol)
        if theirs.best_loss_ is None:
            assert ours.best_loss_ is None
        else:
            np.testing.assert_allclose(ours.best_loss_, theirs.best_loss_, rtol=rtol)
        if theirs.validation_scores_ is not None:
            np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)
            assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_classification(n_samples=150, n_features=5, n_informative=4, n_redundant=0,
                               n_classes=3, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def binary():
    X, y = make_classification(n_samples=120, n_features=4, random_state=1)
    return X, np.where(y == 1, "yes", "no")


@pytest.fixture(scope="module")
def noisy_binary():
    """Overlapping classes: no predicted probability saturates below float64's eps,
    where scikit-learn's L-BFGS objective clips it and bpcore's exact one does not
    (docs/sklearn.md)."""
    X, y = make_classification(n_samples=120, n_features=4, flip_y=0.3, class_sep=0.5,
                               random_state=1)
    return X, np.where(y == 1, "yes", "no")


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(130, 4))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.normal(size=130)
    return X, y


# ---------------------------------------------------------------- same trajectory
@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_classifier_trains_like_sklearn(blobs, solver, activation):
    X, y = blobs
    ours, theirs = _fit_both(MLPClassifier, X, y, hidden_layer_sizes=(7, 5),
                             activation=activation, solver=solver, max_iter=15,
                             batch_size=32, learning_rate_init=0.02, alpha=1e-3,
                             random_state=3)
    _assert_same_fit(ours, theirs)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-9)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.mark.parametrize("options", [
    dict(learning_rate="constant", momentum=0.0),
    dict(learning_rate="constant", momentum=0.9, nesterovs_momentum=False),
    dict(learning_rate="invscaling", power_t=0.3),
    dict(learning_rate="invscaling", momentum=0.5, nesterovs_momentum=False),
    dict(learning_rate="adaptive", tol=0.05, n_iter_no_change=2),
])
def test_sgd_schedules_match_sklearn(binary, options):
    X, y = binary
    ours, theirs = _fit_both(MLPClassifier, X, y, solver="sgd", hidden_layer_sizes=(6,),
                             max_iter=40, learning_rate_init=0.1, random_state=0, **options)
    _assert_same_fit(ours, theirs)
    assert ours._optimizer.lr == pytest.approx(theirs._optimizer.learning_rate, rel=1e-12)


@pytest.mark.parametrize("params", [
    dict(shuffle=False),
    dict(batch_size=1, max_iter=3),
    dict(batch_size=7),
    dict(early_stopping=True, validation_fraction=0.2, n_iter_no_change=3),
    dict(tol=1e-2, n_iter_no_change=2, max_iter=200),
    dict(alpha=0.5),
])
def test_training_options_match_sklearn(binary, params):
    X, y = binary
    params = {"hidden_layer_sizes": (5,), "max_iter": 25, "random_state": 7, **params}
    ours, theirs = _fit_both(MLPClassifier, X, y, **params)
    _assert_same_fit(ours, theirs)


def test_early_stopping_restores_the_best_weights(blobs):
    X, y = blobs
    ours, theirs = _fit_both(MLPClassifier, X, y, early_stopping=True, max_iter=60,
                             n_iter_no_change=4, learning_rate_init=0.05, random_state=2)
    _assert_same_fit(ours, theirs)
    assert ours.score(X, y) == theirs.score(X, y)


def test_sample_weight_matches_sklearn(blobs):
    X, y = blobs
    weight = np.random.default_rng(0).uniform(0.2, 3.0, size=len(y))
    for solver in ("adam", "sgd"):
        ours, theirs = _fit_both(MLPClassifier, X, y, fit_kwargs={"sample_weight": weight},
                                 solver=solver, hidden_layer_sizes=(6,), max_iter=10,
                                 random_state=1)
        _assert_same_fit(ours, theirs)


def test_multilabel_matches_sklearn():
    X, Y = make_multilabel_classification(n_samples=90, n_features=6, n_classes=4,
                                          random_state=0)
    ours, theirs = _fit_both(MLPClassifier, X, Y, hidden_layer_sizes=(8,), max_iter=20,
                             random_state=0)
    _assert_same_fit(ours, theirs)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-9)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_regressor_trains_like_sklearn(regression, solver):
    X, y = regression
    ours, theirs = _fit_both(MLPRegressor, X, y, hidden_layer_sizes=(9,), solver=solver,
                             learning_rate_init=0.01, max_iter=20, random_state=0)
    _assert_same_fit(ours, theirs)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9)
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), rel=1e-9)


def test_poisson_regressor_trains_like_sklearn(regression):
    X, _ = regression
    rate = np.exp(0.3 * X[:, 0] - 0.2 * X[:, 1])
    y = np.random.default_rng(1).poisson(rate).astype(float)
    ours, theirs = _fit_both(MLPRegressor, X, y, loss="poisson", hidden_layer_sizes=(6,),
                             max_iter=20, random_state=0)
    _assert_same_fit(ours, theirs)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9)


def test_multi_output_regression_reports_sklearns_loss(regression):
    """With several outputs the reported loss is scikit-learn's (mean over outputs);
    the steps follow that loss's own gradient (documented)."""
    X, y = regression
    Y = np.column_stack([y, -2 * y + 1])
    est = MLPRegressor(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=30, alpha=0.01,
                       random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, Y)
    pred = est.predict(X)
    penalty = 0.5 * 0.01 * sum((W ** 2).sum() for W in est.coefs_) / len(X)
    expected = 0.5 * ((Y - pred) ** 2).mean() + penalty
    assert est.loss_ == pytest.approx(expected, rel=1e-10)


def test_float32_trains_in_float32_from_the_same_start(blobs):
    X, y = blobs
    X32 = X.astype(np.float32)
    ours, theirs = _fit_both(MLPClassifier, X32, y, hidden_layer_sizes=(6,), max_iter=5,
                             random_state=0)
    assert all(c.dtype == np.float32 for c in ours.coefs_ + ours.intercepts_)
    _assert_same_fit(ours, theirs, rtol=2e-4, atol=2e-5)
    # the same initial weights as float64: compare before any step
    first = MLPClassifier(hidden_layer_sizes=(6,), max_iter=1, random_state=0,
                          learning_rate_init=1e-300)
    second = clone(first)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        first.fit(X32, y)
        second.fit(X, y)
    for a, b in zip(first.coefs_, second.coefs_):
        np.testing.assert_array_equal(a, b.astype(np.float32))


# --------------------------------------------------------------------- lbfgs
@pytest.mark.parametrize("cls,data", [(MLPClassifier, "blobs"), (MLPClassifier, "noisy_binary"),
                                      (MLPRegressor, "regression")])
def test_lbfgs_matches_sklearn(cls, data, request):
    X, y = request.getfixturevalue(data)
    ours, theirs = _fit_both(cls, X, y, solver="lbfgs", hidden_layer_sizes=(6,),
                             max_iter=25, alpha=1e-3, random_state=0)
    _assert_same_fit(ours, theirs, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------- warm starts, partial fit
def _warm_starts_of_both(X, y, fits, params):
    """Fit bpcore's and scikit-learn's classifier ``fits`` times each; yield the pair
    after every fit (compared there, before the next fit changes them)."""
    ours, theirs = MLPClassifier(**params), sk_nn.MLPClassifier(**params)
    for _ in range(fits):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ours.fit(X, y)
            theirs.fit(X, y)
        yield ours, theirs


def test_warm_start_continues_like_sklearn(blobs):
    X, y = blobs
    params = dict(hidden_layer_sizes=(6,), max_iter=5, warm_start=True, random_state=0)
    ours, theirs = list(_warm_starts_of_both(X, y, 3, params))[-1]
    _assert_same_fit(ours, theirs)
    with pytest.raises(ValueError, match="warm_start can only be used"):
        ours.fit(X[y != 2], y[y != 2])


def test_partial_fit_matches_sklearn(blobs):
    X, y = blobs
    ours = MLPClassifier(hidden_layer_sizes=(6,), random_state=0)
    theirs = sk_nn.MLPClassifier(hidden_layer_sizes=(6,), random_state=0)
    classes = np.unique(y)
    for start in range(0, 150, 50):
        part = slice(start, start + 50)
        ours.partial_fit(X[part], y[part], classes=classes)
        theirs.partial_fit(X[part], y[part], classes=classes)
    _assert_same_fit(ours, theirs)


def test_partial_fit_errors(blobs, regression):
    X, y = blobs
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(X, y)
    est = MLPClassifier(hidden_layer_sizes=(3,)).partial_fit(X[y < 2], y[y < 2],
                                                             classes=[0, 1])
    with pytest.raises(ValueError, match="classes not in"):
        est.partial_fit(X, y)
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(*regression)
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")


# ------------------------------------------------------ coefs_ are the model's views
def test_coefs_are_views_that_reach_predict_and_partial_fit(regression):
    X, y = regression
    ours, theirs = _fit_both(MLPRegressor, X, y, hidden_layer_sizes=(4,), max_iter=3,
                             random_state=0)
    assert np.shares_memory(ours.coefs_[0], ours.model_.params)
    new_W = np.linspace(-1, 1, ours.coefs_[0].size).reshape(ours.coefs_[0].shape)
    ours.coefs_[0][...] = new_W            # an in-place edit
    theirs.coefs_[0][...] = new_W
    ours.intercepts_[1] = [0.25]           # an item assignment
    theirs.intercepts_[1] = np.array([0.25])
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-12)
    ours.coefs_ = [c * 0.5 for c in ours.coefs_]     # a reassignment
    theirs.coefs_ = [c * 0.5 for c in theirs.coefs_]
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-12)
    ours.partial_fit(X, y)
    theirs.partial_fit(X, y)
    _assert_same_fit(ours, theirs)
    with pytest.raises(ValueError, match=r"coefs_\[0\] must have shape"):
        ours.coefs_[0] = np.zeros((2, 2))
    assert not hasattr(MLPRegressor(), "coefs_")


# ------------------------------------------------------------- labels and inputs
def test_string_labels_and_sparse_input(binary):
    scipy_sparse = pytest.importorskip("scipy.sparse")
    X, y = binary
    ours, theirs = _fit_both(MLPClassifier, scipy_sparse.csr_matrix(X), y,
                             hidden_layer_sizes=(4,), max_iter=10, random_state=0)
    _assert_same_fit(ours, theirs)
    assert list(ours.classes_) == ["no", "yes"]
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    dense = MLPClassifier(hidden_layer_sizes=(4,), max_iter=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense.fit(X, y)
    np.testing.assert_array_equal(dense.model_.params, ours.model_.params)


def test_feature_names_from_a_dataframe(regression):
    pd = pytest.importorskip("pandas")
    X, y = regression
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = MLPRegressor(hidden_layer_sizes=(3,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(frame, y)
    assert list(est.feature_names_in_) == list(frame.columns)
    assert est.n_features_in_ == X.shape[1]


def test_predict_log_proba_is_the_log_of_predict_proba(blobs, binary):
    for X, y in (blobs, binary):
        est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=20, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
        np.testing.assert_allclose(est.predict_log_proba(X), np.log(est.predict_proba(X)),
                                   rtol=1e-12, atol=1e-12)


def test_class_weight_multiplies_sample_weight(blobs):
    from sklearn.utils.class_weight import compute_sample_weight
    X, y = blobs
    weighted = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0,
                             class_weight="balanced")
    explicit = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted.fit(X[:100], y[:100])
        explicit.fit(X[:100], y[:100],
                     sample_weight=compute_sample_weight("balanced", y[:100]))
    np.testing.assert_array_equal(weighted.model_.params, explicit.model_.params)


# ------------------------------------------------------- the scikit-learn API
def _plain(function):
    """A signature without annotations: (name, kind, default) per parameter."""
    return [(p.name, p.kind, p.default)
            for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_signatures_match_the_installed_sklearn(cls):
    ours = inspect.signature(cls.__init__).parameters
    theirs = inspect.signature(SK[cls].__init__).parameters
    assert list(ours)[:len(theirs)] == list(theirs)
    for name, parameter in theirs.items():
        assert ours[name].default == parameter.default, name
        assert ours[name].kind == parameter.kind, name
    for method in ("fit", "partial_fit", "predict", "predict_proba", "predict_log_proba",
                   "score"):
        if hasattr(SK[cls], method):
            assert _plain(getattr(cls, method)) == _plain(getattr(SK[cls], method)), method


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_tags_agree_with_sklearn(cls):
    from sklearn.utils import get_tags
    assert get_tags(cls()) == get_tags(SK[cls]())


def test_convergence_warning_and_batch_size_warning(blobs):
    X, y = blobs
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier(hidden_layer_sizes=(3,), max_iter=2).fit(X, y)
    with pytest.warns(UserWarning, match="batch_size"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, batch_size=1000).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        MLPClassifier(hidden_layer_sizes=(3,), solver="lbfgs", max_iter=2).fit(X, y)


def test_bad_parameters_are_refused(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="activation"):
        MLPClassifier(activation="softplus").fit(X, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        MLPClassifier(hidden_layer_sizes=(4, 0)).fit(X, y)
    with pytest.raises(ValueError, match="dtype"):
        MLPClassifier(dtype=np.int32).fit(X, y)
    with pytest.raises(ValueError, match="non-negative"):
        MLPRegressor(loss="poisson").fit(X, y - 5.0)


def test_pickle_copy_and_joblib_keep_predictions(tmp_path, blobs):
    joblib = pytest.importorskip("joblib")
    X, y = blobs
    est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    expected = est.predict_proba(X)
    joblib.dump(est, tmp_path / "est.joblib")
    for other in (pickle.loads(pickle.dumps(est)), copy.deepcopy(est),
                  joblib.load(tmp_path / "est.joblib")):
        np.testing.assert_array_equal(other.predict_proba(X), expected)
        assert not np.shares_memory(other.model_.params, est.model_.params)
        assert np.shares_memory(other.coefs_[0], other.model_.params)


def test_pipeline_gridsearch_and_cross_validate(blobs):
    from sklearn.model_selection import GridSearchCV, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = blobs
    pipe = make_pipeline(StandardScaler(),
                         MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0))
    sk_pipe = make_pipeline(StandardScaler(), sk_nn.MLPClassifier(hidden_layer_sizes=(8,),
                                                                  max_iter=30, random_state=0))
    grid = {"mlpclassifier__alpha": [1e-4, 1e-1]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X, y)
        theirs = GridSearchCV(sk_pipe, grid, cv=3, n_jobs=2).fit(X, y)
        np.testing.assert_allclose(ours.cv_results_["mean_test_score"],
                                   theirs.cv_results_["mean_test_score"])
        result = cross_validate(pipe, X, y, cv=3, n_jobs=2, return_estimator=True)
        sk_result = cross_validate(sk_pipe, X, y, cv=3, n_jobs=2)
    np.testing.assert_allclose(result["test_score"], sk_result["test_score"])
    for fitted in result["estimator"]:
        assert fitted[-1].n_iter_ == 30


def test_import_bpcore_does_not_import_sklearn(tmp_path):
    code = "import sys, bpcore; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout.strip()
    assert out == "False"


def test_dropout_keeps_sklearns_initial_weights_and_is_reproducible(blobs):
    X, y = blobs
    tiny = dict(hidden_layer_sizes=(6,), max_iter=1, learning_rate_init=1e-300,
                random_state=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = sk_nn.MLPClassifier(**tiny).fit(X, y)
        dropped = MLPClassifier(dropout=0.5, **tiny).fit(X, y)
        np.testing.assert_array_equal(dropped.coefs_[0], plain.coefs_[0])
        first = MLPClassifier(dropout=0.3, hidden_layer_sizes=(6,), max_iter=5,
                              random_state=1).fit(X, y)
        again = clone(first).fit(X, y)
        no_dropout = MLPClassifier(hidden_layer_sizes=(6,), max_iter=5,
                                   random_state=1).fit(X, y)
    np.testing.assert_array_equal(first.model_.params, again.model_.params)
    assert not np.allclose(first.model_.params, no_dropout.model_.params)


def test_poisson_declares_positive_targets():
    from sklearn.linear_model import PoissonRegressor
    from sklearn.utils import get_tags
    assert get_tags(MLPRegressor(loss="poisson")).target_tags.positive_only \
        == get_tags(PoissonRegressor()).target_tags.positive_only


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_a_copy_continues_training_exactly_like_the_original(blobs, solver):
    X, y = blobs
    est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=4, solver=solver, alpha=0.1,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    copies = [pickle.loads(pickle.dumps(est)), copy.deepcopy(est)]
    for other in [est, *copies]:
        for _ in range(3):
            other.partial_fit(X, y)
    for other in copies:
        np.testing.assert_array_equal(other.model_.params, est.model_.params)
        assert other.loss_curve_ == est.loss_curve_
        assert not np.shares_memory(other.model_.params, est.model_.params)


@pytest.fixture(scope="module")
def counts(regression):
    X, _ = regression
    rng = np.random.default_rng(1)
    rate = np.exp(np.column_stack([0.3 * X[:, 0] - 0.2 * X[:, 1], 0.5 * X[:, 2]]))
    return X, rng.poisson(rate).astype(float)


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
@pytest.mark.parametrize("outputs", [1, 2])
def test_poisson_matches_sklearn_for_every_solver_and_output_count(counts, solver, outputs):
    """scikit-learn's half Poisson deviance sums over outputs, and L-BFGS sees it with
    its constant term. (Over a few hundred L-BFGS iterations the two paths part by
    amplified rounding, 1e-13 at 25 iterations, 1e-9 at 100: compared at 40.)"""
    X, Y = counts
    y = Y[:, 0] if outputs == 1 else Y
    params = dict(loss="poisson", hidden_layer_sizes=(5,), solver=solver,
                  learning_rate_init=0.01, max_iter=40 if solver == "lbfgs" else 15,
                  random_state=0)
    ours, theirs = _fit_both(MLPRegressor, X, y, **params)
    _assert_same_fit(ours, theirs, rtol=1e-7 if solver == "lbfgs" else 1e-9,
                     atol=1e-9 if solver == "lbfgs" else 1e-11)


def test_warm_start_with_early_stopping_matches_sklearn(blobs):
    X, y = blobs
    params = dict(hidden_layer_sizes=(6,), early_stopping=True, warm_start=True,
                  max_iter=15, n_iter_no_change=3, learning_rate_init=0.05,
                  validation_fraction=0.3, random_state=0)
    for ours, theirs in _warm_starts_of_both(X, y, 3, params):
        _assert_same_fit(ours, theirs)
        assert ours.score(X, y) == theirs.score(X, y)


def test_partial_fit_keeps_the_optimizer_it_started_with(binary):
    """set_params between partial_fit calls: scikit-learn's optimizer keeps its
    schedule (and its kind) until the next fit; so does bpcore's."""
    X, y = binary
    params = dict(hidden_layer_sizes=(4,), solver="sgd", learning_rate="invscaling",
                  learning_rate_init=0.05, random_state=0)
    ours, theirs = MLPClassifier(**params), sk_nn.MLPClassifier(**params)
    for est in (ours, theirs):
        est.partial_fit(X, y, classes=["no", "yes"])
        est.set_params(power_t=0.9, learning_rate_init=0.5, learning_rate="adaptive")
        est.partial_fit(X, y)
        est.set_params(solver="adam")
        est.partial_fit(X, y)
    _assert_same_fit(ours, theirs)
    switched = MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    theirs = sk_nn.MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    for est in (switched, theirs):
        est.partial_fit(X, y, classes=["no", "yes"])
        est.set_params(solver="sgd", learning_rate="invscaling")
        est.partial_fit(X, y)
    _assert_same_fit(switched, theirs)


def test_class_weight_times_sample_weight_by_hand(blobs):
    X, y = blobs
    weight = np.random.default_rng(3).uniform(0.5, 2.0, size=len(y))
    by_class = {0: 2.0, 1: 0.5, 2: 1.0}
    ours = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0,
                         class_weight=by_class)
    theirs = sk_nn.MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0)
    product = weight * np.array([by_class[label] for label in y])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y, sample_weight=weight)
        theirs.fit(X, y, sample_weight=product)
    _assert_same_fit(ours, theirs)
    with pytest.raises(ValueError, match="partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])


def test_gridsearch_on_threads_equals_the_sequential_search(blobs):
    from joblib import parallel_backend
    from sklearn.model_selection import GridSearchCV
    X, y = blobs
    est = MLPClassifier(hidden_layer_sizes=(6,), max_iter=20, random_state=0)
    grid = {"alpha": [1e-4, 1e-2, 1.0], "learning_rate_init": [1e-3, 1e-2]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sequential = GridSearchCV(est, grid, cv=3).fit(X, y)
        with parallel_backend("threading", n_jobs=4):
            threaded = GridSearchCV(est, grid, cv=3).fit(X, y)
    np.testing.assert_array_equal(threaded.cv_results_["mean_test_score"],
                                  sequential.cv_results_["mean_test_score"])


def test_warnings_point_at_the_callers_line(blobs):
    X, y = blobs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MLPClassifier(hidden_layer_sizes=(3,), max_iter=1).fit(X, y)
        MLPClassifier(hidden_layer_sizes=(3,), solver="lbfgs", max_iter=1).fit(X, y)
    assert len(caught) == 2
    assert all(w.filename == __file__ for w in caught)
