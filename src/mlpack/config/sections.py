"""The sections of `mlpack.toml`: one frozen dataclass each, whose fields and type hints are the schema.

[features] and [preprocessing] are defined in features/sections.py, beside the pipeline made of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlpack import names
from mlpack.errors import ConfigError
from mlpack.features.sections import FeaturesSection, PreprocessingSection

CONFIG_FILE = "mlpack.toml"
Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class ModelSection:
    name: str
    task: Task
    version: str = "auto"
    description: str = ""

    @property
    def import_name(self) -> str:
        return names.import_name(self.name)


@dataclass(frozen=True)
class FeedbackSection:
    """[source.feedback]: the logged requests that received feedback, added to the training documents."""

    enabled: bool = True
    database: str = ""  # default: [serve].inference_log_database, where the server writes its log
    collection: str = ""  # default: [serve].inference_log_collection
    uri_env: str = ""  # default: the [source] connection; else the variable holding the log's
    since: str = ""  # requests logged from: ISO 8601, or a duration before the build (30d); default: all
    until: str = ""  # and before; default: no end


@dataclass(frozen=True)
class SourceSection:
    database: str
    collection: str
    uri_env: str = "MONGODB_URI"
    filter: dict[str, Any] = field(default_factory=dict)
    limit: int = 0
    seed: str = ""
    embedded: bool = False
    feedback: FeedbackSection | None = None


@dataclass(frozen=True)
class EarlyStoppingSection:
    """[estimator.early_stopping]: boosting stops when a held-out part of the training rows stops improving."""

    rounds: int = 10  # iterations without improvement on the validation set before it stops
    validation_fraction: float = 0.1  # of the rows each fit is given (seeded; stratified for a classifier)


@dataclass(frozen=True)
class EstimatorSection:
    class_path: str = field(metadata={"key": "class"})
    params: dict[str, Any] = field(default_factory=dict)
    calibration: Literal["", "sigmoid", "isotonic"] = ""  # CalibratedClassifierCV on 5 held-out folds
    threshold: float = math.nan  # binary: predict positive_class when its probability is at least this
    threshold_metric: str = ""  # binary: the threshold that maximises this metric on held-out folds
    positive_class: str = ""  # binary: the class the threshold is for (its text); default: the second class
    early_stopping: EarlyStoppingSection | None = None
    # Give the estimator the graph's float32 features as they are: half the memory of the features,
    # float32 arithmetic in its fit. Only for one whose fit keeps float32 (the catalogue's `float32`).
    float32: bool = False

    @property
    def decides(self) -> bool:
        """A decision threshold of its own (fixed, or chosen for a metric)."""
        return not math.isnan(self.threshold) or bool(self.threshold_metric)


@dataclass(frozen=True)
class EvaluationSection:
    test_size: float = 0.2
    seed: int = 0
    metrics: list[str] = field(default_factory=list)  # empty: the task's defaults
    gates: dict[str, float] = field(default_factory=dict)
    cv: int = 0  # k-fold cross-validation on the training split; 0 = none
    split: Literal["random", "time", "group", "filter"] = "random"  # how the test documents are chosen
    split_field: str = ""  # time: a date field (the newest are the test split); group: kept in one split
    test_filter: dict[str, Any] = field(default_factory=dict)  # filter: a MongoDB query naming the test documents
    champion: str = ""  # an alias (production): its version is scored on the same test split (champion.py)
    champion_margin: float = math.nan  # nan: compare only; else the challenger must beat the champion by this
    champion_metric: str = ""  # the metric the margin is measured on; default: the first metric


@dataclass(frozen=True)
class SearchSection:
    """Hyper-parameter search over the estimator's params; every trial is logged."""

    params: dict[str, list[Any]]
    method: Literal["grid", "random"] = "grid"
    scoring: str = ""  # default: the first metric
    cv: int = 0  # folds; default: [evaluation].cv, else 3
    n_iter: int = 10  # random search: how many points of the space
    seed: int = 0  # random search's sampling, and the folds' shuffling


@dataclass(frozen=True)
class ExportSection:
    target_opset: int = 17
    parity_tolerance: float = 1e-4


