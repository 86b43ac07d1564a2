"""The metadata contract: the typed keys every model's metadata has, and the one check of them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, List, Optional, TypedDict, Union, get_args, get_origin, get_type_hints

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
    encoding: str  # categorical, when not one-hot: "ordinal", "frequency" or "target" ([features].encoding)


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


class _DataRequired(TypedDict):
    database: str
    collection: str
    filter: Any
    limit: int
    rows: int  # every training document, the feedback rows included
    sha256: str


class DataInfo(_DataRequired, total=False):
    # [source.feedback]: where from, the window, how many rows (the last ones) and their own sha256
    feedback: Dict[str, Any]


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
    # How the model decides ([estimator]): calibration, threshold (and the metric it was chosen for),
    # positive_class, early_stopping (rounds, validation_fraction, iterations kept). Absent: as fitted.
    decision: Dict[str, Any]


# -- the one check of a metadata document, derived from the TypedDicts above ----------------------
# Every reader needs these to predict; a finished build's artifact (what inspect, serve, monitor
# and the card read) has the others too. Each value is checked against its TypedDict annotation.
PREDICT_KEYS = ("name", "version", "task", "features")
BUILT_KEYS = ("created", "target", "metrics", "estimator", "data", "parity", "versions")
_PARITY_NEEDED = ("max_abs_diff", "label_agreement")  # ParityInfo is total=False; a build always has these


def _conforms(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the shape of a type annotation (TypedDict, List, Dict, Optional, scalars)."""
    if hint is Any:
        return True
    origin = get_origin(hint)
    if origin is Union:
        return any(_conforms(value, option) for option in get_args(hint))
    if origin in (list, List):
        (item,) = get_args(hint) or (Any,)
        return isinstance(value, list) and all(_conforms(v, item) for v in value)
    if origin in (dict, Dict):
        key, item = get_args(hint) or (str, Any)
        return isinstance(value, dict) and all(_conforms(k, key) and _conforms(v, item) for k, v in value.items())
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):  # JSON numbers: an integral float reads as int, an int is a float
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type) and issubclass(hint, dict) and hasattr(hint, "__required_keys__"):  # a TypedDict
        if not isinstance(value, dict) or not all(k in value for k in hint.__required_keys__):
            return False
        fields = get_type_hints(hint)
        return all(_conforms(value[k], fields[k]) for k in fields if k in value)
    return isinstance(value, hint) if isinstance(hint, type) else True


def check_metadata(document: Any, *, built: bool = False) -> Metadata:
    """The one check of a metadata document read from a file: a ValueError that names the key at fault,
    never a KeyError later. `built`: also the keys of a finished build (PREDICT_KEYS, then BUILT_KEYS)."""
    if not isinstance(document, Mapping):
        raise ValueError(f"not an mlpack model: its metadata is {type(document).__name__}, not an object")
    fields = get_type_hints(Metadata)
    for key in PREDICT_KEYS + (BUILT_KEYS if built else ()):
        if key not in document:
            raise ValueError(f"not an mlpack model: its metadata has no '{key}'")
        if not _conforms(document[key], fields[key]) or (key == "name" or key == "version") and not document[key]:
            raise ValueError(f"not an mlpack model: its metadata's '{key}' has the wrong shape")
    if document["task"] not in ("classification", "regression"):
        raise ValueError(f"the metadata's task {document['task']!r} is not classification or regression")
    if built and not all(isinstance(document["parity"].get(k), (int, float)) for k in _PARITY_NEEDED):
        raise ValueError("not an mlpack model: its metadata's 'parity' has the wrong shape")
    if document["task"] == "classification" and not isinstance(document.get("classes"), list):
        raise ValueError("the metadata of a classifier has no list of classes")
    return document  # type: ignore[return-value]


def parse_metadata(document: Any) -> Metadata:
    """The check every model runs on its own metadata (the keys needed to predict)."""
    return check_metadata(document)
