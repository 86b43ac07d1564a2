"""scikit-learn pipeline → ONNX with mlpack metadata, and the ONNX-vs-scikit-learn parity check."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx
from skl2onnx import convert_sklearn
from sklearn.pipeline import Pipeline

from mlpack.config import FeaturesSection
from mlpack.errors import ExternalError, QualityGateError
from mlpack.estimators import has_probabilities
from mlpack.features.converters import register as register_converters
from mlpack.features.graph import INPUT_TYPES, GraphFeatures, initial_types
from mlpack.runtime import FeatureInfo, InputInfo, Metadata, Model
from mlpack.train import TrainedModel

METADATA_KEY = "mlpack.metadata"


def onnx_input_names(paths: list[str]) -> dict[str, str]:
    """Feature path → ONNX input name. skl2onnx renames names holding dots, so mlpack does it first."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for path in paths:
        base = re.sub(r"\W", "_", path)
        if base[0].isdigit():
            base = f"f_{base}"
        name, n = base, 2
        while name in taken:  # "a.b" and "a_b" would otherwise collide
            name, n = f"{base}_{n}", n + 1
        taken.add(name)
        names[path] = name
    return names


_KIND_NAMES = {"number": "numeric", "category": "categorical", "date": "datetime", "text": "text"}


def input_metadata(features: FeaturesSection, input_names: dict[str, str]) -> list[InputInfo]:
    """Every graph input: the ONNX name, the document path it reads, its type (and mlpack's kind)."""
    entries: list[InputInfo] = []
    for path in features.inputs:
        kind = _KIND_NAMES[features.input_kind(path)]
        entries.append({"name": input_names[path], "path": path, "type": INPUT_TYPES[kind][0], "kind": kind})
    return entries


def feature_metadata(features: FeaturesSection, input_names: dict[str, str]) -> list[FeatureInfo]:
    """The listed features (name = document path); derived ones are under `derived`."""
    listed = [
        *[(p, "numeric") for p in features.numeric],
        *[(p, "categorical") for p in features.categorical],
        *[(p, "datetime") for p in features.datetime],
        *[(p, "text") for p in features.text],
    ]
    return [{"name": p, "input": input_names[p], "kind": kind, "dtype": INPUT_TYPES[kind][0]} for p, kind in listed]


def derived_metadata(features: FeaturesSection) -> list[dict[str, Any]]:
    return [{"name": e.name, "expression": e.text, "reads": [*e.fields, *e.uses]} for e in features.expressions]


def to_onnx(trained: TrainedModel, inputs: list[InputInfo], *, opset: int, graph_name: str) -> onnx.ModelProto:
    register_converters()  # mlpack's own transformers (derived features, dates, text, target transform)
    features: GraphFeatures = trained.pipeline.named_steps["features"]
    estimator = trained.pipeline.steps[-1][1]
    # The very preprocessing the estimator was trained through, with the estimator's nodes after it.
    exported = Pipeline([*features.preprocessing_.steps, ("estimator", estimator)])
    probabilities = trained.classes is not None and has_probabilities(estimator)
    options = {id(estimator): dict(trained.spec.converter_options)} if trained.classes is not None else None
    target_opset: int | dict[str, int] = opset
    if trained.spec.ml_opset is not None:
        target_opset = {"": opset, "ai.onnx.ml": trained.spec.ml_opset}
    try:
        model = convert_sklearn(
            exported,
            initial_types=initial_types([(entry["name"], entry["kind"]) for entry in inputs]),
            target_opset=target_opset,
            options=options,
        )
    except Exception as exc:  # skl2onnx raises bare RuntimeError/TypeError/etc. for unconvertible models
        raise ExternalError(f"skl2onnx could not convert the pipeline: {_short(exc)}") from None
    if trained.classes is not None and not probabilities:
        # Its second output holds decision scores, not probabilities: the graph answers labels only.
        _keep_outputs(model, [model.graph.output[0].name])
    if trained.spec.sum_in_double:
        _sum_trees_in_double(model)
    # skl2onnx names the graph with a random UUID, and lists opset domains in the order of a Python
    # set (which changes with the hash seed): a fixed name and a sorted list keep builds byte-identical.
    model.graph.name = graph_name
    domains = sorted(model.opset_import, key=lambda entry: entry.domain)
    del model.opset_import[:]
    model.opset_import.extend(domains)
    return model


