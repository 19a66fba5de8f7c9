"""scikit-learn's estimator checks over every goldisk estimator that takes (X, y)."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from goldisk import (
    CurvatureProbe,
    GoldilocksClassifier,
    GoldilocksRegressor,
    GoldilocksSelector,
    InitScaler,
    SubspaceProjector,
)
from goldisk.models import MLP

# Small nets trained hard enough (lr, epochs) to pass the checks' accuracy/R^2 floors.
_FAST = dict(module__hidden=(16,), lr=0.1, max_epochs=10, batch_size=64, random_state=0)


def _estimators():
    # A subspace net is included: its module is a SubspaceModule, trained through theta.
    clf = GoldilocksClassifier(MLP, init_scaler=InitScaler(1.0, reference="he"), **_FAST)
    reg = GoldilocksRegressor(MLP, **_FAST)
    sub = GoldilocksClassifier(MLP, subspace=SubspaceProjector(dim=20), **_FAST)
    sel = GoldilocksSelector(
        GoldilocksClassifier(MLP, **_FAST), n_candidates=2,
        probe=CurvatureProbe(dim=4, n_subspaces=1, max_samples=100), random_state=0,
    )
    return [clf, reg, sub, sel]


def _expected_failures(estimator):
    failures = {}
    if not isinstance(estimator, GoldilocksSelector):
        # skorch's NeuralNet.__init__ itself sets history_, initialized_ and
        # virtual_params_, and stores prefixed parameters such as module__hidden as
        # attributes (skorch's design for routing them); the goldisk nets inherit this.
        failures["check_no_attributes_set_in_init"] = (
            "skorch.NeuralNet.__init__ sets history_/initialized_/virtual_params_ and "
            "stores module__* parameters as attributes"
        )
    if getattr(getattr(estimator, "estimator", estimator), "dtype", None) == "float32":
        # float32 matrix products are blocked differently for different batch sizes,
        # so predict_proba on a subset can differ from the full batch by ~2e-7, just
        # above the checks' rtol=1e-7 (they pass with dtype="float64"). Non-strict:
        # these usually pass.
        for check in ("check_methods_subset_invariance",
                      "check_methods_sample_order_invariance"):
            failures[check] = "float32 GEMM results depend on the batch size at ~1e-7"
    return failures


@parametrize_with_checks(_estimators(), expected_failed_checks=_expected_failures)
def test_sklearn_compatible(estimator, check):
    check(estimator)
