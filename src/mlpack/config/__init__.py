"""`mlpack.toml` → a frozen, typed `Config`.

Each section is a dataclass; its fields and type hints are the schema. One generic reader checks
keys and types against them, so a new option is one new field, and every error names the key.
"""

from __future__ import annotations

from mlpack.config.read import find_config_file, load_config, parse_config, with_version
from mlpack.config.sections import (
    CONFIG_FILE,
    Config,
    EarlyStoppingSection,
    EstimatorSection,
    EvaluationSection,
    ExportSection,
    FeaturesSection,
    FeedbackSection,
    ImageSection,
    ModelSection,
    MonitorSection,
    PreprocessingSection,
    RegistrySection,
    SearchSection,
    ServeSection,
    SignSection,
    SourceSection,
    Task,
)

__all__ = [
    "CONFIG_FILE",
    "Config",
    "EarlyStoppingSection",
    "EstimatorSection",
    "EvaluationSection",
    "ExportSection",
    "FeaturesSection",
    "FeedbackSection",
    "ImageSection",
    "ModelSection",
    "MonitorSection",
    "PreprocessingSection",
    "RegistrySection",
    "SearchSection",
    "ServeSection",
    "SignSection",
    "SourceSection",
    "Task",
    "find_config_file",
    "load_config",
    "parse_config",
    "with_version",
]
