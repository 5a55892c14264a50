"""FastAPI app over a loaded classifier: micro-batched inference, input limits, metrics, optional API key.

Concurrent requests are gathered into one model batch (at most `max_batch` texts, waiting at most
`max_wait_ms` for company), and the model runs on one worker thread, off the event loop: on a CPU
one batch of 64 costs far less than 64 batches of one. Every user mistake is a 4xx with a JSON
`{"error": ...}` body; the process never dies on a request.
"""


import asyncio
import hmac
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Callable

import numpy as np

from .classifier import check_texts
from .errors import ConfigError, MlbertError
from .predict import chosen_columns

try:
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse
    from pydantic import BaseModel, ConfigDict, Field
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ConfigError("mlbert serve needs FastAPI, uvicorn and prometheus-client: pip install 'mlbert[serve]'") from None


@dataclass
class ServeSettings:
    max_batch: int = 64  # texts per model batch
    max_wait_ms: float = 5.0  # how long a batch waits for more requests
    batching: bool = True  # False: every request runs alone (the baseline for the load benchmark)
    max_texts: int = 256  # texts per request -> 422 above
    max_chars: int = 20_000  # characters per text -> 422 above
    max_body_bytes: int = 8 * 1024 * 1024  # request body -> 413 above
    api_key: str | None = None  # when set, /v1/* and /metrics need header X-API-Key
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("max_batch", "max_texts", "max_chars", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")


# Some character that is not whitespace, the same under Python's str.isspace and the Rust regex
# engine pydantic validates with (Python also counts \x1c-\x1f as space).
NOT_BLANK = r"[^\s\x1c-\x1f]"


# -- request and response documents (these make the OpenAPI document) ------------------------------
def request_model(max_texts: int, max_chars: int) -> type[BaseModel]:
    """The request document with this server's limits in it, so the OpenAPI document states them."""

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        texts: list[Annotated[str, Field(pattern=NOT_BLANK, max_length=max_chars)]] = Field(
            min_length=1, max_length=max_texts, description="texts to label, none blank")
        threshold: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False,
                                        description="one cut-off for every label instead of the model's tuned ones")
        top_k: int | None = Field(None, ge=1, description="at most this many labels per text (threshold 0: exactly k)")

    return PredictRequest


class LabelScore(BaseModel):
    label: str
    score: float


class Prediction(BaseModel):
    labels: list[LabelScore] = Field(description="labels at or above their threshold, highest score first")


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class LabelsResponse(BaseModel):
    labels: list[str]
    thresholds: list[float] = Field(description="the cut-off used for each label when no threshold is given")
    threshold_mode: str
    max_texts: int
    max_chars: int


class Status(BaseModel):
    status: str


class ErrorResponse(BaseModel):
    error: str


ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 413, 422, 503)}


# -- micro-batching ---------------------------------------------------------------------------------
class MicroBatcher:
    """Queue of (texts, future); one loop turns the queue into model batches on one worker thread."""

    def __init__(self, score: Callable[[list[str]], np.ndarray], max_batch: int, max_wait_ms: float, enabled: bool,
                 on_batch: Callable[[int], None] = lambda n: None):
        self.score, self.max_batch, self.max_wait = score, max_batch, max_wait_ms / 1000.0
        self.enabled, self.on_batch = enabled, on_batch
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlbert-infer")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is not None:
            await self._queue.put(None)
            await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, texts: list[str]) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((texts, future))
        return await future

    async def _gather(self, first) -> tuple[list, bool]:
        """The first item plus whatever arrives within max_wait, up to max_batch texts -> (items, stop)."""
        items, n = [first], len(first[0])
        if not self.enabled:
            return items, False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while n < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if item is None:
                return items, True
            if n + len(item[0]) > self.max_batch:  # would overflow: it opens the next batch
                self._queue.put_nowait(item)  # goes to the back; the order of futures does not matter
                break
            items.append(item)
            n += len(item[0])
        return items, False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            items, stop = await self._gather(first)
            texts = [t for batch, _ in items for t in batch]
            self.on_batch(len(texts))
            try:
                probs = await loop.run_in_executor(self._executor, self.score, texts)
            except Exception as exc:  # the request fails, the server does not
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for batch, future in items:
                if not future.done():  # a client that went away cancelled its future
                    future.set_result(probs[start:start + len(batch)])
                start += len(batch)
        while stop and not self._queue.empty():  # requests that raced the stop: serve them too
            item = self._queue.get_nowait()
            if item is not None:
                texts, future = item
                try:
                    future.set_result(await loop.run_in_executor(self._executor, self.score, texts))
                except Exception as exc:
                    future.set_exception(exc)


def choose(row: np.ndarray, cut: np.ndarray, labels: list[str], top_k: int | None) -> list[dict[str, Any]]:
    """Labels of one text with their scores, chosen by the same rule as `predict.decide`."""
    return [{"label": labels[j], "score": round(float(row[j]), 6)} for j in chosen_columns(row, cut, top_k)]


