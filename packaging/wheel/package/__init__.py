"""A model packaged by mlpack: predictions with onnxruntime and numpy only.

`predict`, `predict_proba`, `predict_batches`, `classes`, `metadata` and `__version__` are the
package's API; the onnxruntime session is created on the first prediction and shared by all threads.
"""

import json as _json
import pkgutil as _pkgutil
from pathlib import Path as _Path

from ._runtime import Model

_HERE = _Path(__file__).resolve().parent

if (_HERE / "model.onnx").is_file():
    metadata = _json.loads((_HERE / "metadata.json").read_text(encoding="utf-8"))
    model = Model(_HERE / "model.onnx", metadata)
else:  # imported from a zip (the wheel itself, e.g. shipped with Spark's addPyFile): read via the loader
    metadata = _json.loads(_pkgutil.get_data(__name__, "metadata.json") or b"{}")
    model = Model(_pkgutil.get_data(__name__, "model.onnx") or b"", metadata)

__version__ = metadata["version"]
classes = model.classes
predict = model.predict
predict_proba = model.predict_proba


def predict_batches(frames):
    """pandas DataFrames in, each with `prediction` (and `probabilities`) added, out: Spark's
    `mapInPandas` shape. A module function, so Spark ships it by name and imports this package on
    each executor."""
    return model.predict_batches(frames)


__all__ = ["Model", "classes", "metadata", "model", "predict", "predict_batches", "predict_proba", "__version__"]
