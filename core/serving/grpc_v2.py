"""The Open Inference Protocol over gRPC, beside the HTTP server: `inference.GRPCInferenceService` (KServe's
`grpc_predict_v2.proto`), so `tritonclient.grpc` gets what `tritonclient.http` gets.

The same `Service` answers both: the same batcher, decode budget, pixel limit, prediction log and counters
(protocol `grpc`). A request over `--max-bytes` is refused by gRPC itself (RESOURCE_EXHAUSTED), and at most
`max_queue` calls are in flight (more: RESOURCE_EXHAUSTED), the same bound as the batcher's queue. Errors are
gRPC status codes with the HTTP server's messages: a bad input INVALID_ARGUMENT, an unknown model NOT_FOUND,
too many pixels RESOURCE_EXHAUSTED, a full queue, a decode budget used up or models still loading UNAVAILABLE,
a missing or wrong API key UNAUTHENTICATED (sent as `authorization: Bearer <key>` metadata).

The server runs on its own asyncio loop in a thread of the server process (`GrpcServer.start` / `stop`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from typing import Any

import anyio
import grpc
import numpy as np

from core import __version__
from core.serving import v2
from core.serving.batching import QueueFull
from core.serving.decode_budget import DecodeBusy
from core.serving.grpc_proto import METHODS, SERVICE, message_class
from core.serving.protocols import VERSION, metadata_of, v2_answer
from core.serving.registry import NotReady, UnknownModel
from core.serving.service import InputError, Service, TooManyPixels

log = logging.getLogger("flora")
OPEN_METHODS = ("ServerLive", "ServerReady")
GRACE_SECONDS = 5.0
# gRPC codes and the HTTP statuses the counters keep for them (the Serve page's error rates read those)
ERRORS: list[tuple[tuple[type[BaseException], ...], grpc.StatusCode, int]] = [
    ((TooManyPixels,), grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
    ((v2.ProtocolError, InputError), grpc.StatusCode.INVALID_ARGUMENT, 400),
    ((UnknownModel,), grpc.StatusCode.NOT_FOUND, 404),
    ((QueueFull, DecodeBusy, NotReady), grpc.StatusCode.UNAVAILABLE, 503),
]
# the typed `contents` fields, by datatype, for a request that does not send raw bytes
CONTENTS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class Unauthenticated(Exception):
    """No API key, or the wrong one."""


def infer_request(message) -> v2.InferRequest:
    """A ModelInferRequest as the HTTP side's InferRequest. Raises v2.ProtocolError."""
    raw = list(message.raw_input_contents)
    if raw and len(raw) != len(message.inputs):
        raise v2.ProtocolError(f"{len(raw)} raw_input_contents for {len(message.inputs)} inputs: send one per input")
    tensors = []
    for i, given in enumerate(message.inputs):
        name, datatype, shape = given.name, given.datatype, [int(d) for d in given.shape]
        if datatype not in v2.DTYPES:
            raise v2.ProtocolError(f"input {name!r}: unknown datatype {datatype!r}; one of {', '.join(v2.DTYPES)}")
        if any(d < 0 for d in shape):
            raise v2.ProtocolError(f"input {name!r}: 'shape' must be non-negative integers. Received: {shape}")
        count = int(np.prod(shape)) if shape else 1
        if raw:
            data = v2._from_binary(raw[i], datatype, count, name)
        else:
            values = list(getattr(given.contents, CONTENTS[datatype]))
            if datatype == "BYTES":
                if len(values) != count:
                    raise v2.ProtocolError(
                        f"input {name!r}: the shape holds {count} elements but {len(values)} were sent"
                    )
                data = v2._object_array([bytes(v) for v in values])
            else:
                data = v2._from_json(values, datatype, count, name)
        tensors.append(v2.Tensor(name, datatype, shape, data if datatype == "BYTES" else data.reshape(shape)))
    return v2.InferRequest(
        id=message.id or None,
        inputs=tensors,
        outputs={wanted.name: True for wanted in message.outputs},
        binary_output=True,
        parameters={key: _parameter(value) for key, value in message.parameters.items()},
    )


def _parameter(value) -> Any:
    choice = value.WhichOneof("parameter_choice")
    return None if choice is None else getattr(value, choice)


def infer_response(model_name: str, request_id: str, parsed: v2.InferRequest, outputs) -> Any:
    """The answer as a ModelInferResponse, every output as raw little-endian bytes (what tritonclient reads)."""
    response = message_class("ModelInferResponse")(model_name=model_name, model_version=VERSION, id=request_id)
    for name, datatype, array in outputs:
        if not parsed.wants(name):
            continue
        response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        response.raw_output_contents.append(v2._to_binary(array, datatype))
    return response


