"""KServe v2 requests as bytes, built once per target, for the engine to send (gRPC and HTTP alike).

gRPC: a serialized `inference.ModelInferRequest` (model name, the input tensors' name, datatype and shape,
the requested `probabilities` output, the tensors' bytes in `raw_input_contents`), the bytes tritonclient's
`service_pb2` message gives for the same request (the tests check it). HTTP: the whole HTTP/1.1 request with
the binary tensor extension, the JSON header as tritonclient's `generate_request_body` writes it followed
by the tensors' bytes. Written here, a few lines each, so that neither the runner nor the engine imports
grpcio or tritonclient to build them.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from loadtest.prepare import OUTPUT, RequestData

#: The KServe v2 gRPC method (tritonclient.grpc.service_pb2_grpc names the same path).
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"

_DATATYPES = {
    np.dtype(np.int64): "INT64",
    np.dtype(np.int32): "INT32",
    np.dtype(np.float32): "FP32",
    np.dtype(np.object_): "BYTES",
}


def datatype(array: np.ndarray) -> str:
    """The KServe v2 datatype of an input array (int64, int32, float32, or bytes objects)."""
    try:
        return _DATATYPES[array.dtype]
    except KeyError:
        raise ValueError(f"no KServe datatype for {array.dtype}") from None


def tensor_bytes(array: np.ndarray) -> bytes:
    """The tensor's bytes: little-endian values in C order, BYTES as a 4-byte length before each element."""
    if array.dtype == np.object_:
        return b"".join(struct.pack("<I", len(item)) + item for item in array.reshape(-1))
    return np.ascontiguousarray(array).tobytes()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def grpc_request(model: str, request: RequestData) -> bytes:
    """The serialized ModelInferRequest of one prebuilt request."""
    message = _field(1, model.encode())
    for name, array in request.inputs.items():
        shape = b"".join(_varint(d) for d in array.shape)
        tensor = _field(1, name.encode()) + _field(2, datatype(array).encode()) + _field(3, shape)
        message += _field(5, tensor)
    message += _field(6, _field(1, OUTPUT.encode()))
    for array in request.inputs.values():
        message += _field(7, tensor_bytes(array))
    return message


def http_request(url: str, model: str, request: RequestData) -> bytes:
    """The whole HTTP request (head and body) of one prebuilt request."""
    inputs, tensors = [], []
    for name, array in request.inputs.items():
        data = tensor_bytes(array)
        tensors.append(data)
        inputs.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": datatype(array),
                "parameters": {"binary_data_size": len(data)},
            }
        )
    outputs = [{"name": OUTPUT, "parameters": {"binary_data": True}}]
    header = json.dumps({"inputs": inputs, "outputs": outputs}, separators=(",", ":")).encode()
    body = header + b"".join(tensors)
    head = (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {url}\r\n"
        f"Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {len(header)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def payloads(protocol: str, url: str, model: str, requests: list[RequestData]) -> list[bytes]:
    """Every request's bytes for `protocol` (grpc or http)."""
    if protocol == "grpc":
        return [grpc_request(model, r) for r in requests]
    return [http_request(url, model, r) for r in requests]
