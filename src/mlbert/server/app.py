"""FastAPI app over a loaded classifier: micro-batched inference, input limits, metrics, optional API key.

Concurrent requests are gathered into one model batch (at most `max_batch` texts, waiting at most
`max_wait_ms` for company), and the model runs on one worker thread, off the event loop: on a CPU
one batch of 64 costs far less than 64 batches of one. Every user mistake is a 4xx with a JSON
`{"error": ...}` body; the process never dies on a request.

No `from __future__ import annotations` here or in schema.py: FastAPI and pydantic read the endpoint and
field annotations at run time, and the request document is a class made inside `create_app`.
"""

import signal
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..classifier import MultiLabelClassifier
from ..errors import ConfigError
from ..predict import chosen_columns
from ..version import __version__
from .batcher import MicroBatcher
from .middleware import ApiKey, BodyLimit, JsonOnly, Metrics, Observe, error_response
from .schema import ERRORS, ErrorResponse, LabelsResponse, Prediction, PredictResponse, Status, request_model


@dataclass
class ServeSettings:
    max_batch: int = 64  # texts per model batch
    max_wait_ms: float = 5.0  # how long a batch waits for more requests
    batching: bool = True  # False: every request runs alone (the baseline for the load benchmark)
    max_texts: int = 256  # texts per request -> 422 above
    max_chars: int = 20_000  # characters per text -> 422 above
    max_body_bytes: int = 8 * 1024 * 1024  # request body -> 413 above
    api_key: str | None = None  # when set, /v1/* and /metrics need header X-API-Key
    # The request line and headers together; past it the connection gets 400 before anything is stored.
    max_header_bytes: int = 32 * 1024
    cors_origins: tuple[str, ...] = ()
    # "explain": true costs about EXPLAIN_STEPS x 3 forward passes per text and label, so it is bounded: at most
    # this many texts a request (422 above), and the highest-scoring this many of each text's labels explained.
    max_explain_texts: int = 8
    max_explain_labels: int = 3

    def __post_init__(self):
        names = ("max_batch", "max_texts", "max_chars", "max_body_bytes", "max_header_bytes", "max_explain_texts",
                 "max_explain_labels")  # fmt: skip
        for name in names:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")


def choose(row: np.ndarray, cut: np.ndarray, labels: list[str], top_k: int | None) -> list[dict[str, Any]]:
    """Labels of one text with their scores, chosen by the same rule as `predict.decide`."""
    return [{"label": labels[j], "score": round(float(row[j]), 6)} for j in chosen_columns(row, cut, top_k)]


# Paths that need X-API-Key when the server has one; the probes and the API's documents stay open.
PROTECTED = ("/v1/", "/metrics")


