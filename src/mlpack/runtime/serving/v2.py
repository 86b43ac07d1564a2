"""Open Inference Protocol v2 (KServe / Triton clients): metadata, readiness and inference routes."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Dict, List, Tuple

from . import binary
from .ids import new_id
from .wire import Answer, ClientError, Request, Response, dump_json, parse_json, require_json

if TYPE_CHECKING:
    from .app import App

_DATATYPES = {"numeric": "FP32", "categorical": "BYTES", "datetime": "INT64", "text": "BYTES"}


def _ok(document: Any) -> Response:
    return Response(200, dump_json(document))


class OpenInference:
    """The v2 routes of one model; `app` gives readiness, limits, the model run and the inference log."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.model = app.model

    def routes(self) -> Dict[Tuple[str, str], Any]:
        model = f"/v2/models/{self.model.name}"
        versioned = f"{model}/versions/{self.model.version}"
        return {
            ("GET", "/v2"): lambda _: _ok(self.server_metadata()),
            ("GET", "/v2/health/live"): lambda _: _ok({"live": True}),
            ("GET", "/v2/health/ready"): self.app.readiness,
            ("GET", model): lambda _: _ok(self.model_metadata()),
            ("GET", versioned): lambda _: _ok(self.model_metadata()),
            ("GET", f"{model}/ready"): self.app.readiness,
            ("GET", f"{versioned}/ready"): self.app.readiness,
            ("POST", f"{model}/infer"): self.infer,
            ("POST", f"{versioned}/infer"): self.infer,
        }

    def server_metadata(self) -> Dict[str, Any]:
        version = self.model.metadata.get("versions", {}).get("mlpack", "")
        return {"name": "mlpack", "version": version, "extensions": ["binary_tensor_data"]}

    def _label_type(self) -> str:
        classes = self.model.classes or []
        if classes and all(isinstance(c, bool) for c in classes):
            return "BOOL"
        return "BYTES" if any(isinstance(c, str) for c in classes) else "INT64"

    def model_metadata(self) -> Dict[str, Any]:
        if self.model.task == "classification":
            width = len(self.model.classes or [])
            outputs = [
                {"name": "label", "datatype": self._label_type(), "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, width]},
            ][: 2 if self.model.probabilities else 1]  # a classifier without probabilities: labels only
        else:
            outputs = [{"name": "variable", "datatype": "FP32", "shape": [-1]}]
        return {
            "name": self.model.name,
            "versions": [self.model.version],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": f.name, "datatype": _DATATYPES[f.kind], "shape": [-1, 1]} for f in self.model.features],
            "outputs": outputs,
        }

    # -- inference ------------------------------------------------------------------------------
    def infer(self, request: Request) -> Answer:
        """One input tensor per feature (by its path or its ONNX input name); others are ignored.

        Tensors come as JSON `data` or, with the binary extension, as raw bytes after the JSON header.
        """
        self.app.require_ready()
        header_length = request.headers.get(binary.HEADER)
        require_json(request.headers, binary=header_length is not None)
        if header_length is None:
            header, raw = request.body, memoryview(b"")
        else:
            header, raw = binary.split(request.body, header_length)
        body = parse_json(header, self.app.limits.max_values)
        if not isinstance(body, Mapping) or not isinstance(body.get("inputs"), list):
            raise ClientError(400, 'expected {"inputs": [{"name", "shape", "datatype", "data"}, ...]}')
        columns = self._columns(body["inputs"], raw)
        rows = len(next(iter(columns.values()), ()))  # each column's, or the runtime names the one that differs
        later = self.app.batched(request, columns, None, rows, False, 400, partial(self._inferred, body, columns))
        if later is not None:
            return later
        labels, probabilities, _ = self.app.run(columns, invalid=400)
        return self._inferred(body, columns, labels, probabilities)

    def _inferred(
        self, body: Mapping[str, Any], columns: Dict[str, Any], labels: List[Any], probabilities: Any
    ) -> Response:
        prediction_id = new_id()
        outputs = self._requested(body, self._outputs(labels, probabilities))  # first: a refused request is not logged
        if self.app.inference_log is not None:
            self.app.inference_log.record(self.model, "v2/infer", columns, labels, prediction_id)
        answer: Dict[str, Any] = {
            # The protocol echoes the client's own id; without one, the id /feedback takes.
            "id": body["id"] if isinstance(body.get("id"), str) else prediction_id,
            "model_name": self.model.name,
            "model_version": self.model.version,
        }
        return self._answer(answer, outputs, len(labels))

    def _columns(self, tensors: List[Any], raw: memoryview) -> Dict[str, Any]:
        features = {f.name: f for f in self.model.features}
        features.update({f.input: f for f in self.model.features})
        columns: Dict[str, Any] = {}
        offset = 0
        for index, tensor in enumerate(tensors):
            if not isinstance(tensor, Mapping) or not isinstance(tensor.get("name"), str):
                raise ClientError(400, f"inputs[{index}] must be an object with a name")
            parameters = tensor.get("parameters")
            size = parameters.get("binary_data_size") if isinstance(parameters, Mapping) else None
            if size is not None:  # its data is the next `size` bytes after the JSON header
                if type(size) is not int or size < 0 or offset + size > len(raw):
                    raise ClientError(400, f"input '{tensor['name']}': binary_data_size does not fit the body")
                data = binary.decode(tensor, raw[offset : offset + size], tensor["name"], self.app.limits.max_records)
                offset += size
            else:
                data = self._values(tensor)
            feature = features.get(tensor["name"])
            if feature is None:
                continue  # inputs the model does not use are ignored, as in /predict
            if feature.kind == "datetime" and tensor.get("datatype") == "INT64":
                # An INT64 tensor holds milliseconds since 1970 UTC, as the graph does (JSON has no date):
                # Extended JSON's {"$date": <ms>} says so to the runtime, which checks each value.
                data = [{"$date": value} if type(value) is int else value for value in data]
            columns[feature.name] = data
        if offset != len(raw):
            raise ClientError(400, f"{len(raw) - offset} bytes of binary data belong to no input")
        missing = [f.name for f in self.model.features if f.name not in columns]
        if missing:
            raise ClientError(400, f"missing input '{missing[0]}'")
        return columns

    @staticmethod
    def _requested(body: Mapping[str, Any], outputs: List[Dict[str, Any]]) -> List[Tuple[Dict[str, Any], bool]]:
        """The outputs the request asks for, each with whether it wants its data in binary."""
        parameters = body.get("parameters")
        default = isinstance(parameters, Mapping) and parameters.get("binary_data_output") is True
        asked = body.get("outputs")
        if asked is None or asked == []:  # none named: all of them, as Triton answers
            return [(output, default) for output in outputs]
        if not isinstance(asked, list) or not all(
            isinstance(a, Mapping) and isinstance(a.get("name"), str) for a in asked
        ):
            raise ClientError(400, 'expected "outputs": [{"name": "<an output name>"}, ...]')
        by_name = {output["name"]: output for output in outputs}
        chosen, seen = [], set()
        for request in asked:
            name = request["name"]
            if name not in by_name:
                raise ClientError(400, f"no output '{name[:40]}': this model has {sorted(by_name)}")
            if name in seen:  # one output in the answer twice: which one would binary_data_size describe?
                raise ClientError(400, f"output '{name[:40]}' is asked for more than once")
            seen.add(name)
            parameters = request.get("parameters")
            wanted = parameters.get("binary_data", default) if isinstance(parameters, Mapping) else default
            chosen.append((by_name[name], wanted is True))
        return chosen

    @staticmethod
    def _answer(answer: Dict[str, Any], outputs: List[Tuple[Dict[str, Any], bool]], count: int) -> Response:
        chunks, described = [], []
        for output, in_binary in outputs:
            if in_binary:  # a copy: the header must describe exactly the chunks that follow it
                chunk = binary.encode(output["datatype"], output["data"])
                output = {key: value for key, value in output.items() if key != "data"}
                output["parameters"] = {"binary_data_size": len(chunk)}
                chunks.append(chunk)
            described.append(output)
        answer["outputs"] = described
        header = dump_json(answer)
        if not chunks:
            return Response(200, header, predictions=count)
        headers = (("Inference-Header-Content-Length", str(len(header))),)
        return Response(200, header + b"".join(chunks), "application/octet-stream", headers, predictions=count)

    def _values(self, tensor: Mapping[str, Any]) -> List[Any]:
        name, data = tensor["name"], tensor.get("data")
        if not isinstance(data, list):
            raise ClientError(400, f"input '{name}': data must be a list")
        if data and isinstance(data[0], list):  # [[v], [v]] for shape [n, 1]
            if not all(isinstance(row, list) and len(row) == 1 for row in data):
                raise ClientError(400, f"input '{name}': expected shape [n, 1]")
            data = [row[0] for row in data]
        limit = self.app.limits.max_records
        if len(data) > limit:
            raise ClientError(413, f"input '{name}': {len(data)} rows is over the limit of {limit}")
        return data

    def _outputs(self, labels: List[Any], probabilities: Any) -> List[Dict[str, Any]]:
        count = len(labels)
        if self.model.task != "classification":
            return [{"name": "variable", "datatype": "FP32", "shape": [count], "data": labels}]
        label = {"name": "label", "datatype": self._label_type(), "shape": [count], "data": labels}
        if probabilities is None:  # a classifier without probabilities (LinearSVC)
            return [label]
        width = len(probabilities[0]) if probabilities else 0
        return [
            label,
            {
                "name": "probabilities",
                "datatype": "FP32",
                "shape": [count, width],
                "data": [p for row in probabilities for p in row],
            },
        ]


__all__ = ["OpenInference"]
