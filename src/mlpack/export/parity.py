"""The ONNX-vs-scikit-learn parity check, on every training and test row, and what a failure means.

The estimator trains on the graph's own features (features/graph.py), so a disagreement left here
is the estimator's conversion: float32 against float64 arithmetic, a tree threshold that a value
sits on, neighbours at equal distances. The diagnosis says which, and for which feature.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from mlpack.errors import QualityGateError
from mlpack.estimators.predictions import predictions
from mlpack.runtime import Model
from mlpack.training.train import TrainedModel


@dataclass(frozen=True)
class ParityReport:
    rows: int  # every row compared: the training rows and the test split
    max_abs_diff: float
    tolerance: float
    within_tolerance: bool
    label_agreement: float  # share of rows where labels (or values, within tolerance) agree
    # Disagreeing labels where scikit-learn's top two probabilities are not tied: a real disagreement.
    # (At an exact tie, float32 rounding may pick the other class; that is not a conversion error.)
    label_disagreements: int = 0
    # What kind of disagreement, when there is one: ties, float precision, or a real conversion bug.
    diagnosis: str = ""
    train_rows: int = 0
    test_rows: int = 0
    # Rows beyond the tolerance (or disagreeing without a tie), by split.
    train_failures: int = 0
    test_failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Comparison:
    """One split compared row by row."""

    difference: np.ndarray  # |sklearn - onnx| per row (the largest over classes; 0 for labels only)
    beyond: np.ndarray  # bool per row: the difference is beyond the tolerance
    flipped: np.ndarray  # bool per row: another label, and scikit-learn's top two are not tied
    agree: np.ndarray  # bool per row: the same label (or value, within tolerance)

    @property
    def failures(self) -> int:
        return int(np.sum(self.beyond | self.flipped))


def parity_report(
    trained: TrainedModel, model: Model, tolerance: float, answered: list[Any] | None = None
) -> ParityReport:
    """Compare scikit-learn with the ONNX model, run through the wheel's own runtime, on every row:
    the training rows and the test split (a model that ships must agree on what it learnt from too).
    `answered`: the ONNX model's labels (or values) of the training rows, then of the test rows, are
    added to it (the drift baseline profiles them).

    The check is |sklearn - onnx| <= tolerance * max(1, |sklearn|): absolute for probabilities,
    relative for regression values above 1, where float32 cannot be closer than about 6e-8 × |value|.
    """
    # scikit-learn's answers on the training rows, where training made them from the features it fitted on.
    train = _compare(
        trained, model, trained.train_columns, trained.train_frame, tolerance, trained.train_answers, answered
    )
    # scikit-learn's answers on the test rows were made in training: the same pipeline on the same frame.
    known = (trained.test_predicted, trained.test_probabilities)
    test = _compare(trained, model, trained.test_columns, trained.test_frame, tolerance, known, answered)
    difference = np.concatenate([train.difference, test.difference])
    agree = np.concatenate([train.agree, test.agree])
    max_diff = float(difference.max()) if difference.size else 0.0
    within = not (train.beyond.any() or test.beyond.any())
    disagreements = int(train.flipped.sum() + test.flipped.sum())
    return ParityReport(
        rows=len(agree),
        max_abs_diff=max_diff,
        tolerance=tolerance,
        within_tolerance=within,
        label_agreement=round(float(np.mean(agree)) if agree.size else 1.0, 6),
        label_disagreements=disagreements,
        diagnosis="" if within and disagreements == 0 else _diagnose(trained, model, [train, test], max_diff),
        train_rows=len(train.agree),
        test_rows=len(test.agree),
        train_failures=train.failures,
        test_failures=test.failures,
    )


# Rows compared at a time: both sides' predictions (and the features scikit-learn computes on the
# way) exist for one chunk only, so a million rows cost no more memory than this many. And the ONNX
# session's arena keeps what its largest run needed, about 1 KB a row of scale.py's model (65 MB at
# 65,536 rows, most of the projected columns of a million documents; 16 MB at this many).
PARITY_CHUNK = 16_384


Answers = tuple[np.ndarray, "np.ndarray | None"]  # scikit-learn's predictions and class probabilities


def _compare(
    trained: TrainedModel,
    model: Model,
    columns: dict[str, np.ndarray],
    frame: Any,
    tolerance: float,
    known: Answers | None = None,
    answered: list[Any] | None = None,
) -> _Comparison:
    """`_compare_rows` a chunk of rows at a time (each row's comparison depends on that row alone).
    `known`: scikit-learn's answers on these rows, already made (else they are made here)."""
    rows = len(frame)
    if rows <= PARITY_CHUNK:
        return _compare_rows(trained, model, columns, frame, tolerance, known, answered)
    parts = [
        _compare_rows(
            trained,
            model,
            {path: values[start : start + PARITY_CHUNK] for path, values in columns.items()},
            frame.iloc[start : start + PARITY_CHUNK],
            tolerance,
            None if known is None else _rows(known, slice(start, start + PARITY_CHUNK)),
            answered,
        )
        for start in range(0, rows, PARITY_CHUNK)
    ]
    joined = {
        field.name: np.concatenate([getattr(part, field.name) for part in parts]) for field in fields(_Comparison)
    }
    return _Comparison(**joined)


def _rows(known: Answers, rows: slice) -> Answers:
    labels, probabilities = known
    return labels[rows], None if probabilities is None else probabilities[rows]


def _compare_rows(
    trained: TrainedModel,
    model: Model,
    columns: dict[str, np.ndarray],
    frame: Any,
    tolerance: float,
    known: Answers | None = None,
    answered: list[Any] | None = None,
) -> _Comparison:
    # The runtime's own reading of the columns and run of the graph (Model.run), the probabilities as its array.
    labels, probabilities = model.output_arrays(model.feeds(columns)[0])
    if answered is not None:
        answered += labels
    none = np.zeros(len(labels), dtype=bool)
    with_probabilities = trained.classes is not None and probabilities is not None
    # scikit-learn's side: the features computed once, and both answers from them (estimators.predictions).
    if known is None or (with_probabilities and known[1] is None):
        known = predictions(trained.pipeline, frame, probabilities=with_probabilities)
    predicted, expected = known
    if trained.classes is not None and probabilities is None:
        # Labels only (LinearSVC): every disagreement counts, as there are no probabilities to show a tie.
        agree = np.asarray(labels) == predicted
        return _Comparison(np.zeros(len(labels)), none, ~agree, agree)
    if trained.classes is not None:
        assert expected is not None
        actual = np.asarray(probabilities, dtype=np.float64).reshape(expected.shape)
        # The runtime answers with the classes as users see them (True, label names): compare those.
        as_user = dict(zip(trained.classes, model.classes or trained.classes))
        sklearn_labels = [as_user[code] for code in predicted.tolist()]
        agree = np.array([a == b and type(a) is type(b) for a, b in zip(labels, sklearn_labels)], dtype=bool)
        top_two = np.sort(expected, axis=1)[:, -2:]
        tied = (top_two[:, 1] - top_two[:, 0]) <= 2 * tolerance
        decider = trained.pipeline.steps[-1][1]
        if hasattr(decider, "threshold_"):  # a decision threshold: a tie is a probability on the threshold
            tied = np.abs(expected[:, decider.positive_index_] - decider.threshold_) <= 2 * tolerance
        gaps = np.abs(actual - expected)
        beyond = np.any(gaps > tolerance * np.maximum(1.0, np.abs(expected)), axis=1)
        return _Comparison(gaps.max(axis=1, initial=0.0), beyond, ~agree & ~tied, agree)
    expected = np.asarray(predicted).astype(np.float64)
    actual = np.asarray(labels, dtype=np.float64)
    difference = np.abs(actual - expected)
    beyond = difference > tolerance * np.maximum(1.0, np.abs(expected))
    return _Comparison(difference, beyond, none, np.isclose(actual, expected, rtol=tolerance, atol=tolerance))


FLOAT32_NOISE = 1e-3  # differences this small come from float32 arithmetic, not from a different model


def _diagnose(trained: TrainedModel, model: Model, splits: list[_Comparison], max_diff: float) -> str:
    """Say what kind of disagreement it is, and where, so the user knows whether to loosen, change or report."""
    ties = _neighbour_ties(trained)
    if ties:
        return (
            f"ties: {ties} of {len(trained.test_frame)} test rows have equidistant k-th and (k+1)-th neighbours, "
            "which scikit-learn and onnxruntime break differently; use another estimator"
        )
    off = [
        frame.iloc[np.flatnonzero(split.beyond | split.flipped)]
        for split, frame in zip(splits, (trained.train_frame, trained.test_frame))
    ]
    threshold = _on_a_threshold(trained, model, off)
    if threshold:
        return threshold
    gaps = [split.difference[split.beyond | split.flipped] for split in splits]
    float32_sums = _float32_sums(trained, off, float(np.concatenate(gaps).max(initial=0.0)), max_diff)
    if float32_sums:
        return float32_sums
    if max_diff <= FLOAT32_NOISE:
        return (
            f"float precision: the largest difference ({max_diff:.2g}) is float32 rounding (ONNX computes in "
            "float32); raise [export].parity_tolerance if it is acceptable"
        )
    return (
        f"a real disagreement ({max_diff:.3g}, far beyond float32 rounding): the estimator's ONNX conversion "
        "computes something else than scikit-learn; please report it with the estimator and its params"
    )


def _float32_sums(trained: TrainedModel, off: list[Any], worst: float, max_diff: float) -> str:
    """[estimator].float32: SGD's coefficients are float32 and scikit-learn sums each prediction in float32
    (numpy's dot of float32 features and coef_), while the graph sums in double (exact_converters): a
    prediction near 0 made of large terms is off in scikit-learn itself by a float32 step of those terms."""
    features = trained.pipeline.named_steps.get("features")
    rows = [frame for frame in off if len(frame)]
    if getattr(features, "dtype", "float64") != "float32" or not rows:
        return ""
    estimator = trained.pipeline.steps[-1][1]
    estimator = getattr(estimator, "regressor_", estimator)  # inside a target transform, the estimator it fitted
    coef = getattr(estimator, "coef_", None)
    if coef is None:
        return ""
    x = np.vstack([trained.pipeline[:-1].transform(frame) for frame in rows]).astype(np.float64)
    weights = np.asarray(coef, dtype=np.float64).reshape(-1, x.shape[1])
    terms = np.abs(x[:, None, :] * weights[None, :, :]).max(initial=0.0)
    largest = max(float(terms), float(np.max(np.abs(np.asarray(estimator.intercept_, dtype=np.float64)))))
    step = float(np.spacing(np.float32(largest)))
    if worst > 64 * step and max_diff > FLOAT32_NOISE:
        return ""
    return (
        f"float32 sums in scikit-learn: with [estimator].float32 = true SGD's coefficients are float32 and "
        f"scikit-learn sums each prediction in float32, which at terms up to {largest:.4g} rounds by {step:.2g} a "
        f"step (here off by {worst:.2g}, beyond the tolerance); the graph sums in double. Build without "
        "[estimator].float32 (the default fits in float64, which the graph matches), scale the target down, or "
        "raise [export].parity_tolerance"
    )


_TREE_OPS = {"TreeEnsembleRegressor", "TreeEnsembleClassifier", "TreeEnsemble"}


def _on_a_threshold(trained: TrainedModel, model: Model, off: list[Any]) -> str:
    """Rows off because a feature's value sits within one float32 step of a tree's split threshold,
    where the estimator's double and the graph's float32 comparison can go to different sides."""
    import onnx
    from onnx import helper, numpy_helper

    rows = [frame for frame in off if len(frame)]
    if not rows:
        return ""
    source = model._model  # the file's bytes, or its path (the runtime keeps what it was given)
    graph = onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(source)
    splits: dict[int, np.ndarray] = {}
    for node in graph.graph.node:
        if node.op_type not in _TREE_OPS:
            continue
        attributes = {a.name: a for a in node.attribute}
        if "nodes_featureids" not in attributes:
            continue
        features = np.asarray(helper.get_attribute_value(attributes["nodes_featureids"]), dtype=np.int64)
        if "nodes_values_as_tensor" in attributes:
            values = numpy_helper.to_array(attributes["nodes_values_as_tensor"].t).astype(np.float64)
        else:
            values = np.asarray(helper.get_attribute_value(attributes["nodes_values"]), dtype=np.float64)
        for feature in np.unique(features):
            splits[int(feature)] = np.unique(
                np.concatenate([splits.get(int(feature), []), values[features == feature]])
            )
    if not splits:
        return ""
    x = np.vstack([trained.pipeline[:-1].transform(frame) for frame in rows]).astype(np.float32)
    names = _feature_names(trained, x.shape[1])
    hits: dict[int, int] = {}
    for feature, thresholds in splits.items():
        column = x[:, feature].astype(np.float64)
        step = np.spacing(np.abs(column).astype(np.float32)).astype(np.float64)
        nearest = np.min(np.abs(column[:, None] - thresholds[None, :]), axis=1)
        hits[feature] = int(np.sum(nearest <= step))
    feature, count = max(hits.items(), key=lambda item: item[1])
    if count == 0:
        return ""
    return (
        f"a tree threshold: in {count} of the {len(x)} rows off, feature '{names[feature]}' lies within one float32 "
        "step of a split threshold, which the estimator compares in double and the graph in float32; round the "
        "field (or the expression) to fewer digits, or use another estimator"
    )


def _feature_names(trained: TrainedModel, width: int) -> list[str]:
    try:
        names = [str(name) for name in trained.pipeline[:-1].get_feature_names_out()]
    except (AttributeError, ValueError, TypeError):  # a transformer without names (derived features)
        names = []
    return names if len(names) == width else [f"#{index}" for index in range(width)]


def _neighbour_ties(trained: TrainedModel) -> int:
    """Test rows whose k-th and (k+1)-th nearest training neighbours are at the same distance."""
    estimator = trained.pipeline.steps[-1][1]
    if not hasattr(estimator, "kneighbors") or not hasattr(estimator, "n_neighbors"):
        return 0
    k = int(estimator.n_neighbors)
    if k + 1 > getattr(estimator, "n_samples_fit_", 0):
        return 0
    features = trained.pipeline[:-1].transform(trained.test_frame)
    distances, _ = estimator.kneighbors(features, n_neighbors=k + 1)
    return int(np.sum(np.isclose(distances[:, k - 1], distances[:, k], rtol=1e-6, atol=1e-9)))


def check_parity(report: ParityReport, classification: bool, *, metadata: dict[str, Any]) -> None:
    if report.within_tolerance and report.label_disagreements == 0:
        return
    details = (
        f"parity on {report.rows} rows ({report.train_rows} training, {report.test_rows} test; "
        f"{report.train_failures} and {report.test_failures} of them off):\n"
        f"  - max |sklearn - onnx| = {report.max_abs_diff:.3g} (tolerance {report.tolerance:g}"
        f"{', relative to |value| above 1' if not classification else ''})\n"
        f"  - label agreement = {report.label_agreement:.2%}"
        + (f", {report.label_disagreements} row(s) disagree without a tie" if report.label_disagreements else "")
        + (f"\n  - diagnosis: {report.diagnosis}" if report.diagnosis else "")
    )
    message = "ONNX and scikit-learn disagree beyond [export].parity_tolerance"
    raise QualityGateError(message, details=details, metadata=metadata)