class InferenceServicer:
    """The six calls of GRPCInferenceService on `service`."""

    def __init__(self, service: Service, api_key: str | None = None):
        self.service = service
        self.api_key = api_key.encode() if api_key else None

    def handler(self) -> grpc.GenericRpcHandler:
        handlers = {}
        for method, (request, response) in METHODS.items():
            handlers[method] = grpc.unary_unary_rpc_method_handler(
                self._guarded(method, getattr(self, _snake(method))),
                request_deserializer=message_class(request).FromString,
                response_serializer=message_class(response).SerializeToString,
            )
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    def _guarded(self, method: str, call):
        async def run(request, context: grpc.aio.ServicerContext):
            started = time.perf_counter()
            status, images = 200, [0]
            try:
                if method not in OPEN_METHODS:
                    self._check_key(context)
                return await call(request, started, images)
            except Unauthenticated:
                status = 401
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED, "missing or wrong API key: send 'authorization: Bearer <key>'"
                )
            except Exception as e:  # mapped to a status code, or a server error with its message
                for kinds, code, http_status in ERRORS:
                    if isinstance(e, kinds):
                        status = http_status
                        await context.abort(code, str(e))
                status = 500
                log.exception("gRPC %s failed", method)
                await context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
            finally:
                if method == "ModelInfer":
                    self.service.counters.count("grpc", status, images[0])

        return run

    def _check_key(self, context) -> None:
        if self.api_key is None:
            return
        given = dict(context.invocation_metadata() or ()).get("authorization", "")
        given = given.encode() if isinstance(given, str) else given
        token = given[7:] if given[:7].lower() == b"bearer " else b""
        if not hmac.compare_digest(token, self.api_key):
            raise Unauthenticated()

    async def server_live(self, request, started, images):
        return message_class("ServerLiveResponse")(live=True)

    async def server_ready(self, request, started, images):
        return message_class("ServerReadyResponse")(ready=self.service.registry.ready)

    async def server_metadata(self, request, started, images):
        return message_class("ServerMetadataResponse")(name="flora", version=__version__, extensions=[])

    async def model_ready(self, request, started, images):
        self.service.registry.get(request.name)
        return message_class("ModelReadyResponse")(ready=self.service.registry.ready)

    async def model_metadata(self, request, started, images):
        described = metadata_of(self.service.registry.get(request.name))
        response = message_class("ModelMetadataResponse")(
            name=described["name"], versions=described["versions"], platform=described["platform"]
        )
        for kind in ("inputs", "outputs"):
            for tensor in described[kind]:
                getattr(response, kind).add(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"])
        return response

    async def model_infer(self, request, started, images):
        route = self.service.registry.get(request.model_name)
        parsed = await anyio.to_thread.run_sync(infer_request, request)
        route, outputs, count = await v2_answer(self.service, route, parsed, started)
        images[0] = count
        return infer_response(route.name, request.id, parsed, outputs)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


class GrpcServer:
    """The gRPC service on `host:port`, on its own event loop in a thread; `start()` returns once it listens."""

    def __init__(
        self,
        service: Service,
        host: str,
        port: int,
        api_key: str | None = None,
        max_bytes: int = 20 * 1024 * 1024,
        max_in_flight: int = 512,
    ):
        self.service, self.host, self.port = service, host, port
        self.api_key, self.max_bytes, self.max_in_flight = api_key, max_bytes, max_in_flight
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._listening = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="flora-grpc", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> GrpcServer:
        """Listen; raises RuntimeError when the port cannot be had."""
        self._thread.start()
        if not self._listening.wait(timeout) or self._failure is not None:
            raise RuntimeError(f"the gRPC server could not listen on {self.address}: {self._failure}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(GRACE_SECONDS + 5)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # reported by start()
            self._failure = e
            self._listening.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        options = [
            ("grpc.max_receive_message_length", self.max_bytes),
            ("grpc.max_send_message_length", max(self.max_bytes, 64 * 1024 * 1024)),
            ("grpc.so_reuseport", 0),
        ]
        server = grpc.aio.server(options=options, maximum_concurrent_rpcs=self.max_in_flight)
        server.add_generic_rpc_handlers([InferenceServicer(self.service, self.api_key).handler()])
        bound = server.add_insecure_port(self.address)
        if bound == 0:
            raise RuntimeError("the port is in use")
        self.port = bound  # port 0 asks for a free one
        await server.start()
        self._listening.set()
        log.info("gRPC: %s serves %s", self.address, SERVICE)
        await self._stopping.wait()
        await server.stop(GRACE_SECONDS)
