"""The model's HTTP server (SPEC §5): the standard library, numpy and onnxruntime only.

Copied whole into every model wheel (as `MODEL/_serving/`), like the runtime: it imports nothing
from mlpack (only itself, relatively) and takes the model as an argument. Layers, bottom up:

    wire.py           requests, answers, client errors, JSON in and out, limits (shared by all)
    metrics.py        Prometheus counters in shared memory (totals across workers), observers
    drift_tracking.py the observer for per-feature data quality and drift (drift.py beside _serving)
    inference_log.py  requests and predictions to MongoDB, off the request path
    openapi.py, v2.py the OpenAPI document; the Open Inference Protocol v2 routes
    app.py            routes → model; answers and counts every request
    framing.py        request heads by RFC 9112 (as strict as h11)
    bodies.py         request bodies: a byte budget for those in memory, a minimum rate
    http.py           HTTP/1.1 connections on asyncio; takes a handler, never imports the app
    workers.py        serve(): processes, signals, the command-line options
"""

from .app import App
from .http import HttpServer
from .inference_log import InferenceLog
from .metrics import Metrics
from .wire import ClientError, Limits, Request, Response
from .workers import add_serve_arguments, serve, serve_args

__all__ = [
    "App",
    "ClientError",
    "HttpServer",
    "InferenceLog",
    "Limits",
    "Metrics",
    "Request",
    "Response",
    "add_serve_arguments",
    "serve",
    "serve_args",
]
