"""A classifier's classes: as the data had them, by their [features].labels names, as class_weight keys.

`dataset` is a validated Dataset (its `target_kind`), `config` a Config (its `[features].labels`):
typed loosely here, as this layer sits below both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpack.errors import ConfigError
from mlpack.runtime import category_text


def class_value(code: Any, dataset: Any) -> Any:
    """A class as the data had it: the training code 1 of a boolean target is True."""
    return bool(code) if dataset.target_kind == "bool" else code


def class_names(codes: list[Any], dataset: Any, config: Any) -> list[Any]:
    """The classes as predict() returns them: as in the data, or by their [features].labels names."""
    labels = config.features.labels
    values = [class_value(code, dataset) for code in codes]
    if not labels:
        return values
    texts = [category_text(value) for value in values]
    unknown = [key for key in labels if key not in texts]
    if unknown:
        raise ConfigError(
            f"[features].labels names class {unknown[0]!r}, which is not in the data "
            f'(classes: {", ".join(texts)}; keys are the classes\' text, e.g. "0" or "true")'
        )
    unnamed = [text for text in texts if text not in labels]
    if unnamed:
        raise ConfigError(f"[features].labels has no name for class {unnamed[0]!r}: name every class or none")
    names = [labels[text] for text in texts]
    if len(set(names)) != len(names):
        raise ConfigError("[features].labels gives two classes the same name")
    return names


def with_class_weight_labels(
    params: dict[str, Any], target: np.ndarray, dataset: Any | None = None, config: Any | None = None
) -> dict[str, Any]:
    """`class_weight = { 0 = 1.0, 1 = 5.0 }`: TOML keys are strings, integer classes are not; map them.

    A key may be the class's canonical text ("1", "true") or, given the config, its [features].labels
    name. A key that names no class is a config error (scikit-learn's own message would not name the key).
    """
    weights = params.get("class_weight")
    if not isinstance(weights, dict):
        return params
    codes = np.unique(target).tolist()
    by_text: dict[str, Any] = {}
    for code in codes:
        by_text[category_text(class_value(code, dataset) if dataset is not None else code)] = code
    if dataset is not None and config is not None:
        by_text.update({str(name): code for code, name in zip(codes, class_names(codes, dataset, config))})
    mapped = {}
    for key, value in weights.items():
        text = key if isinstance(key, str) else category_text(key)
        if text not in by_text:
            known = ", ".join(by_text)
            raise ConfigError(f"class_weight names {key!r}, which is not a class of the target (classes: {known})")
        mapped[by_text[text]] = value
    return {**params, "class_weight": mapped}


__all__ = ["class_names", "class_value", "with_class_weight_labels"]
