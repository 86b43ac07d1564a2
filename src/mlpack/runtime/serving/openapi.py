"""The OpenAPI 3.1 document served at /openapi.json."""

from __future__ import annotations

from typing import Any, Dict, Optional

from ..settings import Limits
from .served import ServedModel

FLOAT32_MAX = 3.4028234663852886e38  # numbers are float32 in the graph: anything past this is a 422
# How a record gives each kind of input in JSON, exactly as the runtime takes it (a schemathesis run
# with --checks all sends what this allows and what it forbids, and compares the answers).
_TYPES: Dict[str, Any] = {
    "numeric": {"type": ["number", "null"], "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX},
    "categorical": {"type": ["string", "number", "boolean", "null"]},
    # ISO 8601 text or Extended JSON {"$date": ...}
    "datetime": {"type": ["string", "object", "null"]},
    "text": {"type": ["string", "null"]},
}


def openapi_document(model: ServedModel, limits: Optional[Limits] = None) -> Dict[str, Any]:
    """The OpenAPI 3.1 description of the routes, with the model's record schema nested as in its documents.

    No field is required: an absent one is a missing value, imputed as in training (?strict=true
    refuses it instead). A parent (`billing` of `billing.method`) is not typed: anything but an
    object reads as all its fields absent, as in the source documents.
    """
    max_records = getattr(limits, "max_records", 10_000)
    # POST /feedback takes exactly what /predict answers: a class (as JSON types it), or a number.
    regression = model.task == "regression"
    feedback_label = {"type": "number"} if regression else {"enum": list(model.classes or [])}
    record: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": True}
    for feature in model.features:
        node = record
        for part in feature.parts[:-1]:  # nested as in the source documents
            node = node["properties"].setdefault(part, {"properties": {}})
        kind = _TYPES.get(feature.kind, {"type": ["string", "number", "boolean", "null"]})
        node["properties"][feature.parts[-1]] = {**kind, "description": f"{feature.kind} feature {feature.name}"}
    label = {"type": "string"} if any(isinstance(c, str) for c in (model.classes or [])) else {"type": "number"}
    response: dict[str, Any] = {
        "type": "object",
        "required": ["id", "predictions", "model"],
        "properties": {
            "id": {"type": "string", "description": "this prediction's id, for POST /feedback"},
            "predictions": {"type": "array", "items": label},
            "model": {"type": "object", "properties": {"name": {"type": "string"}, "version": {"type": "string"}}},
        },
    }
    if model.probabilities:
        response["properties"]["probabilities"] = {
            "type": "array",
            "items": {"type": "array", "items": {"type": "number"}},
        }
    error = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
    json_error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    errors = {  # what any JSON body may be answered before a route reads it
        "400": {"description": "not JSON, or nested more than 64 deep", **json_error},
        "411": {"description": "no Content-Length", **json_error},
        "413": {"description": "body, records or JSON elements over the limit", **json_error},
        "415": {
            "description": "a Content-Type other than application/json (or +json); none at all is read as JSON",
            **json_error,
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": model.name,
            "version": model.version,
            "description": model.metadata.get("description", ""),
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": 'Predict for one record, a list of records, or {"instances": [...]}',
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "anyOf": [
                                        {"$ref": "#/components/schemas/Record"},
                                        {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Record"},
                                            "minItems": 1,
                                            "maxItems": max_records,
                                        },
                                        {
                                            "type": "object",
                                            "required": ["instances"],
                                            "properties": {
                                                "instances": {
                                                    "type": "array",
                                                    "items": {"$ref": "#/components/schemas/Record"},
                                                    "minItems": 1,
                                                    "maxItems": max_records,
                                                }
                                            },
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "predictions",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Prediction"}}},
                        },
                        **errors,
                        "422": {
                            "description": "a field of the wrong type (or absent, with ?strict=true)",
                            **json_error,
                        },
                        "503": {"description": "loading, or busy with other large bodies: retry", **json_error},
                    },
                }
            },
            "/feedback": {
                "post": {
                    "summary": "The true outcome of an answered prediction, stored beside it in the inference log",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["id", "label"],
                                    "properties": {
                                        "id": {"type": "string", "minLength": 1, "maxLength": 64},
                                        "label": feedback_label,
                                        "index": {
                                            "type": "integer",
                                            "minimum": 0,
                                            "maximum": max_records - 1,
                                            "default": 0,
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": {"description": "stored beside the logged prediction"},
                        **errors,
                        "404": {
                            "description": "no logged prediction has this id, or its request held no record at index; "
                            "nothing stored",
                            **json_error,
                        },
                        "422": {"description": "a field is missing or of the wrong type", **json_error},
                        "501": {"description": "the inference log is off", **json_error},
                        "503": {"description": "the inference log did not take it: send it again", **json_error},
                    },
                }
            },
            "/healthz": {"get": {"summary": "liveness", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {
                "get": {
                    "summary": "readiness",
                    "responses": {"200": {"description": "ready"}, "503": {"description": "loading or draining"}},
                }
            },
            "/metadata": {
                "get": {"summary": "the model's metadata", "responses": {"200": {"description": "metadata"}}}
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text exposition format"}},
                }
            },
        },
        "components": {"schemas": {"Record": record, "Prediction": response, "Error": error}},
    }


__all__ = ["openapi_document"]
