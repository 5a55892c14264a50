"""ASGI middleware of the server: Prometheus series for every answer, and the request-body limit."""

from __future__ import annotations

import hmac
import time

from fastapi.responses import JSONResponse


def header(scope, name: bytes) -> bytes | None:
    """A request header's value (ASGI gives names in lower case), None when absent."""
    return next((value for key, value in scope.get("headers") or [] if key == name), None)


def error_response(status: int, message: str) -> JSONResponse:
    """Every error the server sends: a JSON `{"error": ...}` body."""
    return JSONResponse({"error": message}, status_code=status)


class Metrics:
    """Prometheus series in a registry of this app's own (several apps may live in one process)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("mlbert_requests", "HTTP requests", ["path", "status"], registry=self.registry)
        self.latency = Histogram(
            "mlbert_request_seconds",
            "request latency",
            ["path"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.batch_size = Histogram(
            "mlbert_batch_texts",
            "texts per model batch",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        )
        self.texts = Counter("mlbert_texts", "texts labelled", registry=self.registry)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


KNOWN_PATHS = {"/v1/predict", "/v1/labels", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"}


class Observe:
    """ASGI middleware: count requests by path and status, and time them (pure ASGI: cheaper per request
    than Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        # 499 (nginx's "client closed request") when no answer was sent because the client went away
        # mid-body; an exception leaves 500, the answer the server sends for it.
        status = {"code": 499}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException:
            status["code"] = 500
            raise
        finally:
            self.metrics.requests.labels(path, str(status["code"])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)


class BodyLimit:
    """ASGI middleware: read the body up to the limit, answer 413 past it, then replay it to the app."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await self._too_large(scope, receive, send)
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send):
        response = error_response(413, f"request body over {self.limit} bytes; send fewer or shorter texts per request")
        await response(scope, receive, send)


class ApiKey:
    """ASGI middleware: the paths under `protected` need header X-API-Key equal to `key`, checked before the
    body is read or validated, so a caller without the key learns nothing about what the API accepts."""

    def __init__(self, app, key: str, protected: tuple[str, ...]):
        self.app, self.key, self.protected = app, key.encode(), protected

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(self.protected):
            return await self.app(scope, receive, send)
        given = header(scope, b"x-api-key") or b""
        if not hmac.compare_digest(given, self.key):
            return await error_response(401, "missing or wrong X-API-Key header")(scope, receive, send)
        return await self.app(scope, receive, send)


class JsonOnly:
    """ASGI middleware: a POST to one of `paths` must say its body is JSON. Without the header FastAPI
    would try to read the body anyway and answer with a type error about the document, not the header."""

    def __init__(self, app, paths: tuple[str, ...]):
        self.app, self.paths = app, paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        given = header(scope, b"content-type") or b""
        if given.split(b";")[0].strip().lower() != b"application/json":
            shown = given.decode("latin-1")[:60] or "none"
            message = f"send the body as JSON with the header Content-Type: application/json (got {shown})"
            return await error_response(415, message)(scope, receive, send)
        return await self.app(scope, receive, send)