# -- metrics ----------------------------------------------------------------------------------------
class Metrics:
    """Prometheus series in a registry of this app's own (several apps may live in one process)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("mlbert_requests", "HTTP requests", ["path", "status"], registry=self.registry)
        self.latency = Histogram("mlbert_request_seconds", "request latency", ["path"], registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.batch_size = Histogram("mlbert_batch_texts", "texts per model batch", registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
        self.texts = Counter("mlbert_texts", "texts labelled", registry=self.registry)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


KNOWN_PATHS = {"/v1/predict", "/v1/labels", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Observe:
    """ASGI middleware: count requests by path and status, and time them (pure ASGI: cheaper per request
    than Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app, metrics: "Metrics"):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
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
        declared = dict(scope.get("headers") or []).get(b"content-length")
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
        response = _error(413, f"request body over {self.limit} bytes; send fewer or shorter texts per request")
        await response(scope, receive, send)


# -- the app ----------------------------------------------------------------------------------------
def create_app(classifier, settings: ServeSettings | None = None) -> FastAPI:
    """The ASGI app over a fitted MultiLabelClassifier; run it with uvicorn (see `mlbert serve`)."""
    from . import __version__

    settings = settings or ServeSettings()
    classifier._check_fitted()
    labels = list(classifier.labels_)
    mode = classifier.config.threshold_mode
    tuned = np.broadcast_to(np.asarray(classifier.thresholds_for(mode), dtype=np.float64), (len(labels),))
    metrics = Metrics()
    state = {"ready": False}
    PredictRequest = request_model(settings.max_texts, settings.max_chars)
    batcher = MicroBatcher(classifier.predict_proba, settings.max_batch, settings.max_wait_ms, settings.batching,
                           on_batch=metrics.batch_size.observe)

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        await batcher.submit(["warm-up"])  # first call pays for lazy initialisation, not a user
        state["ready"] = True
        yield
        state["ready"] = False
        await batcher.stop()

    app = FastAPI(title="mlbert", version=__version__, lifespan=lifespan,
                  description="Multi-label text classification with a fine-tuned BERT-family encoder.")

    def check_key(request: Request) -> None:
        if settings.api_key is None:
            return
        given = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), settings.api_key.encode()):
            raise HTTPException(401, "missing or wrong X-API-Key header")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors()[:5]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return _error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        return _error(500, f"internal error: {type(exc).__name__}")

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERRORS, dependencies=[Depends(check_key)])
    async def predict(body: PredictRequest) -> PredictResponse:
        """Label texts; by default each label uses the model's tuned threshold."""
        for i, text in enumerate(body.texts):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise HTTPException(422, f"texts[{i}] is not valid Unicode (lone surrogate)") from None
        try:  # the rules the Python API applies (no empty texts), checked before the text joins a batch
            check_texts(body.texts)
        except MlbertError as e:
            raise HTTPException(422, str(e)) from None
        if not state["ready"]:
            raise HTTPException(503, "model is still warming up")
        probs = await batcher.submit(list(body.texts))
        metrics.texts.inc(len(body.texts))
        cut = tuned if body.threshold is None else np.full(len(labels), body.threshold)
        return PredictResponse(predictions=[Prediction(labels=choose(row, cut, labels, body.top_k)) for row in probs])

    @app.get("/v1/labels", response_model=LabelsResponse, responses=ERRORS, dependencies=[Depends(check_key)])
    async def get_labels() -> LabelsResponse:
        """The model's labels, in column order, with their default thresholds and the request limits."""
        return LabelsResponse(labels=labels, thresholds=[float(t) for t in tuned], threshold_mode=mode,
                              max_texts=settings.max_texts, max_chars=settings.max_chars)

    @app.get("/healthz", response_model=Status)
    async def healthz() -> Status:
        """The process answers."""
        return Status(status="ok")

    @app.get("/readyz", response_model=Status, responses={503: {"model": ErrorResponse}})
    async def readyz():
        """The model is loaded and warmed up: send traffic."""
        if not state["ready"]:
            return _error(503, "warming up")
        return Status(status="ready")

    @app.get("/metrics", response_class=PlainTextResponse, responses=ERRORS, dependencies=[Depends(check_key)])
    async def prometheus_metrics() -> PlainTextResponse:
        """Prometheus text format: requests by path and status, latency, batch sizes, texts."""
        return PlainTextResponse(metrics.render().decode(), media_type="text/plain; version=0.0.4")

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "X-API-Key"])
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(Observe, metrics=metrics)  # outermost: sees every answer, 413s included
    app.state.metrics, app.state.batcher, app.state.settings = metrics, batcher, settings
    return app


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None,
          log_level: str = "info", backend: str = "torch") -> None:
    """Load the model folder and serve it until SIGINT/SIGTERM (in-flight requests finish first)."""
    import uvicorn

    from .classifier import MultiLabelClassifier

    app = create_app(MultiLabelClassifier.load(model, backend=backend), settings)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, workers=1, timeout_graceful_shutdown=30,
                            server_header=False)
    # uvicorn drains in-flight requests on SIGTERM/SIGINT, then re-raises the signal to the handler that was
    # installed before it; with this one, a drained shutdown ends with exit status 0 instead of death by signal.
    previous = {sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.Server(config).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

