"""The model as the server sees it: a `Protocol`, so that the server never depends on `Model` itself.

The server is handed its model (`serve(model, settings)`), and everything it reads of it is named
here, checked by mypy: `runtime.Model` is one (the assignment under TYPE_CHECKING below proves it),
and a test double or another runtime can be one too without inheriting anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

try:
    from typing import Protocol
except ImportError:  # pragma: no cover - Python < 3.8
    Protocol = object  # type: ignore[assignment]

# `observe(feeds, labels)`: what an observer (drift tracking) is called with for each run.
Observe = Callable[[Dict[str, np.ndarray], List[Any]], object]
# Labels (or values), class probabilities (classification; None otherwise), and whether one record came in.
Run = Tuple[List[Any], Optional[List[List[float]]], bool]


class ServedFeature(Protocol):
    """One input of the model: its path in a record, its ONNX input name, its kind."""

    @property
    def name(self) -> str: ...

    @property
    def input(self) -> str: ...

    @property
    def kind(self) -> str: ...  # "numeric", "categorical", "datetime" or "text"

    @property
    def parts(self) -> Tuple[str, ...]: ...  # the path split at dots, for the OpenAPI schema's nesting


class ServedModel(Protocol):
    """What the routes, the metrics, drift tracking and the inference log read of the model."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def task(self) -> str: ...  # "classification" or "regression"

    @property
    def classes(self) -> Optional[List[Any]]: ...

    @property
    def probabilities(self) -> bool: ...  # whether a classifier gives class probabilities

    @property
    def features(self) -> Sequence[ServedFeature]: ...

    @property
    def metadata(self) -> Mapping[str, Any]: ...

    def load(self) -> object:
        """Make the onnxruntime session now, before the server accepts connections."""

    def run(self, data: Any, observe: Optional[Observe] = None, strict: bool = False) -> Run:
        """Records or columns in; raises ValueError naming the field a client got wrong."""
        ...

    # What the batcher uses: reading a request (as run does), and the graph on many requests' feeds.
    def feeds(self, data: Any, strict: bool = False) -> Tuple[Dict[str, np.ndarray], bool]:
        """The ONNX feeds of records or columns, and whether one record came in; ValueError as run."""
        ...

    def outputs(self, feeds: Mapping[str, np.ndarray]) -> Tuple[List[Any], Optional[List[List[float]]]]:
        """Labels (or values) and class probabilities, a row each; a row's do not depend on the others."""
        ...

    def rows(self, data: Any) -> Optional[List[Any]]:
        """`data` as a list of records when it is records, else None (columns)."""
        ...


if TYPE_CHECKING:  # mypy: the runtime's own Model is a ServedModel (a missing attribute fails here)
    from ..model import Model

    def _is_served(model: Model) -> ServedModel:
        return model


__all__ = ["Observe", "Run", "ServedFeature", "ServedModel"]
