"""Running the HTTP server (uvicorn) so that SIGTERM means a clean stop and exit status 0."""

from __future__ import annotations

import contextlib
from collections.abc import Generator

import uvicorn
from fastapi import FastAPI


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            yield
            # The signal was handled by shutting down gracefully (the lifespan drained the
            # worker); uvicorn would raise it again and die of it. A clean stop exits 0.
            self._captured_signals.clear()


def serve_http(app: FastAPI, host: str, port: int) -> None:
    config = uvicorn.Config(
        app, host=host, port=port, log_level="info", access_log=False, log_config=None
    )
    _Server(config).run()
