"""The metadata contract: the typed keys every model's metadata has, and the one check of them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, List, Optional, TypedDict

import numpy as np

MISSING_CATEGORY = "__missing__"  # what a missing categorical becomes, in training and here alike
FLOAT32_MAX = float(np.finfo(np.float32).max)


# -- the metadata contract -----------------------------------------------------------------------
# Declared here (the runtime ships in every wheel) and built in one function at build time
# (mlpack.metadata.build_metadata). Helpers that add a key add it here first. Keys under
# `total=False` may be absent (older models, rejected builds); read them with `.get` or `in`.
# Python 3.9 has no NotRequired, hence a required base and an optional subclass per dict.


class _FeatureRequired(TypedDict):
    name: str  # the document path, e.g. "billing.monthly_charges"
    input: str  # the ONNX input it feeds, e.g. "billing_monthly_charges"
    kind: str  # "numeric" | "categorical"
    dtype: str  # "float32" | "string"


class FeatureInfo(_FeatureRequired, total=False):
    imputed: Optional[float]  # numeric: the value a missing one becomes (the training median)
    missing: int  # documents of the training split without a value
    categories: Dict[str, int]  # categorical: the categories the model tells apart (canonical text) → training count
    other: int  # categorical: training values rarer than those, sharing one "other" column


class InputInfo(TypedDict):
    """One input of the ONNX graph (derived features read several fields, dates and text have their own)."""

    name: str  # the ONNX input
    path: str  # the document path it reads
    type: str  # the tensor type, e.g. "float32", "int64", "string"
    kind: str  # "numeric" | "categorical" | "datetime" | "text"


class ClassShare(TypedDict):
    label: Any  # the class as predict() returns it (bool, int, str or its [features].labels name)
    code: Any  # what the ONNX graph emits for it
    count: int  # training-split documents
    share: float


class DataInfo(TypedDict):
    database: str
    collection: str
    filter: Any
    limit: int
    rows: int
    sha256: str


# "class" is a Python keyword, so this one uses the functional syntax.
EstimatorInfo = TypedDict("EstimatorInfo", {"class": str, "params": Dict[str, Any]})


class ParityInfo(TypedDict, total=False):
    rows: int
    max_abs_diff: float
    tolerance: float
    within_tolerance: bool
    label_agreement: float
    label_disagreements: int
    diagnosis: str
    train_rows: int
    test_rows: int
    train_failures: int
    test_failures: int


class _MetadataRequired(TypedDict):
    name: str
    import_name: str
    version: str
    created: str  # UTC, ISO 8601
    task: str  # "classification" | "regression"
    description: str
    target: str
    features: List[FeatureInfo]
    estimator: EstimatorInfo
    evaluation: Dict[str, Any]
    data: DataInfo
    versions: Dict[str, Any]
    serve: Dict[str, Any]


class Metadata(_MetadataRequired, total=False):
    inputs: List[InputInfo]  # what the graph is fed; absent in models built before derived features
    inputs_contract: Dict[str, Any]  # how any client turns values into inputs (README), with test vectors
    derived: List[Dict[str, Any]]  # [features.derived]: name, expression, the fields it reads
    target_transform: str  # regression: "log1p" | "log" | "sqrt", undone in the graph
    metrics: Dict[str, float]
    parity: ParityInfo
    classes: List[Any]  # as predict() returns them: booleans stay booleans, labels by their names
    class_codes: List[Any]  # what the ONNX graph emits, in the same order (int or str)
    class_balance: List[ClassShare]
    probabilities: bool  # False: a classifier that gives labels only (LinearSVC); absent: it gives them
    warnings: List[str]  # data warnings found at build (not fatal)
    baseline: Dict[str, Any]  # the training distributions drift is measured against (mlpack.drift)
    cv: Dict[str, Any]  # cross-validation summary on the training split (mlpack.experiments)
    search: Dict[str, Any]  # hyper-parameter search summary: space, trials, best params (mlpack.experiments)


_REQUIRED_KEYS = {
    "name": str,
    "version": str,
    "task": str,
    "features": list,
}


def parse_metadata(document: Any) -> Metadata:
    """Check a metadata document read from a file: a ValueError naming what is wrong, never a KeyError later."""
    if not isinstance(document, Mapping):
        raise ValueError(f"not an mlpack model: its metadata is a {type(document).__name__}, not an object")
    for key, kind in _REQUIRED_KEYS.items():
        if key not in document:
            raise ValueError(f"not an mlpack model: its metadata has no '{key}'")
        if not isinstance(document[key], kind):
            raise ValueError(f"not an mlpack model: its metadata's '{key}' has the wrong shape")
    if document["task"] not in ("classification", "regression"):
        raise ValueError(f"the metadata's task {document['task']!r} is not classification or regression")
    for index, entry in enumerate(document["features"]):
        if not isinstance(entry, Mapping) or not all(isinstance(entry.get(k), str) for k in ("name", "input", "kind")):
            raise ValueError(f"the metadata's features[{index}] is not a feature (name, input, kind)")
    if document["task"] == "classification" and not isinstance(document.get("classes"), list):
        raise ValueError("the metadata of a classifier has no list of classes")
    return document  # type: ignore[return-value]