def _short(exc: BaseException) -> str:
    """An exception in one line: skl2onnx's messages can hold every attribute of a node (megabytes)."""
    lines = str(exc).strip().splitlines() or [""]
    text = f"{type(exc).__name__}: {lines[0][:300]}{' ...' if len(lines) > 1 or len(lines[0]) > 300 else ''}"
    return f"{text} (caused by {_short(exc.__cause__)})" if exc.__cause__ is not None else text


def _sum_trees_in_double(model: onnx.ModelProto) -> None:
    """Make each TreeEnsembleRegressor add its trees in double precision.

    A boosted ensemble's prediction is a sum of many terms that can be far larger than the result
    (a base score of 2,000 and leaves of ±500 giving 1.0): onnxruntime sums in the type of the
    thresholds, and in float32 that sum is off by a few units of the terms' last place, which the
    parity check (relative to the result) rejects. With the thresholds and weights as double
    tensors (ai.onnx.ml 3) and the node's input cast to double, onnxruntime sums in double; the
    output stays float32. Measured on 1,000 documents, defaults: GradientBoostingRegressor
    1.8e-4 -> 4.6e-5, HistGradientBoostingRegressor 2.3e-4 -> 7.9e-5 (relative, float -> double).
    """
    from onnx import helper, numpy_helper

    for domain in model.opset_import:
        if domain.domain == "ai.onnx.ml" and domain.version < 3:
            domain.version = 3  # the *_as_tensor attributes; older ai.onnx.ml ops are unchanged by it
    for node in list(model.graph.node):
        if node.op_type != "TreeEnsembleRegressor":
            continue
        attributes = {attribute.name: attribute for attribute in node.attribute}
        for name in ("nodes_values", "target_weights", "base_values"):
            if name in attributes:
                values = np.asarray(helper.get_attribute_value(attributes[name]), dtype=np.float64)
                node.attribute.remove(attributes[name])
                tensor = numpy_helper.from_array(values, name=f"{name}_as_tensor")
                node.attribute.append(helper.make_attribute(f"{name}_as_tensor", tensor))
        source = node.input[0]
        cast = helper.make_node(
            "Cast", [source], [f"{source}_as_double"], to=onnx.TensorProto.DOUBLE, name=f"{node.name}_cast"
        )
        node.input[0] = f"{source}_as_double"
        model.graph.node.insert(list(model.graph.node).index(node), cast)


def _keep_outputs(model: onnx.ModelProto, names: list[str]) -> None:
    """Drop the graph's other outputs and the nodes that only they needed."""
    kept = [output for output in model.graph.output if output.name in names]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    needed = set(names)
    nodes = []
    for node in reversed(model.graph.node):
        if needed.intersection(node.output):
            nodes.append(node)
            needed.update(node.input)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    used = needed | {i for node in model.graph.node for i in node.input}
    initializers = [tensor for tensor in model.graph.initializer if tensor.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(initializers)


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


def parity_report(trained: TrainedModel, model: Model, tolerance: float) -> ParityReport:
    """Compare scikit-learn with the ONNX model, run through the wheel's own runtime, on every row:
    the training rows and the test split (a model that ships must agree on what it learnt from too).

    The check is |sklearn - onnx| <= tolerance * max(1, |sklearn|): absolute for probabilities,
    relative for regression values above 1, where float32 cannot be closer than about 6e-8 × |value|.
    """
    train = _compare(trained, model, trained.train_columns, trained.train_frame, tolerance)
    test = _compare(trained, model, trained.test_columns, trained.test_frame, tolerance)
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
        diagnosis="" if within and disagreements == 0 else _diagnose(trained, max_diff),
        train_rows=len(train.agree),
        test_rows=len(test.agree),
        train_failures=train.failures,
        test_failures=test.failures,
    )


