"""The binary tensor data extension of the Open Inference Protocol (what tritonclient sends by default).

A request or answer is a JSON header of `Inference-Header-Content-Length` bytes, then the raw data
of each tensor whose `parameters.binary_data_size` says how many bytes it takes, in tensor order:
numbers little-endian in row-major order, BOOL one byte each, BYTES each as a 4-byte little-endian
length and the bytes themselves.
"""

from __future__ import annotations

import struct
from typing import Any, List, Optional, Tuple

import numpy as np

from .wire import ClientError, header_size

HEADER = "inference-header-content-length"
_NUMPY = {
    "BOOL": "?",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
_LENGTH = struct.Struct("<I")


def split(body: Optional[bytes], header_length: str) -> Tuple[bytes, memoryview]:
    """The JSON header and the binary data after it."""
    if body is None:
        raise ClientError(411, "a Content-Length header is required")
    cut = header_size(header_length)
    if cut is None or cut > len(body):
        raise ClientError(400, f"Inference-Header-Content-Length {header_length[:20]!r} does not fit the body")
    return body[:cut], memoryview(body)[cut:]


def elements(shape: Any, name: str) -> int:
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ClientError(400, f"input '{name}': shape must be a list of sizes")
    count = 1
    for size in shape:
        count *= size
    return count


def decode(tensor: Any, raw: memoryview, name: str, limit: int) -> List[Any]:
    """One input's values, flat, from its binary data."""
    datatype, count = tensor.get("datatype"), elements(tensor.get("shape"), name)
    if count > limit:
        raise ClientError(413, f"input '{name}': {count} values is over the limit of {limit}")
    if datatype == "BYTES":
        return _strings(raw, count, name)
    if not isinstance(datatype, str) or datatype not in _NUMPY:  # a list or an object is no datatype either
        raise ClientError(400, f"input '{name}': datatype {str(datatype)[:20]!r} is not supported")
    dtype = np.dtype(_NUMPY[datatype])
    if len(raw) != count * dtype.itemsize:
        raise ClientError(400, f"input '{name}': {len(raw)} bytes of data for {count} {datatype} values")
    return np.frombuffer(raw, dtype=dtype).tolist()  # type: ignore[no-any-return]


def _strings(raw: memoryview, count: int, name: str) -> List[Any]:
    values, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ClientError(400, f"input '{name}': BYTES data ends inside an element's length")
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise ClientError(400, f"input '{name}': a BYTES element runs past the data")
        try:
            values.append(bytes(raw[offset : offset + size]).decode("utf-8"))
        except UnicodeDecodeError:
            raise ClientError(400, f"input '{name}': BYTES element {len(values)} is not UTF-8 text") from None
        offset += size
    if len(values) != count:
        raise ClientError(400, f"input '{name}': {len(values)} BYTES elements for a shape of {count}")
    return values


def encode(datatype: str, values: List[Any]) -> bytes:
    """An output's values as binary data."""
    if datatype == "BYTES":
        encoded = [str(value).encode("utf-8") for value in values]
        return b"".join(_LENGTH.pack(len(item)) + item for item in encoded)
    return np.asarray(values, dtype=_NUMPY[datatype]).tobytes()


__all__ = ["HEADER", "decode", "encode", "split"]
