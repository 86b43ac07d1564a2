"""The OpenAPI 3.1 document served at /openapi.json."""

from __future__ import annotations

from typing import Any, Dict

# How a record gives each kind of input in JSON (dates: ISO 8601 or Extended JSON {"$date": ...}).
_TYPES: Dict[str, Any] = {
    "numeric": {"type": ["number", "null"]},
    "datetime": {"type": ["string", "object", "null"]},
    "text": {"type": ["string", "null"]},
}


def openapi_document(model: Any) -> Dict[str, Any]:
    """The OpenAPI 3.1 description of the routes, with the model's record schema nested as in its documents."""
    record: dict[str, Any] = {"type": "object", "properties": {}, "required": [], "additionalProperties": True}
    for feature in model.features:
        node = record
        for part in feature.parts[:-1]:  # nested as in the source documents
            child = node["properties"].setdefault(part, {"type": "object", "properties": {}, "required": []})
            if part not in node["required"]:
                node["required"].append(part)
            node = child
        kind = _TYPES.get(feature.kind, {"type": ["string", "number", "null"]})
        node["properties"][feature.parts[-1]] = {**kind, "description": f"{feature.kind} feature {feature.name}"}
        node["required"].append(feature.parts[-1])
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
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Record"},
                                        {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Record"},
                                            "minItems": 1,
                                        },
                                        {
                                            "type": "object",
                                            "required": ["instances"],
                                            "properties": {
                                                "instances": {
                                                    "type": "array",
                                                    "items": {"$ref": "#/components/schemas/Record"},
                                                    "minItems": 1,
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
                        "400": {"description": "malformed JSON", **json_error},
                        "413": {"description": "body too large", **json_error},
                        "422": {"description": "a field is missing or of the wrong type", **json_error},
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
                                        "id": {"type": "string"},
                                        "label": {"type": ["string", "number", "boolean"]},
                                        "index": {"type": "integer", "minimum": 0, "default": 0},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": {"description": "accepted: written to the inference log shortly"},
                        "422": {"description": "a field is missing or of the wrong type", **json_error},
                        "501": {"description": "the inference log is off", **json_error},
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
