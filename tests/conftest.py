"""Shared fixtures: a fresh, migrated database per test on SQLite and on PostgreSQL.

PostgreSQL comes from TIDINGS_TEST_POSTGRES_URL (a server URL; tests make their own
databases). `.ci/run` sets it. Without it the PostgreSQL half is skipped locally, and is an
error under CI, so that CI can never pass without running it.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support.receiver import Receiver
from tidings.store.db import make_engine
from tidings.store.migrate import upgrade

PG_URL = os.environ.get("TIDINGS_TEST_POSTGRES_URL")
# Names carry the pid, so that two test runs on one server (a developer's and CI's) never
# drop each other's databases.
TEMPLATE_DB = f"tidings_test_template_{os.getpid()}"
_counter = itertools.count()


def _pg_admin_url() -> str:
    assert PG_URL is not None
    url = PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    return url.rsplit("/", 1)[0] + "/postgres"


def _pg_url_for(name: str) -> str:
    return _pg_admin_url().rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    if PG_URL is None:
        if os.environ.get("CI"):
            pytest.fail("TIDINGS_TEST_POSTGRES_URL is not set under CI: PostgreSQL tests must run")
        pytest.skip("TIDINGS_TEST_POSTGRES_URL is not set: PostgreSQL tests need a server")
    # pre_ping: a test restarts the PostgreSQL server, which ends pooled connections.
    admin = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{TEMPLATE_DB}"'))
    engine = make_engine(_pg_url_for(TEMPLATE_DB))
    upgrade(engine)
    engine.dispose()
    yield TEMPLATE_DB
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP receiver on 127.0.0.1 (tests/support/receiver.py)."""
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, migrated database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "tidings.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    template = request.getfixturevalue("pg_template")
    name = f"tidings_test_{os.getpid()}_{next(_counter)}"
    admin = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield _pg_url_for(name).replace("postgresql+psycopg://", "postgresql://", 1)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
