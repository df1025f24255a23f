"""Fixtures for the end-to-end tests: a workspace directory and servers stopped at teardown."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.e2e.helpers import Server, StartServer, Workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path, tmp_path / "t.db")


@pytest.fixture
def start_server(workspace: Workspace) -> Iterator[StartServer]:
    """`start_server(command="serve", env=None)` starts a server and waits for /healthz.

    Every server started is stopped at teardown, whatever the test did.
    """
    servers: list[Server] = []

    def start(command: str = "serve", env: Mapping[str, str] | None = None) -> Server:
        server = Server(workspace, command, env if env is not None else workspace.env())
        servers.append(server)
        server.wait_ready()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
