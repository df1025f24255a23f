"""Helpers for end-to-end tests that run the real `tidings` command as subprocesses.

Every command runs with a clean environment: no TIDINGS_* variable leaks in from the parent
except the ones a test sets, the database is a SQLite file in tmp_path, and cwd is tmp_path.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest

CLI_TIMEOUT_S = 60
START_TIMEOUT_S = 15
STOP_TIMEOUT_S = 10


def clean_env(db_path: Path, **extra: str) -> dict[str, str]:
    """The parent environment minus every TIDINGS_* variable, plus the database URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["TIDINGS_DATABASE_URL"] = f"sqlite:///{db_path}"
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_readable_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A non-zero exit with an `error:` line on stderr and no Python traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout
    assert "error:" in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@dataclass
class Workspace:
    """A directory with a SQLite database path, and a way to run `tidings` against it."""

    root: Path
    db_path: Path

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(self.db_path, **extra)

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, module: bool = False
    ) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "tidings", *args] if module else ["tidings", *args]
        return subprocess.run(
            cmd,
            cwd=self.root,
            env=dict(env) if env is not None else self.env(),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.run(*args)
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        return result


class Server:
    """A `tidings serve`/`tidings api` subprocess, its stderr collected by a reader thread."""

    def __init__(self, ws: Workspace, command: str, env: Mapping[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._lines: list[str] = []
        self._lock = threading.Lock()
        args = (
            ["tidings", command]
            if command == "worker"
            else ["tidings", command, "--port", str(self.port)]
        )
        self.proc = subprocess.Popen(
            args,
            cwd=ws.root,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self._lines.append(line)

    @property
    def stderr(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def wait_for_line(self, text: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while text not in self.stderr:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"never printed {text!r}:\n{self.stderr}")
            time.sleep(0.05)

    def wait_ready(self) -> None:
        """Poll /healthz until 200, then wait for the startup banner (printed before it)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(timeout=2) as client:
            while True:
                if self.proc.poll() is not None:
                    self.stop()
                    pytest.fail(f"server exited with {self.proc.returncode}:\n{self.stderr}")
                try:
                    if client.get(f"{self.base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"no 200 from /healthz in {START_TIMEOUT_S}s:\n{self.stderr}")
                time.sleep(0.1)
        # The banner goes to stderr before uvicorn binds; the reader thread may lag a little.
        while "API at" not in self.stderr and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, a bounded wait, SIGKILL if needed; then drain and close the pipe."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        self._reader.join(timeout=STOP_TIMEOUT_S)
        if self.proc.stderr is not None and not self._reader.is_alive():
            self.proc.stderr.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


StartServer = Callable[..., Server]
