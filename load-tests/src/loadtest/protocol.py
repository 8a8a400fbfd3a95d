"""KServe v2 over gRPC and HTTP with prebuilt requests, for Triton and OVMS alike.

Both senders use tritonclient's protocol code: the gRPC messages of `tritonclient.grpc.service_pb2` and its
`InferResult`, the HTTP request body of `InferenceServerClient.generate_request_body` and its response parser.
Requests are serialized once, when a worker sets a target up; sending one is a write of ready bytes.
Errors come back as `SendError` with a kind that reads the same for both protocols where it can.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import numpy as np

from loadtest.prepare import OUTPUT, RequestData

#: The KServe v2 gRPC method (tritonclient.grpc.service_pb2_grpc names the same path).
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
MAX_MESSAGE = 64 * 1024 * 1024


class SendError(Exception):
    """A request that got no usable answer. `kind` groups errors in the report."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class Sender(Protocol):
    async def open(self, timeout: float) -> None: ...

    async def send(self, index: int, timeout: float) -> np.ndarray: ...

    async def close(self) -> None: ...


class GrpcSender:
    def __init__(self, url: str, model: str, requests: list[RequestData]) -> None:
        from tritonclient.grpc import service_pb2

        self._url = url
        self._pb2 = service_pb2
        self._payloads = [self._serialized(model, r) for r in requests]
        self._channel = None
        self._call = None

    def _serialized(self, model: str, request: RequestData) -> bytes:
        from tritonclient.utils import np_to_triton_dtype, serialize_byte_tensor

        message = self._pb2.ModelInferRequest(model_name=model)
        for name, array in request.inputs.items():
            tensor = message.inputs.add(name=name, datatype=np_to_triton_dtype(array.dtype))
            tensor.shape.extend(array.shape)
            data = serialize_byte_tensor(array).item() if array.dtype == np.object_ else array.tobytes()
            message.raw_input_contents.append(data)
        message.outputs.add(name=OUTPUT)
        return message.SerializeToString()

    def payload(self, index: int) -> bytes:
        """The serialized ModelInferRequest of request `index`."""
        return self._payloads[index]

    async def open(self, timeout: float) -> None:
        import grpc

        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ]
        self._channel = grpc.aio.insecure_channel(self._url, options=options)
        self._call = self._channel.unary_unary(
            GRPC_INFER, request_serializer=None, response_deserializer=self._pb2.ModelInferResponse.FromString
        )
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout)
        except TimeoutError:
            raise SendError(
                "unavailable", f"no gRPC connection to {self._url} within {timeout:.0f} s"
            ) from None

    async def send(self, index: int, timeout: float) -> np.ndarray:
        import grpc
        from tritonclient.grpc import InferResult

        try:
            response = await self._call(self._payloads[index], timeout=timeout)
        except grpc.aio.AioRpcError as err:
            code = err.code()
            kind = _GRPC_KINDS.get(code.name, f"grpc_{code.name.lower()}")
            raise SendError(kind, err.details() or code.name) from None
        array = InferResult(response).as_numpy(OUTPUT)
        if array is None:
            raise SendError("bad_response", f"no {OUTPUT} output in the answer")
        return array

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()


