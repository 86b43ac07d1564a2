"""The scikit-learn pipeline a recipe describes: the graph's features, then the estimator's last step.

The features (derived, imputed, scaled, encoded; fitted in scikit-learn, computed by their ONNX
graph) are assembled in features/pipeline.py from the recipe's `FeatureSpec`; this module adds what
goes after them: the estimator, stopping early, calibrated, deciding at its threshold, inside the
target transform.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from mlpack.estimators import decision

# Re-exported: their home was here (they take the recipe's FeatureSpec now).
from mlpack.features.pipeline import check_derived as check_derived
from mlpack.features.pipeline import derived_columns as derived_columns
from mlpack.features.pipeline import frame as frame
from mlpack.features.pipeline import graph_features
from mlpack.features.pipeline import graph_inputs as graph_inputs
from mlpack.features.pipeline import preprocessing_pipeline as preprocessing_pipeline
from mlpack.features.target import TransformedTarget

if TYPE_CHECKING:
    from mlpack.training.recipe import Recipe


CALIBRATION_FOLDS = 5  # calibration and a chosen threshold fit on 4/5, check on 1/5 (scikit-learn's default)


def build_pipeline(recipe: Recipe, estimator: Any) -> Pipeline:
    """The estimator behind `GraphFeatures`: the preprocessing of the README and the feature
    engineering of mlpack.features, fitted in scikit-learn and computed by its ONNX graph, so the
    estimator trains on the values the shipped model feeds it (features/graph.py says why)."""
    return Pipeline([("features", graph_features(recipe.feature_spec)), ("estimator", final(recipe, estimator))])


def final(recipe: Recipe, estimator: Any) -> Any:
    """The pipeline's last step: the estimator, stopping early on a validation set, calibrated, deciding
    at its threshold ([estimator]), inside the target transform when there is one. The search's trials
    fit this same step, so what they score is what ships."""
    section, seed = recipe.estimator, recipe.evaluation.seed
    model = estimator
    stopping = section.early_stopping
    if stopping is not None and recipe.spec.early_stopping == "native":  # scikit-learn's own validation split
        native = {"n_iter_no_change": stopping.rounds, "validation_fraction": stopping.validation_fraction}
        model.set_params(**native, **({"early_stopping": True} if "early_stopping" in model.get_params() else {}))
    elif stopping is not None:
        wrapper = decision.StopsEarlyClassifier if recipe.classification else decision.StopsEarlyRegressor
        model = wrapper(model, stopping.rounds, stopping.validation_fraction, seed)
    if section.calibration:
        folds = StratifiedKFold(CALIBRATION_FOLDS, shuffle=True, random_state=seed)
        model = CalibratedClassifierCV(model, method=section.calibration, cv=folds, ensemble=False)
    if section.decides:
        threshold = 0.5 if math.isnan(section.threshold) else section.threshold
        model = decision.DecisionThreshold(
            model, threshold, section.threshold_metric, recipe.positive, CALIBRATION_FOLDS, seed
        )
    if recipe.features.target_transform:
        return TransformedTarget(model, recipe.features.target_transform)
    return model
