"""A model project on disk: the churn example's mlpack.toml, and small edits to it."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

CHURN_CONFIG = """
[model]
name = "churn-model"
version = "1.0.0"
task = "classification"
description = "Which subscribers will cancel next month"

[source]
uri_env = "MLPACK_TEST_URI"
database = "{database}"
collection = "customers"

[features]
numeric = ["tenure_months", "billing.monthly_charges", "support_calls"]
categorical = ["contract", "billing.method"]
target = "label"

[estimator]
class = "sklearn.ensemble.RandomForestClassifier"
params = {{ n_estimators = 30, random_state = 0 }}

[evaluation]
test_size = 0.25
seed = 0
gates = {{ accuracy = 0.6 }}
"""


@dataclass
class Project:
    path: Path
    database: str
    uri: str

    @property
    def config(self) -> Path:
        return self.path / "mlpack.toml"

    def write_config(self, text: str) -> None:
        self.config.write_text(textwrap.dedent(text).format(database=self.database), encoding="utf-8")

    def edit(self, old: str, new: str) -> None:
        text = self.config.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in config"
        self.config.write_text(text.replace(old, new, 1), encoding="utf-8")