# -- the app --------------------------------------------------------------------------------------
def create_app(classifier, settings: ServeSettings | None = None) -> FastAPI:
    """The ASGI app over a fitted MultiLabelClassifier; run it with uvicorn (see `mlbert serve`)."""
    settings = settings or ServeSettings()
    classifier._check_fitted()
    labels = list(classifier.labels_)
    mode = classifier.default_mode_
    tuned = np.broadcast_to(np.asarray(classifier.thresholds_for(mode), dtype=np.float64), (len(labels),))
    metrics = Metrics()
    state = {"ready": False}
    PredictRequest = request_model(settings.max_texts, settings.max_chars, settings.max_explain_texts)
    batcher = MicroBatcher(
        classifier.predict_proba,
        settings.max_batch,
        settings.max_wait_ms,
        settings.batching,
        on_batch=metrics.batch_size.observe,
    )

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        await batcher.submit(["warm-up"])  # first call pays for lazy initialisation, not a user
        state["ready"] = True
        yield
        state["ready"] = False
        await batcher.stop()

    app = FastAPI(
        title="mlbert",
        version=__version__,
        lifespan=lifespan,
        description="Multi-label text classification with a fine-tuned BERT-family encoder.",
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors()[:5]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
            parts.append(f"{where}: {e.get('msg', 'invalid').removeprefix('Value error, ')}")
        return error_response(422, "; ".join(parts) or "invalid request")

    # Starlette's own HTTPException (FastAPI's is a subclass) covers 404, 405 and bodies that do not parse.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        return error_response(500, f"internal error: {type(exc).__name__}")

    @app.post("/v1/predict", response_model=PredictResponse, response_model_exclude_none=True, responses=ERRORS)
    async def predict(body: PredictRequest) -> PredictResponse:
        """Label texts; by default each label uses the model's tuned threshold. With "explain": true each label
        also lists the words that moved its score most (explained on the inference thread, after the batch)."""
        # The texts were validated with the request (schema.py), before they could join a batch.
        if not state["ready"]:
            raise HTTPException(503, "model is still warming up")
        texts = body.all_texts()
        probs = await batcher.submit(texts)
        metrics.texts.inc(len(probs))
        cut = tuned if body.threshold is None else np.full(len(labels), body.threshold)
        chosen = [choose(row, cut, labels, body.top_k) for row in probs]
        if body.explain:
            names = [[c["label"] for c in row[: settings.max_explain_labels]] for row in chosen]
            reasons = await batcher.run_alone(classifier.explain_labels, texts, names)
            for row, why in zip(chosen, reasons):
                for c in row:
                    if c["label"] in why:
                        c["words"] = [w.to_dict() for w in why[c["label"]]]
        return PredictResponse(predictions=[Prediction(labels=row) for row in chosen])

    @app.get("/v1/labels", response_model=LabelsResponse, responses=ERRORS)
    async def get_labels() -> LabelsResponse:
        """The model's labels, in column order, with their default thresholds and the request limits."""
        return LabelsResponse(
            labels=labels,
            thresholds=[float(t) for t in tuned],
            threshold_mode=mode,
            max_texts=settings.max_texts,
            max_chars=settings.max_chars,
            max_explain_texts=settings.max_explain_texts,
            max_explain_labels=settings.max_explain_labels,
        )

    @app.get("/healthz", response_model=Status)
    async def healthz() -> Status:
        """The process answers."""
        return Status(status="ok")

    @app.get("/readyz", response_model=Status, responses={503: {"model": ErrorResponse}})
    async def readyz():
        """The model is loaded and warmed up: send traffic."""
        if not state["ready"]:
            return error_response(503, "warming up")
        return Status(status="ready")

    @app.get("/metrics", response_class=PlainTextResponse, responses=ERRORS)
    async def prometheus_metrics() -> PlainTextResponse:
        """Prometheus text format: requests by path and status, latency, batch sizes, texts."""
        return PlainTextResponse(metrics.render().decode(), media_type="text/plain; version=0.0.4")

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(JsonOnly, paths=("/v1/predict",))
    if settings.api_key is not None:  # before the body is read or validated: no key, no 413 or 422 either
        app.add_middleware(ApiKey, key=settings.api_key, protected=PROTECTED)
    # Outside the key check: a browser's CORS preflight carries no key.
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key"],
        )
    app.add_middleware(Observe, metrics=metrics)  # outermost: sees every answer, 401s and 413s included
    app.state.metrics, app.state.batcher, app.state.settings = metrics, batcher, settings
    return app


def uvicorn_config(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info"):
    """How `mlbert serve` runs the app. h11, not httptools: httptools takes headers of any size (one
    200 MB header was accepted), while h11 holds at most `max_header_bytes` of an unfinished request
    line and headers and answers 400 past it. The model's inference dominates a request's cost."""
    import uvicorn

    settings: ServeSettings = app.state.settings
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        workers=1,
        timeout_graceful_shutdown=30,
        server_header=False,
        http="h11",
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )


def serve(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
    log_level: str = "info",
    backend: str = "torch",
    calibrated: bool = True,
) -> None:
    """Load the model folder and serve it until SIGINT/SIGTERM (in-flight requests finish first)."""
    import uvicorn

    app = create_app(MultiLabelClassifier.load(model, backend=backend, calibrated=calibrated), settings)
    config = uvicorn_config(app, host, port, log_level)
    # uvicorn drains in-flight requests on SIGTERM/SIGINT, then re-raises the signal to the handler that was
    # installed before it; with this one, a drained shutdown ends with exit status 0 instead of death by signal.
    previous = {sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.Server(config).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
