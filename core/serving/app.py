"""The FastAPI application: errors as JSON, the API key, the size limit, health, and the routes.

Every error is a JSON object `{"error": "..."}` with a 4xx status saying what was wrong (the shape
the Open Inference Protocol and TF Serving use), and the server keeps serving. OpenAPI docs at /docs.
"""

from __future__ import annotations

import hmac
import os
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import __version__
from core.errors import InvalidInput
from core.serving.batching import QueueFull
from core.serving.decode_budget import DecodeBusy
from core.serving.quota import QuotaExceeded
from core.serving.registry import NotReady, UnknownModel
from core.serving.service import InputError, Service, TooManyPixels
from core.serving.v2 import ProtocolError
from core.sharing import is_loopback

API_KEY_ENV = "FLORA_API_KEY"
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
RETRY_AFTER_SECONDS = 1
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready", "/healthz")
# The API's description is no secret: /docs opens without the key, and its Authorize button takes it.
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc")


class PayloadTooLarge(InvalidInput):
    def __init__(self, limit: int):
        super().__init__(f"the request body is over the {limit / 1e6:.0f} MB limit (--max-bytes)")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: refuse a body over `limit` bytes (by its Content-Length, or as it streams in)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for key, value in scope.get("headers", []):
            if key == b"content-length" and value.isdigit() and int(value) > self.limit:
                response = error(413, str(PayloadTooLarge(self.limit)))
                return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise PayloadTooLarge(self.limit)
            return message

        return await self.app(scope, limited, send)


class Guard:
    """ASGI middleware: the API key, the request's start time, and the per-protocol counters.

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware wraps every request
    in extra tasks and streams, which cost about a tenth of the server's Python time under load.
    """

    def __init__(self, app, service: Service, api_key: str | None):
        self.app, self.service = app, service
        self.api_key = api_key.encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = scope.setdefault("state", {})  # what `request.state` reads
        state["started"] = time.perf_counter()
        path = scope["path"]
        if self.api_key and path not in OPEN_PATHS and path not in DOCS_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            token = given[7:] if given[:7].lower() == b"bearer " else b""
            if not hmac.compare_digest(token, self.api_key):
                self.service.counters.count(_protocol(path), 401)
                response = error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")
                return await response(scope, receive, send)
        status = 500

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, send_and_note)
        if path not in OPEN_PATHS and scope["method"] == "POST":
            self.service.counters.count(_protocol(path), status, state.get("images", 0))


def create_app(
    service: Service, api_key: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES, host: str = "127.0.0.1"
) -> FastAPI:
    """The server's application around `service` (its registry already started, or starting).

    `host` is the address the server listens on: beyond loopback without an API key, feedback (which
    stores photos for retraining) is refused.
    """
    from core.serving import protocols, rest  # heavy: fastapi

    api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
    service.feedback_closed_reason = None
    if not api_key and not is_loopback(host):
        service.feedback_closed_reason = (
            f"feedback is closed: this server listens on {host}, beyond this machine, without an API key. "
            f"Start it with an API key ({API_KEY_ENV} or the Serve page's key) to accept feedback."
        )
    app = FastAPI(
        title="Flora model server",
        version=__version__,
        description=(
            "Classify photos with Flora runs. Speaks the Open Inference Protocol (KServe v2 / Triton, "
            "with the binary tensor extension), TF Serving's REST API, and a plain multipart `/predict`. "
            "A model name is an alias (e.g. `production`), a run id, or a unique prefix of one."
        ),
    )
    app.state.service = service
    app.state.max_bytes = max_bytes
    app.add_middleware(BodyLimit, limit=max_bytes)

    app.add_middleware(Guard, service=service, api_key=api_key)  # outermost: runs before the size limit

    @app.exception_handler(ProtocolError)
    @app.exception_handler(InputError)
    async def bad_input(request: Request, exc: Exception):
        return error(400, str(exc))

    @app.exception_handler(TooManyPixels)
    async def too_many_pixels(request: Request, exc: TooManyPixels):
        return error(413, str(exc))

    @app.exception_handler(QuotaExceeded)
    async def over_quota(request: Request, exc: QuotaExceeded):
        return error(429, str(exc))

    @app.exception_handler(DecodeBusy)
    async def decoding_busy(request: Request, exc: DecodeBusy):
        return error(503, str(exc), {"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(UnknownModel)
    async def unknown_model(request: Request, exc: UnknownModel):
        return error(404, str(exc))

    @app.exception_handler(QueueFull)
    @app.exception_handler(NotReady)
    async def busy(request: Request, exc: Exception):
        return error(503, str(exc), {"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(PayloadTooLarge)
    async def too_large(request: Request, exc: PayloadTooLarge):
        return error(413, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}" for e in exc.errors())
        return error(400, f"invalid request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.get("/healthz", tags=["health"], summary="Liveness, for load balancers")
    async def healthz():
        return {"live": True, "ready": service.registry.ready}

    app.include_router(protocols.v2_router(service))
    app.include_router(protocols.tfserving_router(service))
    app.include_router(rest.router(service))
    if api_key:
        _document_the_key(app)
    return app


def _document_the_key(app: FastAPI) -> None:
    """Say in the OpenAPI document that every route but health needs the bearer key, so /docs offers
    "Authorize" and its "Try it out" sends the key (it was a 401 in the browser)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "apiKey": {"type": "http", "scheme": "bearer", "description": f"the server's key ({API_KEY_ENV})"}
            }
            schema["security"] = [{"apiKey": []}]
            for path in OPEN_PATHS:
                for operation in schema.get("paths", {}).get(path, {}).values():
                    operation["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def _protocol(path: str) -> str:
    if path.startswith("/v2"):
        return "v2"
    if path.startswith("/v1/models"):
        return "tfserving"
    return "rest"
