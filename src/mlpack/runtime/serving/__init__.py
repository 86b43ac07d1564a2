"""The model's HTTP server: the standard library, numpy and onnxruntime only.

Part of the runtime, copied whole into every model wheel (as `MODEL/_runtime/serving/`): it imports
only itself and the runtime beside it (`..settings`, `..drift`), and takes the model as an argument,
typed as the `served.ServedModel` protocol. Layers, bottom up:

    served.py         the model as the server sees it (a Protocol)
    wire.py           requests, answers, client errors, JSON in and out (limits: ..settings.Limits)
    metrics.py        Prometheus counters in shared memory (totals across workers), observers
    drift_window.py   recent records per feature in bins (..drift.Profile), for /metrics
    drift_tracking.py the observer for per-feature data quality and drift
    inference_log.py  requests and predictions to MongoDB, off the request path
    batching.py       requests that arrive together share one onnxruntime call; its /metrics
    openapi.py, v2.py the OpenAPI document; the Open Inference Protocol v2 routes
    app.py            routes → model (directly, or queued in the batcher); answers and counts every request
    framing.py        request heads by RFC 9112 (as strict as h11)
    bodies.py         request bodies: a byte budget for those in memory, a minimum rate
    connection.py     one connection as an asyncio.Protocol: the usual request answered inline
    http.py           the server: accepting, idle and room, a turn's answers written together, draining;
                      takes a handler, never the app
    workers.py        serve(): processes, signals, the command-line options (..settings.ServeSettings)
"""

from .app import App
from .http import HttpServer
from .inference_log import InferenceLog
from .metrics import Metrics
from .served import ServedModel
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
    "ServedModel",
    "add_serve_arguments",
    "serve",
    "serve_args",
]
