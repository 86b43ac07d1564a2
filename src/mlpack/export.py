"""scikit-learn pipeline → ONNX with mlpack metadata, and the ONNX-vs-scikit-learn parity check."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType

from mlpack.config import FeaturesSection
from mlpack.errors import ExternalError, QualityGateError
from mlpack.runtime import Model
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


def feature_metadata(features: FeaturesSection, input_names: dict[str, str]) -> list[dict[str, str]]:
    numeric = [{"name": p, "input": input_names[p], "kind": "numeric", "dtype": "float32"} for p in features.numeric]
    categorical = [
        {"name": p, "input": input_names[p], "kind": "categorical", "dtype": "string"} for p in features.categorical
    ]
    return [*numeric, *categorical]


def to_onnx(trained: TrainedModel, features: list[dict[str, str]], *, opset: int, graph_name: str) -> onnx.ModelProto:
    initial_types = [
        (f["input"], FloatTensorType([None, 1]) if f["kind"] == "numeric" else StringTensorType([None, 1]))
        for f in features
    ]
    estimator = trained.pipeline.steps[-1][1]
    # A plain probability tensor instead of ZipMap: faster, and readable by Triton and ORT-web clients.
    options = {id(estimator): {"zipmap": False}} if trained.classes is not None else None
    try:
        model = convert_sklearn(trained.pipeline, initial_types=initial_types, target_opset=opset, options=options)
    except Exception as exc:  # skl2onnx raises bare RuntimeError/TypeError/etc. for unconvertible models
        raise ExternalError(f"skl2onnx could not convert the pipeline: {type(exc).__name__}: {exc}") from None
    # skl2onnx names the graph with a random UUID; a fixed name keeps builds byte-identical.
    model.graph.name = graph_name
    return model


@dataclass(frozen=True)
class ParityReport:
    rows: int
    max_abs_diff: float
    tolerance: float
    within_tolerance: bool
    label_agreement: float  # share of test rows where labels (or values, within tolerance) agree
    # Disagreeing labels where scikit-learn's top two probabilities are not tied: a real disagreement.
    # (At an exact tie, float32 rounding may pick the other class; that is not a conversion error.)
    label_disagreements: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parity_report(trained: TrainedModel, model: Model, tolerance: float) -> ParityReport:
    """Compare scikit-learn with the ONNX model run through the wheel's own runtime on the test split.

    The check is |sklearn - onnx| <= tolerance * max(1, |sklearn|): absolute for probabilities,
    relative for regression values above 1, where float32 cannot be closer than about 6e-8 × |value|.
    """
    labels, probabilities, _ = model.run(trained.test_columns)
    if trained.classes is not None:
        expected = trained.pipeline.predict_proba(trained.test_frame)
        actual = np.asarray(probabilities, dtype=np.float64)
        agree = np.asarray(labels) == trained.pipeline.predict(trained.test_frame)
        agreement = float(np.mean(agree))
        top_two = np.sort(expected, axis=1)[:, -2:]
        tied = (top_two[:, 1] - top_two[:, 0]) <= 2 * tolerance
        disagreements = int(np.sum(~agree & ~tied))
    else:
        expected = trained.pipeline.predict(trained.test_frame).astype(np.float64)
        actual = np.asarray(labels, dtype=np.float64)
        agreement = float(np.mean(np.isclose(actual, expected, rtol=tolerance, atol=tolerance)))
        disagreements = 0
    difference = np.abs(actual - expected)
    within = bool(np.all(difference <= tolerance * np.maximum(1.0, np.abs(expected))))
    return ParityReport(
        rows=len(expected),
        max_abs_diff=float(difference.max()) if difference.size else 0.0,
        tolerance=tolerance,
        within_tolerance=within,
        label_agreement=round(agreement, 6),
        label_disagreements=disagreements,
    )


def check_parity(report: ParityReport, classification: bool) -> None:
    if report.within_tolerance and report.label_disagreements == 0:
        return
    details = (
        f"parity on {report.rows} test rows:\n"
        f"  - max |sklearn - onnx| = {report.max_abs_diff:.3g} (tolerance {report.tolerance:g}"
        f"{', relative to |value| above 1' if not classification else ''})\n"
        f"  - label agreement = {report.label_agreement:.2%}"
        + (f", {report.label_disagreements} row(s) disagree without a tie" if report.label_disagreements else "")
    )
    raise QualityGateError("ONNX and scikit-learn disagree beyond [export].parity_tolerance", details=details)


def with_metadata(model: onnx.ModelProto, metadata: dict[str, Any]) -> bytes:
    """The ONNX file's bytes with the metadata in metadata_props: one JSON document, plus flat keys for viewers."""
    del model.metadata_props[:]
    entries = {METADATA_KEY: json.dumps(metadata, sort_keys=True)}
    entries.update(
        {key: value if isinstance(value, str) else json.dumps(value, sort_keys=True) for key, value in metadata.items()}
    )
    onnx.helper.set_model_props(model, entries)
    model.doc_string = metadata.get("description", "")
    return model.SerializeToString(deterministic=True)
