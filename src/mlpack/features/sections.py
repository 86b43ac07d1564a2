"""[features] and [preprocessing]: the two tables of `mlpack.toml` the graph's features are made of.

They are read like every other table (config/read.py checks keys and types against these fields and
hints; `mlpack.config` re-exports both), but they live here, beside the transformers, because the
feature pipeline (features/pipeline.py) is assembled from them and the layer below config may not
import config.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

from mlpack.features.expressions import Expression, Kind, input_fields, parse_derived


@dataclass(frozen=True)
class FeaturesSection:
    target: str
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    weight: str = ""  # a per-document sample weight used in training; not a model input
    datetime: list[str] = field(default_factory=list)  # BSON dates → date parts, in the graph
    text: list[str] = field(default_factory=list)  # free text → TF-IDF of words, in the graph
    derived: dict[str, str] = field(default_factory=dict)  # name → expression (mlpack.features.expressions)
    target_transform: Literal["", "log1p", "log", "sqrt"] = ""  # regression: fit on f(target)
    # Names for the classes, keyed by the class's canonical text ("0", "true"): predictions use them.
    labels: dict[str, str] = field(default_factory=dict)
    drop_missing_target: bool = False  # leave out (and count) documents whose target is missing
    # Categoricals encoded by their position in a declared order (field → categories, lowest first).
    ordinal: dict[str, list[str]] = field(default_factory=dict)
    # How other categoricals become numbers: "onehot" (the default), "frequency" or "target" (field → encoding).
    encoding: dict[str, Literal["onehot", "frequency", "target"]] = field(default_factory=dict)
    # Fields the split reads ([evaluation].split_field, test_filter's): loaded, never model inputs.
    split_fields: tuple[str, ...] = field(default=(), metadata={"internal": True})

    @property
    def declared_kinds(self) -> dict[str, Kind]:
        """The kind of every field a [features] list names, as the expression language calls them."""
        kinds: dict[str, Kind] = {path: "number" for path in self.numeric}
        kinds.update({path: "category" for path in self.categorical})
        kinds.update({path: "date" for path in self.datetime})
        kinds.update({path: "text" for path in self.text})
        return kinds

    @functools.cached_property
    def expressions(self) -> list[Expression]:
        """[features.derived], parsed and checked (an ExpressionError, exit 2, names the feature)."""
        return parse_derived(self.derived, self.declared_kinds)

    @property
    def expression_fields(self) -> dict[str, Kind]:
        """Fields only the expressions read (no list names them), with the kind their use gives them."""
        declared = self.declared_kinds
        return {path: kind for path, kind in input_fields(self.expressions).items() if path not in declared}

    @property
    def inputs(self) -> list[str]:
        """Every document path the model reads: the inputs of its ONNX graph, in order."""
        return [*self.numeric, *self.categorical, *self.datetime, *self.text, *self.expression_fields]

    def input_kind(self, path: str) -> Kind:
        return {**self.expression_fields, **self.declared_kinds}[path]

    @property
    def loaded(self) -> list[str]:
        """Every document path a build reads, once each: the inputs, the target, and the weight if any
        (a weight or target that an expression also reads is loaded once, or its values would shift)."""
        weight = [self.weight] if self.weight else []
        return list(dict.fromkeys([*self.inputs, self.target, *weight, *self.split_fields]))


@dataclass(frozen=True)
class PreprocessingSection:
    numeric_impute: Literal["median", "mean", "constant"] = "median"
    numeric_fill_value: float = 0.0  # with numeric_impute = "constant"
    scale: Literal["auto", "standard", "robust", "none"] = "auto"  # auto: only scale-sensitive estimators
    max_categories: int = 50  # rarer categories share one "other" column
    text_max_words: int = 1000  # vocabulary cap per text field (words and two-word phrases)
    text_ngrams: int = 2  # words: 1 = single words only, 2 = and two-word phrases
    text_stop_words: Literal["", "english"] | list[str] = ""  # words that are no term (nor part of a phrase)
    text_min_df: int = 1  # a term must be in at least this many training documents
    text_chars: list[int] = field(default_factory=list)  # [lo, hi]: character n-grams instead of words
    # [features].encoding "frequency" / "target": a category seen in fewer training documents has no value
    # of its own (it is encoded as an unseen one), so no single document's label is written into the model.
    encoding_min_count: int = 2
    target_folds: int = 5  # "target": the training rows are encoded out of fold, in this many folds