_GRPC_KINDS = {"UNAVAILABLE": "unavailable", "DEADLINE_EXCEEDED": "timeout", "CANCELLED": "cancelled"}


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that carries one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, int | None, bytes]] | None = None
        self.closed = False
        self.received = False
        self._head: tuple[int, int, int, bool, bool, int | None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            self.abort()  # bytes nobody asked for: the connection is out of step
            return
        try:
            answer = self._answer()
        except ValueError as err:
            self.waiter.set_exception(SendError("bad_response", f"malformed HTTP response: {err}"))
            self.abort()
            return
        if answer is not None:
            self.waiter.set_result(answer)

    def _answer(self) -> tuple[int, int | None, bytes] | None:
        if self._head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return None
            self._head = _parse_head(bytes(self.buffer[:end]), end + 4)
        status, start, length, chunked, keep_alive, header_length = self._head
        if chunked:
            body = _dechunk(self.buffer, start)
            if body is None:
                return None
        else:
            if len(self.buffer) - start < length:
                return None
            body = bytes(self.buffer[start : start + length])
        self.buffer.clear()
        self._head = None
        if not keep_alive:
            self.closed = True
        return status, header_length, body

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            reason = f"connection lost: {exc}" if exc else "the server closed the connection"
            self.waiter.set_exception(SendError("unavailable", reason))

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def _parse_head(head: bytes, start: int) -> tuple[int, int, int, bool, bool, int | None]:
    """Status, body start, Content-Length, chunked, keep-alive and Inference-Header-Content-Length."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    status = int(rest[:3])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    chunked = b"chunked" in fields.get(b"transfer-encoding", b"").lower()
    connection = fields.get(b"connection", b"").lower()
    keep_alive = connection != b"close" and (version != b"HTTP/1.0" or connection == b"keep-alive")
    header_length = fields.get(b"inference-header-content-length")
    length = int(fields.get(b"content-length", b"0"))
    return status, start, length, chunked, keep_alive, int(header_length) if header_length else None


def _dechunk(buffer: bytearray, start: int) -> bytes | None:
    """The body of a complete chunked message, or None while it is still arriving."""
    body = bytearray()
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        chunk_start = line_end + 2
        if size == 0:
            return bytes(body) if buffer.find(b"\r\n\r\n", line_end) >= 0 else None
        if len(buffer) < chunk_start + size + 2:
            return None
        body += buffer[chunk_start : chunk_start + size]
        position = chunk_start + size + 2


class HttpSender:
    """KServe v2 REST with the binary tensor extension, over a small keep-alive HTTP/1.1 client.

    The request bytes (head and body) are built once with tritonclient's `generate_request_body`; answers are
    read with its `parse_response_body`. The transport is a few lines of asyncio (one request per
    connection at a time, idle connections reused) because aiohttp cost about three times the CPU per
    request of vegeta here (docs/loadtest.md, benchmark).
    """

    def __init__(self, url: str, model: str, requests: list[RequestData]) -> None:
        from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

        self._host, _, port = url.rpartition(":")
        self._port = int(port)
        self._requests = []
        for request in requests:
            inputs = []
            for name, array in request.inputs.items():
                tensor = InferInput(name, list(array.shape), _datatype(array))
                tensor.set_data_from_numpy(array, binary_data=True)
                inputs.append(tensor)
            outputs = [InferRequestedOutput(OUTPUT, binary_data=True)]
            body, json_size = InferenceServerClient.generate_request_body(inputs, outputs=outputs)
            head = (
                f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {url}\r\n"
                f"Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {json_size}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            self._requests.append(head.encode() + body)
        self._parse = InferenceServerClient.parse_response_body
        self._idle: list[_Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def payload(self, index: int) -> bytes:
        """The HTTP request (head and body) of request `index`."""
        return self._requests[index]

    async def open(self, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        connection = await asyncio.wait_for(self._connect(), timeout)
        self._idle.append(connection)

    async def _connect(self) -> _Connection:
        try:
            _, connection = await self._loop.create_connection(
                _Connection, self._host.strip("[]"), self._port
            )
        except OSError as err:
            raise SendError(
                "unavailable", f"cannot connect to {self._host}:{self._port}: {err.strerror or err}"
            ) from None
        return connection

    async def send(self, index: int, timeout: float) -> np.ndarray:
        loop = self._loop
        deadline = loop.time() + timeout
        for attempt in (0, 1):
            connection = None
            while self._idle and connection is None:
                candidate = self._idle.pop()
                connection = None if candidate.closed else candidate
            reused = connection is not None
            if connection is None:
                # A server that accepts no connection (frozen, its backlog full) must not hold a request past
                # its deadline: the connect counts against the request's timeout.
                try:
                    connection = await asyncio.wait_for(self._connect(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    raise SendError("timeout", f"no connection within {timeout:.3g} s") from None
            waiter = loop.create_future()
            connection.waiter = waiter
            connection.received = False
            connection.transport.write(self._requests[index])
            expiry = loop.call_at(deadline, _expire, waiter, timeout)
            try:
                status, header_length, payload = await waiter
            except SendError as err:
                connection.abort()
                # An idle connection that the server had just closed: try once more on a new one.
                if err.kind == "unavailable" and reused and not connection.received and attempt == 0:
                    continue
                raise
            finally:
                expiry.cancel()
                connection.waiter = None
            break
        if not connection.closed:
            self._idle.append(connection)
        if status != 200:
            raise SendError(f"http_{status}", payload[:200].decode(errors="replace"))
        try:
            array = self._parse(payload, header_length=header_length).as_numpy(OUTPUT)
        except Exception as err:  # tritonclient raises several types for a malformed body
            raise SendError("bad_response", str(err)[:200]) from None
        if array is None:
            raise SendError("bad_response", f"no {OUTPUT} output in the answer")
        return array

    async def close(self) -> None:
        for connection in self._idle:
            connection.abort()
        self._idle.clear()


def _expire(waiter: asyncio.Future[Any], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(SendError("timeout", f"no answer within {timeout:.3g} s"))


def _datatype(array: np.ndarray) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(array.dtype)


def make_sender(protocol: str, url: str, model: str, requests: list[RequestData]) -> Sender:
    return (GrpcSender if protocol == "grpc" else HttpSender)(url, model, requests)
