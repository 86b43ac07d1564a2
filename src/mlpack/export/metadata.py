"""The model's metadata, built in ONE function from what the build knows.

The contract itself (`Metadata`, a TypedDict) is declared in the runtime, because every model
wheel carries it; this module fills it. A new key is added to the TypedDict first, then here;
readers use the typed keys (optional ones with `.get` or `in`), so mypy catches a misspelt key.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from importlib.metadata import version as installed_version
from typing import Any

import numpy as np
from bson import json_util
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

import mlpack
from mlpack.config import Config, PreprocessingSection
from mlpack.estimators import decision, has_probabilities
from mlpack.export.convert import derived_metadata, feature_metadata, input_metadata
from mlpack.export.parity import ParityReport
from mlpack.features.categories import kept_categories
from mlpack.runtime import MISSING_CATEGORY, MISSING_DATE, ClassShare, FeatureInfo, Metadata, ParityInfo
from mlpack.training.experiments import Experiment
from mlpack.training.train import TrainedModel, class_names
from mlpack.validate import Dataset


def tool_versions(opset: int) -> dict[str, Any]:
    return {
        "mlpack": mlpack.__version__,
        "scikit-learn": installed_version("scikit-learn"),
        "skl2onnx": installed_version("skl2onnx"),
        "onnx": installed_version("onnx"),
        "onnxruntime": installed_version("onnxruntime"),
        "opset": opset,
    }


# How a client in any language turns a document's values into the graph's inputs (README, "The
# graph's inputs"; examples/node-client follows it), with test vectors [value as Extended JSON, what
# it becomes] a client can check itself against. A change of the rule is a new version.
def inputs_contract() -> dict[str, Any]:
    return {
        "version": 1,
        "missing": {"float32": "NaN", "categorical": MISSING_CATEGORY, "text": "", "int64-ms": MISSING_DATE},
        "category_text": [
            [True, "true"],
            [False, "false"],
            [3, "3"],
            [{"$numberDouble": "3.0"}, "3"],
            [{"$numberDecimal": "3.00"}, "3"],
            [-0.0, "0"],
            [1e22, "10000000000000000000000"],
            [{"$numberLong": "9007199254740993"}, "9007199254740993"],
            [0.5, "0.5"],
            [{"$numberDecimal": "0.10"}, "0.1"],
            [0.0001, "0.0001"],
            [1e-05, "1e-05"],
            [-2.5e-07, "-2.5e-07"],
            ["3.0", "3.0"],
            ["04", "04"],
            [{"$oid": "65f0c0ffee00000000000001"}, "65f0c0ffee00000000000001"],
            [None, MISSING_CATEGORY],
            [{"$numberDouble": "NaN"}, MISSING_CATEGORY],
        ],
        "int64_ms": [
            ["2024-05-01", 1714521600000],
            ["2024-05-01T12:30:00Z", 1714566600000],
            ["2024-05-01T12:30:00", 1714566600000],
            ["2024-05-01T14:30:00.1239+02:00", 1714566600123],
            [{"$date": "2024-05-01T12:30:00Z"}, 1714566600000],
            [{"$date": {"$numberLong": "-1"}}, -1],
            [None, MISSING_DATE],
        ],
    }


def evaluation_metadata(config: Config) -> dict[str, Any]:
    """How the test split was made: `split` ("random", "time", "group" or "filter") and what it read."""
    evaluation = config.evaluation
    found: dict[str, Any] = {"test_size": evaluation.test_size, "seed": evaluation.seed, "split": evaluation.split}
    if evaluation.split_field:
        found["split_field"] = evaluation.split_field
    if evaluation.test_filter:
        found["test_filter"] = _as_json(evaluation.test_filter)
    if config.features.weight:  # the metrics (test split, folds, card, champion) are weighted by it
        found["weighted_by"] = config.features.weight
    return found


def build_metadata(
    config: Config,
    dataset: Dataset,
    *,
    version: str,
    created: datetime,
    input_names: dict[str, str],
    trained: TrainedModel,
    experiment: Experiment | None = None,
    heard: Sequence[str] = (),
) -> Metadata:
    """The model's metadata (README: "The metadata") once it is trained; `with_parity` and
    `with_baseline` add what is learnt later.
    `input_names`: feature path → ONNX input name, as the recipe settled them (names.onnx_input_names)."""
    source = config.source
    metadata: Metadata = {
        "name": config.model.name,
        "import_name": config.model.import_name,
        "version": version,
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "task": config.model.task,
        "description": config.model.description,
        "target": config.features.target,
        "features": feature_metadata(config.features, input_names),
        "estimator": {"class": config.estimator.class_path, "params": trained.params},
        "metrics": trained.metrics,
        "evaluation": evaluation_metadata(config),
        "data": {
            "database": source.database,
            "collection": source.collection,
            "filter": _as_json(source.filter),
            "limit": source.limit,
            "rows": dataset.rows,
            "sha256": dataset.fingerprint,
        },
        "versions": tool_versions(config.export.target_opset),
        "serve": dataclasses.asdict(config.serve),
        "warnings": [*dataset.warnings, *heard],  # the data's, then the libraries' (library_warnings.py)
        "inputs": input_metadata(config.features, input_names),
        "inputs_contract": inputs_contract(),
    }
    if dataset.feedback is not None:
        metadata["data"]["feedback"] = dataset.feedback.as_dict()
    if config.features.derived:
        metadata["derived"] = derived_metadata(config.features)
    if config.features.target_transform:
        metadata["target_transform"] = config.features.target_transform
    metadata["features"] = [
        _with_training_facts(entry, trained, config.preprocessing) for entry in metadata["features"]
    ]
    if trained.classes is not None:
        labels = class_names(trained.classes, dataset.target_kind, config.features.labels)
        metadata["classes"] = labels
        metadata["class_codes"] = list(trained.classes)
        metadata["class_balance"] = _class_balance(trained, labels)
        metadata["probabilities"] = has_probabilities(trained.pipeline)
    decided = decision.summary(trained.pipeline.steps[-1][1], metadata.get("classes"))
    if decided:
        metadata["decision"] = decided
    if experiment is not None:
        metadata["cv"] = experiment.cv_summary()
        summary = experiment.search_summary()
        if summary is not None:
            metadata["search"] = summary
    return metadata


def with_parity(metadata: Metadata, parity: ParityReport) -> Metadata:
    """The metadata with the parity check's report (a rejected build's record carries it too)."""
    return {**metadata, "parity": ParityInfo(**dataclasses.asdict(parity))}  # type: ignore[typeddict-item]


def with_baseline(metadata: Metadata, baseline: dict[str, Any]) -> Metadata:
    """The metadata with the drift baseline, which is computed with the exported model itself."""
    return {**metadata, "baseline": baseline}


def _with_training_facts(entry: FeatureInfo, trained: TrainedModel, preprocessing: PreprocessingSection) -> FeatureInfo:
    """Per feature: what a missing value becomes, how often it was missing, the categories the model
    tells apart (and how many training values share the "other" column): for a frequency or target
    encoding, every category its table holds, so `strict` accepts them. Never a text field's values:
    its vocabulary is in the graph, as the model needs it, and nowhere else."""
    column = trained.train_columns[entry["name"]]
    facts: FeatureInfo = {**entry}
    if entry["kind"] == "numeric":
        facts["missing"] = int(np.isnan(column).sum())
        facts["imputed"] = _imputed_values(trained.pipeline).get(entry["input"])
    elif entry["kind"] == "text":
        facts["missing"] = int(sum(1 for value in column.tolist() if not value))
    elif entry["kind"] == "categorical":
        counts = Counter(column.tolist())
        # MISSING_CATEGORY is one of the model's categories; it is counted as missing, not listed.
        if entry.get("encoding") in ("frequency", "target"):
            ranked = sorted(counts, key=lambda value: (-counts[value], str(value)))
            kept = [str(value) for value in ranked if counts[value] >= preprocessing.encoding_min_count]
        else:
            kept = kept_categories(column.tolist(), preprocessing.max_categories)
        facts["missing"] = counts.get(MISSING_CATEGORY, 0)
        facts["categories"] = {name: counts[name] for name in kept if name != MISSING_CATEGORY}
        others = len(column) - sum(counts[name] for name in kept)
        if others:
            facts["other"] = others
    else:  # dates: how many were missing
        facts["missing"] = int(np.sum(np.asarray(column) == MISSING_DATE))
    return facts


def _imputed_values(pipeline: Pipeline) -> dict[str, float | None]:
    """ONNX input name → what the graph fills in for a missing value: the fitted imputer's statistic as
    the float32 the graph holds (a float64 median is not one), found by type wherever it sits."""
    found: dict[str, float | None] = {}
    features = pipeline.named_steps.get("features")
    preprocessing = getattr(features, "preprocessing_", None)
    if preprocessing is None:
        return found
    for step in preprocessing.named_steps.values():
        if not isinstance(step, ColumnTransformer):
            continue
        for _name, transformer, columns in step.transformers_:
            inner = transformer.steps if isinstance(transformer, Pipeline) else [("", transformer)]
            for _, part in inner:
                # (A date's imputer fills its parts, not its column: those have no single value.)
                if (
                    isinstance(part, SimpleImputer)
                    and isinstance(columns, list)
                    and len(columns) == len(part.statistics_)
                ):
                    for column, value in zip(columns, part.statistics_.tolist()):
                        found[column] = None if value != value else float(str(np.float32(value)))  # shortest text of it
    return found


def _class_balance(trained: TrainedModel, names: list[Any]) -> list[ClassShare]:
    counts = Counter(trained.train_target.tolist())
    total = max(1, len(trained.train_target))
    assert trained.classes is not None
    return [
        {"label": name, "code": code, "count": counts[code], "share": round(counts[code] / total, 6)}
        for code, name in zip(trained.classes, names)
    ]


def _as_json(query: dict[str, Any]) -> Any:
    """A query (the config holds it parsed, as MongoDB takes it) in relaxed Extended JSON: its dates and
    ObjectIds survive as JSON."""
    return json.loads(json_util.dumps(query, json_options=json_util.RELAXED_JSON_OPTIONS))
