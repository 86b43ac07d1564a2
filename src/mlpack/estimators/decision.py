"""How a fitted estimator decides: early stopping on a validation set, calibrated probabilities, and
a binary decision threshold — each a scikit-learn meta-estimator whose ONNX converter mlpack
registers (decision_converters.py), so the shipped graph decides as the estimator did.

- `StopsEarlyClassifier` / `StopsEarlyRegressor`: LightGBM and XGBoost take a validation set only in
  `fit`, and inside mlpack's pipeline `fit` sees the graph's features, never raw documents. These
  hold out `validation_fraction` of the rows they are given (seeded; stratified for a classifier) and
  stop when the validation loss has not improved for `rounds` iterations. The trees kept are the
  best iteration's, which both libraries predict with and onnxmltools converts.
- `DecisionThreshold`: predicts the positive class where its probability is at least `threshold`
  (scikit-learn's `>=`, as FixedThresholdClassifier), or, with `metric`, at the threshold that
  maximises that metric on out-of-fold probabilities of the training rows (cross_val_predict, the
  sample weights passed through). Probabilities pass through unchanged.
- Calibration is scikit-learn's own `CalibratedClassifierCV` (skl2onnx converts it).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, RegressorMixin, clone, is_classifier
from sklearn.model_selection import ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit, cross_val_predict

# The metrics a threshold can be chosen for: of the positive class, or of both classes.
THRESHOLD_METRICS = ("f1", "precision", "recall", "accuracy", "balanced_accuracy", "f1_macro")


def _weights(sample_weight: Any) -> dict[str, Any]:
    return {"sample_weight": sample_weight} if sample_weight is not None else {}


class _StopsEarly(MetaEstimatorMixin, BaseEstimator):  # type: ignore[misc]
    def __init__(self, estimator: Any = None, rounds: int = 10, validation_fraction: float = 0.1, seed: int = 0):
        self.estimator = estimator
        self.rounds = rounds
        self.validation_fraction = validation_fraction
        self.seed = seed

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:  # noqa: N803 - scikit-learn's spelling
        X, y = np.asarray(X), np.asarray(y)
        splitter: Any = (
            StratifiedShuffleSplit(1, test_size=self.validation_fraction, random_state=self.seed)
            if is_classifier(self)
            else ShuffleSplit(1, test_size=self.validation_fraction, random_state=self.seed)
        )
        fit_rows, held = next(splitter.split(X, y))
        model = clone(self.estimator)
        weight = None if sample_weight is None else np.asarray(sample_weight)
        fit_weight = _weights(None if weight is None else weight[fit_rows])
        module = type(model).__module__.split(".")[0]
        if module == "lightgbm":
            import lightgbm

            with warnings.catch_warnings():
                # LightGBM 4.7's eval_X/eval_y do not encode a classifier's labels ("stayed"); its
                # eval_set still does, and says it is deprecated: mlpack's pinned 4.7.0 is what is tested.
                warnings.filterwarnings("ignore", message="The argument 'eval_set' is deprecated")
                model.fit(
                    X[fit_rows],
                    y[fit_rows],
                    **fit_weight,
                    eval_set=[(X[held], y[held])],
                    eval_sample_weight=None if weight is None else [weight[held]],
                    callbacks=[lightgbm.early_stopping(self.rounds, verbose=False)],
                )
            self.iterations_ = int(model.best_iteration_ or model.n_estimators)
        else:  # XGBoost (mlpack's classifier takes any labels: its validation labels are encoded the same way)
            held_y = y[held]
            if is_classifier(self):
                held_y = np.searchsorted(np.unique(y[fit_rows]), held_y)
            model.set_params(early_stopping_rounds=self.rounds)
            model.fit(
                X[fit_rows],
                y[fit_rows],
                **fit_weight,
                eval_set=[(X[held], held_y)],
                sample_weight_eval_set=None if weight is None else [weight[held]],
                verbose=False,
            )
            self.iterations_ = int(model.best_iteration) + 1
        self.estimator_ = model
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        return np.asarray(self.estimator_.predict(X))


class StopsEarlyClassifier(ClassifierMixin, _StopsEarly):  # type: ignore[misc]
    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.estimator_.classes_)

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        return np.asarray(self.estimator_.predict_proba(X))


class StopsEarlyRegressor(RegressorMixin, _StopsEarly):  # type: ignore[misc]
    pass


class DecisionThreshold(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):  # type: ignore[misc]
    """A binary classifier that predicts `positive` where P(positive) >= the threshold."""

    def __init__(
        self,
        estimator: Any = None,
        threshold: float = 0.5,
        metric: str = "",
        positive: Any = None,
        folds: int = 5,
        seed: int = 0,
    ):
        self.estimator = estimator
        self.threshold = threshold
        self.metric = metric
        self.positive = positive
        self.folds = folds
        self.seed = seed

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> DecisionThreshold:  # noqa: N803
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(f"a decision threshold is for two classes; the training rows hold {len(self.classes_)}")
        positive = self.classes_[1] if self.positive is None else self.positive
        self.positive_index_ = int(np.flatnonzero(self.classes_ == positive)[0])
        self.threshold_ = float(self.threshold)
        if self.metric:
            folds = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
            proba = cross_val_predict(
                clone(self.estimator), X, y, cv=folds, method="predict_proba", params=_weights(sample_weight)
            )[:, self.positive_index_]
            self.threshold_, self.cv_score_ = self._best(y, proba, sample_weight)
        self.estimator_ = clone(self.estimator).fit(X, y, **_weights(sample_weight))
        self.n_features_in_ = getattr(self.estimator_, "n_features_in_", None)
        return self

    def _best(self, y: np.ndarray, proba: np.ndarray, weight: Any) -> tuple[float, float]:
        """The threshold with the best score on the out-of-fold probabilities: midpoints between
        neighbouring probabilities (at most 200 candidates, by quantile), so no row sits on one."""
        values = np.unique(np.quantile(proba, np.linspace(0.0, 1.0, 201)))
        candidates = (values[:-1] + values[1:]) / 2 if len(values) > 1 else values
        scores = [self._score(y, proba >= t, weight) for t in candidates]
        best = int(np.argmax(scores))
        return float(candidates[best]), float(scores[best])

    def _score(self, y: np.ndarray, said: np.ndarray, weight: Any) -> float:
        positive, negative = self.classes_[self.positive_index_], self.classes_[1 - self.positive_index_]
        predicted = np.where(said, positive, negative)
        options = {"sample_weight": weight}
        if self.metric in ("f1", "precision", "recall"):
            function = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}[self.metric]
            return float(function(y, predicted, pos_label=positive, zero_division=0, **options))
        if self.metric == "f1_macro":
            return float(skm.f1_score(y, predicted, average="macro", zero_division=0, **options))
        function = skm.accuracy_score if self.metric == "accuracy" else skm.balanced_accuracy_score
        return float(function(y, predicted, **options))

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        return np.asarray(self.estimator_.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        said = self.predict_proba(X)[:, self.positive_index_] >= self.threshold_
        return np.where(said, self.classes_[self.positive_index_], self.classes_[1 - self.positive_index_])


def inner(estimator: Any) -> Any:
    """The estimator under mlpack's decision wrappers and CalibratedClassifierCV (its first fold's model)."""
    for _ in range(4):
        if isinstance(estimator, (DecisionThreshold, _StopsEarly)):
            estimator = getattr(estimator, "estimator_", estimator.estimator)
        elif hasattr(estimator, "calibrated_classifiers_"):
            estimator = estimator.calibrated_classifiers_[0].estimator
        else:
            break
    return estimator


def summary(estimator: Any, classes: list[Any] | None = None) -> dict[str, Any]:
    """How a fitted final step decides, for the metadata: calibration, the threshold (and its class and
    metric), early stopping's iterations kept. `classes`: the class names as predict() answers them."""
    found: dict[str, Any] = {}
    step = getattr(estimator, "regressor_", estimator)  # inside a target transform
    if isinstance(step, DecisionThreshold):
        names = classes or [c.item() if isinstance(c, np.generic) else c for c in step.classes_]
        found["threshold"] = round(step.threshold_, 6)
        found["positive_class"] = names[step.positive_index_]
        if step.metric:
            found["threshold_metric"] = step.metric
            found["threshold_cv_score"] = round(step.cv_score_, 6)
        step = step.estimator_
    if hasattr(step, "calibrated_classifiers_"):
        found["calibration"] = step.method
        step = step.calibrated_classifiers_[0].estimator
    if isinstance(step, _StopsEarly):
        found["early_stopping"] = {"rounds": step.rounds, "validation_fraction": step.validation_fraction}
        found["early_stopping"]["iterations"] = step.iterations_
    elif getattr(step, "n_iter_no_change", None) and hasattr(step, "validation_fraction"):  # scikit-learn's own
        kept = getattr(step, "n_iter_", getattr(step, "n_estimators_", None))
        found["early_stopping"] = {"rounds": step.n_iter_no_change, "validation_fraction": step.validation_fraction}
        found["early_stopping"]["iterations"] = int(kept) if kept is not None else None
    return found