@dataclass(frozen=True)
class ImageSection:
    base: str = "python:3.11-slim"
    port: int = 8080
    tag: str = ""  # default: NAME:VERSION
    python: str = ""  # the base image's Python ("3.11"); default: read from a python:X.Y base tag
    arch: str = ""  # x86_64 or aarch64; default: this machine's
    find_links: str = ""  # a local folder of wheels for the image's dependencies: no package index is asked
    builder: str = "mlpack"  # "mlpack": the image written with no engine; "docker": `docker build` of the context
    registry_ca: str = ""  # a PEM file (relative to the project): the CA of the base's registry
    plain_http: bool = False  # the base's registry answers plain HTTP, no TLS (a loopback or CI registry)

    def tag_for(self, name: str, version: str) -> str:
        tag = self.tag or f"{name.lower()}:{names.tag_text(version)}"
        problem = names.image_tag(tag)
        if problem is not None:  # only the default can fail here: a written tag was checked on load
            raise ConfigError(f"the image tag {tag!r} made from [model].name {problem}: set [image].tag")
        return tag


@dataclass(frozen=True)
class ServeSection:
    """Defaults baked into the model for its HTTP server; environment variables override them."""

    max_body_bytes: int = 10 * 1024 * 1024
    inference_log: bool = False
    inference_log_uri_env: str = "MLPACK_INFERENCE_LOG_URI"  # the URI itself never enters an artifact
    inference_log_database: str = "mlpack"
    inference_log_collection: str = "inference_log"
    drift_window: int = 1000  # recent records per worker that /metrics' drift figures cover; 0 = off
    # Adaptive batching (unset: the server's defaults): records in one onnxruntime call of
    # concurrent requests (1 = each request alone), and the longest a request waits for others.
    batch_max_records: int | None = None
    batch_wait_us: int | None = None

    def problem(self) -> str:
        """What is wrong with these values, as the one line a ConfigError says ("" if nothing)."""
        if self.max_body_bytes < 1024:
            return "[serve].max_body_bytes must be at least 1024"
        if self.drift_window < 0:
            return "[serve].drift_window must be 0 (off) or a number of records"
        if self.batch_max_records is not None and self.batch_max_records < 1:
            return "[serve].batch_max_records must be a positive integer (1: no batching)"
        if self.batch_wait_us is not None and self.batch_wait_us < 0:
            return "[serve].batch_wait_us must be 0 or a positive number of microseconds"
        return ""


@dataclass(frozen=True)
class RegistrySection:
    enabled: bool = True
    collection: str = "mlpack_models"
    experiments: str = "mlpack_experiments"  # the trials of cross-validation and search
    # Also keep each build's wheel and .onnx in the registry (GridFS), so NAME@ALIAS works without dist/.
    store_artifacts: bool = False


@dataclass(frozen=True)
class SignSection:
    """With a [sign] table, the build signs the model (model-signing) and its provenance (DSSE)."""

    key_env: str = "MLPACK_SIGNING_KEY"  # the environment variable holding the PEM private key
    key_file: str = ""  # or a PEM file (relative to the project); it wins over key_env
    password_env: str = ""  # the environment variable holding an encrypted key's password


@dataclass(frozen=True)
class MonitorSection:
    """`mlpack monitor`'s limits (its flags override them): above any, it exits 1 naming the feature."""

    threshold: float = 0.2  # PSI of a feature's (or the predictions') values against the training baseline
    missing_threshold: float = 0.1  # the live missing rate above the training one by more than this share
    unknown_threshold: float = 0.05  # a categorical's share of categories never seen in training

    def problem(self) -> str | None:
        """What is wrong with the limits, named by key: a PSI limit above 0, rates above 0 and at most 1."""
        for key, value, top, wanted in [
            ("threshold", self.threshold, math.inf, "a positive number"),
            ("missing_threshold", self.missing_threshold, 1.0, "a share above 0 and at most 1"),
            ("unknown_threshold", self.unknown_threshold, 1.0, "a share above 0 and at most 1"),
        ]:
            if not (0 < value <= top):  # NaN fails too
                return f"[monitor].{key} must be {wanted}, got {value}"
        return None


@dataclass(frozen=True)
class Config:
    model: ModelSection
    source: SourceSection
    features: FeaturesSection
    estimator: EstimatorSection
    preprocessing: PreprocessingSection = field(default_factory=PreprocessingSection)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    search: SearchSection | None = None
    export: ExportSection = field(default_factory=ExportSection)
    image: ImageSection = field(default_factory=ImageSection)
    serve: ServeSection = field(default_factory=ServeSection)
    registry: RegistrySection = field(default_factory=RegistrySection)
    monitor: MonitorSection = field(default_factory=MonitorSection)
    sign: SignSection | None = None  # no [sign] table: nothing is signed
    # Where the file was read from: relative paths (the seed) resolve against it.
    project_dir: Path = field(default=Path("."), metadata={"internal": True})
    path: Path = field(default=Path(CONFIG_FILE), metadata={"internal": True})
    image_configured: bool = field(default=False, metadata={"internal": True})  # an [image] table was written
