"""scikit-learn's own estimator checks, run on bpcore.sklearn's estimators.

scikit-learn's MLP estimators declare no expected failures; neither do these. For
``check_sample_weight_equivalence_on_dense_data`` scikit-learn tests its own MLPs
with particular parameters (a weighted fit equals a fit on repeated rows only where
batching does not differ: L-BFGS, or SGD stopped early by a loose ``tol``); the same
parameters are used here, taken from scikit-learn's test configuration.
"""
import warnings

import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from bpcore.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# scikit-learn's configuration for its MLP estimators in this check (its
# utils/_test_common/instance_generator.py): max_iter=100 everywhere, and
_WEIGHT_EQUIVALENCE = {
    "MLPClassifier": dict(solver="lbfgs"),
    "MLPRegressor": dict(solver="sgd", tol=1e-2, random_state=42),
}

ESTIMATORS = [
    MLPClassifier(max_iter=100),
    MLPRegressor(max_iter=100),
    MLPClassifier(solver="sgd", max_iter=100, random_state=0),
    MLPClassifier(solver="lbfgs", max_iter=100, random_state=0),
    MLPRegressor(solver="lbfgs", max_iter=100, random_state=0),
    MLPRegressor(loss="poisson", max_iter=200, learning_rate_init=0.01, random_state=0),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    name = check.func.__name__ if hasattr(check, "func") else check.__name__
    if name == "check_sample_weight_equivalence_on_dense_data":
        estimator = clone(estimator).set_params(**_WEIGHT_EQUIVALENCE[type(estimator).__name__])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)
