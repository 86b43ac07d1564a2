"""The one check of a model's metadata, derived from the contract's TypedDicts: the runtime's (what a
model needs to predict) and the artifact readers' (a finished build) are the same rules."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mlpack.artifacts.read import check_metadata as artifact_check
from mlpack.errors import ConfigError
from mlpack.runtime.contract import BUILT_KEYS, PREDICT_KEYS, check_metadata


@pytest.fixture(scope="module")
def metadata(built_model: Any) -> dict[str, Any]:
    return dict(built_model.metadata)


def test_a_real_build_passes_both_levels(metadata: dict[str, Any]) -> None:
    assert check_metadata(metadata, built=True) is metadata
    assert artifact_check(metadata, "m.whl") is metadata


@pytest.mark.parametrize("key", [*PREDICT_KEYS, *BUILT_KEYS])
def test_each_key_a_build_has_is_named_when_it_is_missing(metadata: dict[str, Any], key: str) -> None:
    broken = {k: v for k, v in metadata.items() if k != key}
    with pytest.raises(ConfigError, match=f"m.whl is not an mlpack model: its metadata has no '{key}'"):
        artifact_check(broken, "m.whl")
    if key in PREDICT_KEYS:
        with pytest.raises(ValueError, match=f"has no '{key}'"):
            check_metadata(broken)
    else:
        check_metadata(broken)  # a model predicts without it (older or rejected builds)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("data", "rows"), "many"),  # DataInfo.rows: int
        (("features", 0, "kind"), 3),  # FeatureInfo.kind: str
        (("features", 0, "imputed"), "median"),  # Optional[float]
        (("estimator", "params"), []),  # Dict[str, Any]
        (("metrics", "accuracy"), True),  # a bool is not a number
        (("parity", "max_abs_diff"), None),
    ],
)
def test_a_value_of_the_wrong_type_anywhere_names_its_top_key(
    metadata: dict[str, Any], path: tuple[Any, ...], value: Any
) -> None:
    broken = copy.deepcopy(metadata)
    node: Any = broken
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=f"its metadata's '{path[0]}' has the wrong shape"):
        artifact_check(broken, "m.whl")
