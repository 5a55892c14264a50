"""`mlbert serve`: the HTTP API over a loaded classifier (FastAPI + uvicorn).

app.py         create_app, serve, ServeSettings: the routes and the process
schema.py      request and response documents (the OpenAPI document), text validation
batcher.py     micro-batching of concurrent requests on one inference thread
middleware.py  Prometheus metrics and the request-body limit (pure ASGI)
"""

from .app import ServeSettings, choose, create_app, serve
from .batcher import MicroBatcher

__all__ = ["MicroBatcher", "ServeSettings", "choose", "create_app", "serve"]
