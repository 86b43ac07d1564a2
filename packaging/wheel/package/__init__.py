"""A model packaged by mlpack: predictions with onnxruntime and numpy only.

`predict`, `predict_proba`, `predict_batches`, `classes`, `metadata` and `__version__` are the package's API; the
onnxruntime session is created on the first prediction and shared by all threads.
"""

import json as _json
from pathlib import Path as _Path

from ._runtime import Model

_HERE = _Path(__file__).resolve().parent

metadata = _json.loads((_HERE / "metadata.json").read_text(encoding="utf-8"))
model = Model(_HERE / "model.onnx", metadata)

__version__ = metadata["version"]
classes = model.classes
predict = model.predict
predict_proba = model.predict_proba
predict_batches = model.predict_batches  # pandas DataFrames in and out (Spark mapInPandas, Dask)

__all__ = ["Model", "classes", "metadata", "model", "predict", "predict_batches", "predict_proba", "__version__"]
