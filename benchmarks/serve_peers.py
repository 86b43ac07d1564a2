"""The servers `serve.py` measures mlpack against, each serving the same model with the same runtime.

Starlette on uvicorn[standard] and BentoML load the same `.onnx` into `mlpack.runtime.Model` (the
wheel's runtime: the same feeds, the same onnxruntime session options), so what differs is the HTTP
stack and the batching around the model. MLflow serves the scikit-learn pipeline, as its users would.

BentoML pins its own stack, so it runs from a virtual environment of its own, which `bentoml_venv`
makes on first use (pip from the package index, about a minute) and reuses after that.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

# The latest BentoML 1.x when this peer was written; pinned so that reruns compare like with like.
# uvicorn[standard] gives it uvloop and httptools, as the Starlette peer has: BentoML's own
# requirements stop at plain uvicorn (asyncio + h11), which would flatter mlpack.
BENTOML_REQUIREMENTS = ("bentoml==1.4.40", "uvicorn[standard]==0.55.0")
# Its longest wait for a batch to fill; BentoML's default (60 s) made its first requests wait up to
# 2 s each while its optimizer learned. Its batches are bounded by requests, ours by records: with
# single-record requests the two bounds are the same number.
BENTOML_MAX_LATENCY_MS = 100
BENTOML_MAX_BATCH = 64

STARLETTE_APP = """
import json, sys
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
sys.path.insert(0, {src!r})
from mlpack.runtime import Model
model = Model({onnx!r}, json.load(open({meta!r}))).load()

async def predict(request):
    try:
        body = await request.json()
        labels, probabilities, _ = model.run(body)
    except ValueError as exc:
        return JSONResponse({{"error": str(exc)}}, status_code=422)
    return JSONResponse({{"predictions": labels, "probabilities": probabilities,
                         "model": {{"name": model.name, "version": model.version}}}})

async def ready(request):
    return JSONResponse({{"ready": True}})

app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", ready)])
"""

# A batchable API as BentoML's adaptive batching guide writes one: a list in, a list out, the
# dispatcher concatenating the lists of concurrent requests (one record each) into one call.
BENTOML_SERVICE = """
import json, sys
from typing import Any, Dict, List
import bentoml
sys.path.insert(0, {src!r})
from mlpack.runtime import Model


@bentoml.service(workers=1, logging={{"access": {{"enabled": False}}}})
class Churn:
    def __init__(self) -> None:
        self.model = Model({onnx!r}, json.load(open({meta!r}))).load()

    @bentoml.api(batchable=True, max_batch_size={batch}, max_latency_ms={latency})
    def predict(self, records: List[Dict[str, Any]], /) -> List[Dict[str, Any]]:
        labels, probabilities, _ = self.model.run(records)
        return [{{"prediction": label, "probabilities": row}} for label, row in zip(labels, probabilities)]
"""

MLFLOW_SAVE = """
import pickle, sys, mlflow.sklearn
pipeline = pickle.load(open(sys.argv[1], "rb"))
mlflow.sklearn.save_model(pipeline, sys.argv[2], serialization_format="cloudpickle")
"""


def bentoml_venv(venv: Path) -> Path:
    """The `bentoml` command of `venv`, made (BENTOML_REQUIREMENTS, and this interpreter's own
    onnxruntime and numpy, so both sides run the same model code) if it is not there yet."""
    command = venv / "bin" / "bentoml"
    if command.exists():
        return command
    print(f"making BentoML's environment in {venv} (once; about a minute)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    same = [f"{name}=={metadata.version(name)}" for name in ("onnxruntime", "numpy")]
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", *BENTOML_REQUIREMENTS, *same],
        check=True,
    )
    return command


def bentoml_service(folder: Path, src: Path, onnx: Path, meta: Path) -> None:
    """service.py in `folder`, for `bentoml serve service:Churn --working-dir folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    text = BENTOML_SERVICE.format(
        src=str(src), onnx=str(onnx), meta=str(meta), batch=BENTOML_MAX_BATCH, latency=BENTOML_MAX_LATENCY_MS
    )
    (folder / "service.py").write_text(text)


__all__ = [
    "BENTOML_REQUIREMENTS",
    "MLFLOW_SAVE",
    "STARLETTE_APP",
    "bentoml_service",
    "bentoml_venv",
]