def _compare(
    trained: TrainedModel, model: Model, columns: dict[str, np.ndarray], frame: Any, tolerance: float
) -> _Comparison:
    labels, probabilities, _ = model.run(columns)
    none = np.zeros(len(labels), dtype=bool)
    if trained.classes is not None and probabilities is None:
        # Labels only (LinearSVC): every disagreement counts, as there are no probabilities to show a tie.
        agree = np.asarray(labels) == trained.pipeline.predict(frame)
        return _Comparison(np.zeros(len(labels)), none, ~agree, agree)
    if trained.classes is not None:
        expected = trained.pipeline.predict_proba(frame)
        actual = np.asarray(probabilities, dtype=np.float64).reshape(expected.shape)
        # The runtime answers with the classes as users see them (True, label names): compare those.
        as_user = dict(zip(trained.classes, model.classes or trained.classes))
        sklearn_labels = [as_user[code] for code in trained.pipeline.predict(frame).tolist()]
        agree = np.array([a == b and type(a) is type(b) for a, b in zip(labels, sklearn_labels)], dtype=bool)
        top_two = np.sort(expected, axis=1)[:, -2:]
        tied = (top_two[:, 1] - top_two[:, 0]) <= 2 * tolerance
        gaps = np.abs(actual - expected)
        beyond = np.any(gaps > tolerance * np.maximum(1.0, np.abs(expected)), axis=1)
        return _Comparison(gaps.max(axis=1, initial=0.0), beyond, ~agree & ~tied, agree)
    expected = trained.pipeline.predict(frame).astype(np.float64)
    actual = np.asarray(labels, dtype=np.float64)
    difference = np.abs(actual - expected)
    beyond = difference > tolerance * np.maximum(1.0, np.abs(expected))
    return _Comparison(difference, beyond, none, np.isclose(actual, expected, rtol=tolerance, atol=tolerance))


FLOAT32_NOISE = 1e-3  # differences this small come from float32 arithmetic, not from a different model


def _diagnose(trained: TrainedModel, max_diff: float) -> str:
    """Say what kind of disagreement it is, so the user knows whether to loosen, change or report."""
    ties = _neighbour_ties(trained)
    if ties:
        return (
            f"ties: {ties} of {len(trained.test_frame)} test rows have equidistant k-th and (k+1)-th neighbours, "
            "which scikit-learn and onnxruntime break differently; use another estimator"
        )
    if max_diff <= FLOAT32_NOISE:
        return (
            f"float precision: the largest difference ({max_diff:.2g}) is float32 rounding (ONNX computes in "
            "float32); raise [export].parity_tolerance if it is acceptable"
        )
    return (
        f"a real disagreement ({max_diff:.3g}, far beyond float32 rounding): the ONNX graph computes something "
        "else than scikit-learn; please report it with the estimator and its params"
    )


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


def check_parity(report: ParityReport, classification: bool) -> None:
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
    raise QualityGateError("ONNX and scikit-learn disagree beyond [export].parity_tolerance", details=details)


def with_metadata(model: onnx.ModelProto, metadata: Metadata) -> bytes:
    """The ONNX file's bytes with the metadata in metadata_props: one JSON document, plus flat keys for viewers."""
    del model.metadata_props[:]
    entries = {METADATA_KEY: json.dumps(metadata, sort_keys=True)}
    entries.update(
        {key: value if isinstance(value, str) else json.dumps(value, sort_keys=True) for key, value in metadata.items()}
    )
    onnx.helper.set_model_props(model, entries)
    model.doc_string = metadata["description"]
    return model.SerializeToString(deterministic=True)
