"""The `tidings` command. Flags fall back to the TIDINGS_* environment variables (see config.py)."""

from __future__ import annotations

import contextlib
import gc
import json
import secrets
import sys
from collections.abc import Iterator
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError

from tidings import __version__, logs
from tidings.config import Settings
from tidings.crypto import new_encryption_key
from tidings.errors import TidingsError

app = typer.Typer(
    name="tidings",
    help="Tidings: self-hosted webhook delivery, signed and retried.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
apps_cli = typer.Typer(help="Manage applications.", no_args_is_help=True)
keys_cli = typer.Typer(help="Manage an application's API keys.", no_args_is_help=True)
users_cli = typer.Typer(help="Manage an application's dashboard users.", no_args_is_help=True)
app.add_typer(apps_cli, name="apps")
app.add_typer(keys_cli, name="keys")
app.add_typer(users_cli, name="users")
webhooks_cli = typer.Typer(help="Manage an application's webhooks.", no_args_is_help=True)
app.add_typer(webhooks_cli, name="webhooks")

OPERATOR_TOKEN_PREFIX = "tdo_"

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="sqlite:///tidings.db (default) or postgresql://…  [env: TIDINGS_DATABASE_URL]",
    ),
]
EncryptionKey = Annotated[
    str | None,
    typer.Option("--encryption-key", help="[env: TIDINGS_ENCRYPTION_KEY]", show_default=False),
]
OperatorToken = Annotated[
    str | None,
    typer.Option("--operator-token", help="[env: TIDINGS_OPERATOR_TOKEN]", show_default=False),
]
Host = Annotated[
    str | None,
    typer.Option("--host", help="Address to listen on  [env: TIDINGS_HOST; default 127.0.0.1]"),
]
Port = Annotated[int | None, typer.Option("--port", help="[env: TIDINGS_PORT; default 8000]")]
AllowPrivate = Annotated[
    bool | None,
    typer.Option(
        "--allow-private-targets/--no-allow-private-targets",
        help="Allow callback URLs on loopback and private networks (development)"
        "  [env: TIDINGS_ALLOW_PRIVATE_TARGETS]",
        show_default=False,
    ),
]
RequireHttps = Annotated[
    bool | None,
    typer.Option(
        "--require-https/--no-require-https",
        help="Refuse plain http:// callback URLs  [env: TIDINGS_REQUIRE_HTTPS]",
        show_default=False,
    ),
]
SignatureHeader = Annotated[
    str | None,
    typer.Option(
        "--signature-header", help="[env: TIDINGS_SIGNATURE_HEADER; default Tidings-Signature]"
    ),
]
Timeout = Annotated[
    float | None,
    typer.Option(
        "--timeout-s", help="Seconds per delivery attempt  [env: TIDINGS_TIMEOUT_S; default 10]"
    ),
]
RetrySchedule = Annotated[
    str | None,
    typer.Option(
        "--retry-schedule",
        help="Comma-separated seconds between attempts  [env: TIDINGS_RETRY_SCHEDULE]",
    ),
]
Concurrency = Annotated[
    int | None,
    typer.Option("--worker-concurrency", help="[env: TIDINGS_WORKER_CONCURRENCY; default 128]"),
]
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print only the new id or key, for scripts.")
]


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        fail(f"invalid configuration: {problems}")


def fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def say(message: str) -> None:
    typer.echo(message, err=True)


def _open(settings: Settings) -> Any:
    """Migrate and return a Database, with a readable error when it cannot be reached."""
    from tidings.store.db import Database
    from tidings.store.migrate import upgrade

    db = Database.from_settings(settings)
    try:
        upgrade(db.engine)
    except Exception as exc:
        fail(f"cannot open the database {settings.database_url}: {exc.__class__.__name__}: {exc}")
    return db


def ensure_operator_token(settings: Settings, db: Any) -> str | None:
    """Make and store an operator token on first start when none is configured."""
    from tidings.store import accounts

    if settings.operator_token:
        return None
    token = OPERATOR_TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.write() as conn:
        if accounts.stored_operator_token_hash(conn) is not None:
            return None
        stored = accounts.store_operator_token(conn, token)
    return token if stored else None


def _share_the_gil_quickly() -> None:
    """Database work runs in threads beside the event loop; a thread back from SQLite or
    PostgreSQL waits for the GIL up to the switch interval (5 ms by default) while the loop
    runs. 1 ms: publish->arrival p50 20 -> 14 ms at 200 events/s, drain +10% (bench/README)."""
    sys.setswitchinterval(0.001)


def _tune_the_garbage_collector() -> None:
    """Measured in a drain of 10,000 deliveries (`tidings worker`), time in the cyclic garbage
    collector after startup: 375 ms with Python's defaults, 113 ms once what startup built
    (~130,000 objects that live as long as the process: modules, the app, the engine) is
    frozen out of its view, and 10-20 ms when a young-generation collection also waits for
    10,000 new objects rather than 700. A full collection had walked every startup object,
    ~70 ms each time with the event loop stopped. Cycles are still collected; at most
    10,000 more objects wait for it."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _start_http(settings: Settings, *, with_worker: bool) -> None:
    from tidings.api.app import build_context, create_app
    from tidings.delivery.worker import Worker
    from tidings.server import serve_http

    _share_the_gil_quickly()
    db = _open(settings)
    token = ensure_operator_token(settings, db)
    context = build_context(settings, db)
    worker = Worker(db, settings, context.box, context.clock) if with_worker else None
    if token:
        typer.secho(
            "\nOperator token (shown this once; keep it, or set TIDINGS_OPERATOR_TOKEN):\n"
            f"    {token}\n",
            fg=typer.colors.YELLOW,
            err=True,
        )
    base = f"http://{settings.host}:{settings.port}"
    say(f"Tidings {__version__}: API at {base}/v1, OpenAPI at {base}/docs")
    say(f"Database: {settings.database_url}")
    application = create_app(context, worker)
    _tune_the_garbage_collector()
    serve_http(application, settings.host, settings.port)


@app.command()
def serve(
    database_url: DatabaseUrl = None,
    operator_token: OperatorToken = None,
    encryption_key: EncryptionKey = None,
    host: Host = None,
    port: Port = None,
    allow_private_targets: AllowPrivate = None,
    require_https: RequireHttps = None,
    signature_header: SignatureHeader = None,
    timeout_s: Timeout = None,
    retry_schedule: RetrySchedule = None,
    worker_concurrency: Concurrency = None,
) -> None:
    """Run everything in one process: the API and a delivery worker."""
    _start_http(load_settings(**locals()), with_worker=True)


@app.command()
def api(
    database_url: DatabaseUrl = None,
    operator_token: OperatorToken = None,
    encryption_key: EncryptionKey = None,
    host: Host = None,
    port: Port = None,
    allow_private_targets: AllowPrivate = None,
    require_https: RequireHttps = None,
    signature_header: SignatureHeader = None,
) -> None:
    """Run the API alone (workers run elsewhere, sharing the database)."""
    _start_http(load_settings(**locals()), with_worker=False)


@app.command()
def worker(
    database_url: DatabaseUrl = None,
    encryption_key: EncryptionKey = None,
    allow_private_targets: AllowPrivate = None,
    require_https: RequireHttps = None,
    signature_header: SignatureHeader = None,
    timeout_s: Timeout = None,
    retry_schedule: RetrySchedule = None,
    worker_concurrency: Concurrency = None,
) -> None:
    """Run a delivery worker alone (beside `tidings api` processes, sharing the database)."""
    import asyncio
    import signal

    from tidings.api.app import build_context
    from tidings.delivery.worker import Worker

    settings = load_settings(**locals())
    _share_the_gil_quickly()
    db = _open(settings)
    context = build_context(settings, db)
    # Alone in its process, the worker waits for PostgreSQL in its event loop (Worker.db_in_loop).
    the_worker = Worker(db, settings, context.box, context.clock, db_in_loop=True)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await the_worker.run(stop)

    say(f"Tidings {__version__} worker {the_worker.worker_id}, database {settings.database_url}")
    _tune_the_garbage_collector()
    try:
        import uvloop  # installed with uvicorn[standard]: a faster event loop
    except ImportError:
        asyncio.run(run())
    else:
        uvloop.run(run())
    db.dispose()


@app.command()
def migrate(database_url: DatabaseUrl = None) -> None:
    """Create or upgrade the database schema."""
    from tidings.store.migrate import is_current

    settings = load_settings(database_url=database_url)
    db = _open(settings)
    ok = is_current(db.engine)
    typer.echo(f"Database {settings.database_url} is {'up to date' if ok else 'NOT up to date'}.")
    if not ok:
        raise typer.Exit(1)


@app.command()
def keygen() -> None:
    """Print a new encryption key for TIDINGS_ENCRYPTION_KEY."""
    typer.echo(new_encryption_key())


@app.command()
def purge(
    older_than_days: Annotated[
        float | None,
        typer.Option("--older-than-days", help="[env: TIDINGS_RETENTION_DAYS; default 30]"),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete finished deliveries, their attempts and old events past the retention period."""
    import time

    from tidings.store import retention

    settings = load_settings(database_url=database_url, retention_days=older_than_days)
    db = _open(settings)
    now = time.time()
    counts = retention.purge(db, now - settings.retention_days * 86400, now)
    db.dispose()
    typer.echo(
        f"Purged {counts['deliveries']} deliveries (with their attempts) and {counts['events']}"
        f" events older than {settings.retention_days:g} days."
    )


@app.command("rotate-key")
def rotate_key(database_url: DatabaseUrl = None, encryption_key: EncryptionKey = None) -> None:
    """Re-encrypt every webhook secret with the first key of TIDINGS_ENCRYPTION_KEY.

    To change the key: set TIDINGS_ENCRYPTION_KEY="NEW,OLD" (both keys, new first) on every
    process, run this once, then drop OLD.
    """
    from tidings.crypto import SecretBox, load_or_create_key
    from tidings.store.keys import reencrypt_secrets

    settings = load_settings(database_url=database_url, encryption_key=encryption_key)
    try:
        box = SecretBox(load_or_create_key(settings.encryption_key, settings.key_file))
        count = _run(settings, lambda conn: reencrypt_secrets(conn, box))
    except ValueError as exc:
        fail(str(exc))
    typer.echo(f"Re-encrypted the secrets of {count} webhook(s) with the first key.")


def _run(settings: Settings, action: Any) -> Any:
    db = _open(settings)
    try:
        with db.write() as conn:
            return action(conn)
    except TidingsError as exc:
        fail(exc.detail)
    finally:
        db.dispose()


@apps_cli.command("create")
def apps_create(name: str, database_url: DatabaseUrl = None, quiet: Quiet = False) -> None:
    """Create an application."""
    from tidings.api.schemas import ApplicationIn
    from tidings.store import accounts

    body = _validated(ApplicationIn, name=name)
    settings = load_settings(database_url=database_url)
    row = _run(settings, lambda conn: accounts.create_application(conn, body.name, _now()))
    if quiet:
        typer.echo(row["id"])
        return
    typer.echo(f"Created application {body.name!r}: {row['id']}")
    typer.echo(f"Next: tidings keys create {row['id']} --role admin")


@keys_cli.command("create")
def keys_create(
    app_id: Annotated[str, typer.Argument(metavar="APP")],
    role: Annotated[str, typer.Option("--role", help="admin or member")] = "admin",
    name: Annotated[str, typer.Option("--name", help="What the key is for")] = "cli",
    database_url: DatabaseUrl = None,
    quiet: Quiet = False,
) -> None:
    """Create an API key for an application (shown once)."""
    from tidings.api.routes.applications import API_KEY_PREFIX
    from tidings.api.schemas import ApiKeyIn
    from tidings.store import accounts

    body = _validated(ApiKeyIn, name=name, role=role)
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)

    def create(conn: Any) -> dict[str, Any]:
        accounts.get_application(conn, app_id)
        return accounts.create_api_key(conn, app_id, body.name, body.role, key, _now())

    row = _run(load_settings(database_url=database_url), create)
    if quiet:
        typer.echo(key)
        return
    typer.echo(f"Created {body.role} API key {row['id']} for {app_id}. It is shown this once:")
    typer.echo(f"    {key}")


@users_cli.command("create")
def users_create(
    app_id: Annotated[str, typer.Argument(metavar="APP")],
    email: str,
    role: Annotated[str, typer.Option("--role", help="admin or member")] = "member",
    password: Annotated[
        str,
        typer.Option(
            "--password",
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help="At least 8 characters",
        ),
    ] = "",
    database_url: DatabaseUrl = None,
    quiet: Quiet = False,
) -> None:
    """Create a dashboard user for an application."""
    from tidings.api.schemas import UserIn
    from tidings.store import accounts

    body = _validated(UserIn, email=email, password=password, role=role)

    def create(conn: Any) -> dict[str, Any]:
        accounts.get_application(conn, app_id)
        return accounts.create_user(conn, app_id, body.email, body.password, body.role, _now())

    row = _run(load_settings(database_url=database_url), create)
    if quiet:
        typer.echo(row["id"])
        return
    typer.echo(f"Created {body.role} {body.email} ({row['id']}) for {app_id}.")


def _parse_headers(values: list[str] | None) -> dict[str, str] | None:
    if values is None:
        return None
    headers = {}
    for value in values:
        name, sep, text = value.partition(":")
        if not sep or not name.strip():
            fail(f"--header {value!r}: write it as 'Name: value'")
        headers[name.strip()] = text.strip()
    return headers


def _webhook_line(row: dict[str, Any]) -> str:
    state = "enabled" if row["enabled"] else f"DISABLED ({row['disabled_reason']})"
    extras = [f"{k}={row[k]}" for k in ("rate_limit", "timeout_s") if row.get(k)]
    if row["ordering"] == "fifo":
        extras.append("fifo")
    return (
        f"{row['id']}  {row['name'] or '-'}  {row['url']}  [{', '.join(row['events'])}]"
        f"  {state}{'  ' + ' '.join(extras) if extras else ''}"
    )


Events = Annotated[
    list[str] | None, typer.Option("--event", help="An event type; repeat it (or '*' for all)")
]
WebhookName = Annotated[str | None, typer.Option("--name")]
RateLimit = Annotated[
    float | None, typer.Option("--rate-limit", help="Deliveries per second at most")
]
Headers = Annotated[
    list[str] | None, typer.Option("--header", help="A custom header 'Name: value'; repeat it")
]
WebhookTimeout = Annotated[
    float | None, typer.Option("--timeout-s", help="Seconds per attempt for this webhook (1-30)")
]
Ordering = Annotated[str | None, typer.Option("--ordering", help="unordered or fifo")]


@contextlib.contextmanager
def _webhook_context(
    database_url: str | None, encryption_key: str | None, allow_private_targets: bool | None
) -> Iterator[Any]:
    """The API's context for `webhooks create|update` (which share the API's rules); an
    error the rules raise ends the command with its message."""
    from tidings.api.app import build_context

    settings = load_settings(
        database_url=database_url,
        encryption_key=encryption_key,
        allow_private_targets=allow_private_targets,
    )
    context = build_context(settings, _open(settings))
    try:
        yield context
    except TidingsError as exc:
        fail(exc.detail)
    finally:
        context.db.dispose()


@webhooks_cli.command("create")
def webhooks_create(
    app_id: Annotated[str, typer.Argument(metavar="APP")],
    url: Annotated[str, typer.Argument(metavar="URL")],
    event: Events = None,
    name: WebhookName = None,
    rate_limit: RateLimit = None,
    header: Headers = None,
    timeout_s: WebhookTimeout = None,
    ordering: Ordering = None,
    database_url: DatabaseUrl = None,
    encryption_key: EncryptionKey = None,
    allow_private_targets: AllowPrivate = None,
    quiet: Quiet = False,
) -> None:
    """Create a webhook; its secret is printed once."""
    from tidings.api import webhook_rules
    from tidings.api.schemas import WebhookIn
    from tidings.store import accounts

    fields: dict[str, Any] = {"url": url, "events": event or []}
    optional = {
        "name": name,
        "rate_limit": rate_limit,
        "headers": _parse_headers(header),
        "timeout_s": timeout_s,
        "ordering": ordering,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    body = _validated(WebhookIn, **fields)
    with _webhook_context(database_url, encryption_key, allow_private_targets) as context:
        with context.db.read() as conn:
            accounts.get_application(conn, app_id)
        row, secret = webhook_rules.create(context, app_id, body)
    if quiet:
        typer.echo(secret)
        return
    typer.echo(f"Created webhook {row['id']}. Its secret is shown this once:")
    typer.echo(f"    {secret}")


@webhooks_cli.command("list")
def webhooks_list(
    app_id: Annotated[str, typer.Argument(metavar="APP")], database_url: DatabaseUrl = None
) -> None:
    """List an application's webhooks."""
    from tidings.store import accounts, webhooks

    def rows(conn: Any) -> list[dict[str, Any]]:
        accounts.get_application(conn, app_id)
        return webhooks.list_webhooks(conn, app_id, 100, None).rows

    found = _run(load_settings(database_url=database_url), rows)
    if not found:
        typer.echo(f"No webhooks yet. Add one: tidings webhooks create {app_id} URL --event '*'")
    for row in found:
        typer.echo(_webhook_line(row))


@webhooks_cli.command("update")
def webhooks_update(
    app_id: Annotated[str, typer.Argument(metavar="APP")],
    webhook_id: Annotated[str, typer.Argument(metavar="WEBHOOK")],
    url: Annotated[str | None, typer.Option("--url")] = None,
    event: Events = None,
    name: WebhookName = None,
    rate_limit: RateLimit = None,
    header: Headers = None,
    timeout_s: WebhookTimeout = None,
    ordering: Ordering = None,
    enable: Annotated[bool | None, typer.Option("--enable/--disable", show_default=False)] = None,
    database_url: DatabaseUrl = None,
    encryption_key: EncryptionKey = None,
    allow_private_targets: AllowPrivate = None,
) -> None:
    """Change a webhook: only the options given change."""
    from tidings.api import webhook_rules
    from tidings.api.schemas import WebhookPatch

    given = {
        "url": url,
        "events": event,
        "name": name,
        "rate_limit": rate_limit,
        "headers": _parse_headers(header),
        "timeout_s": timeout_s,
        "ordering": ordering,
        "enabled": enable,
    }
    body = _validated(WebhookPatch, **{k: v for k, v in given.items() if v is not None})
    with _webhook_context(database_url, encryption_key, allow_private_targets) as context:
        row = webhook_rules.update(context, app_id, webhook_id, body)
    typer.echo(_webhook_line(row))


@app.command()
def publish(
    app_id: Annotated[str, typer.Argument(metavar="APP")],
    event_type: Annotated[str, typer.Argument(metavar="TYPE")],
    content: Annotated[
        str, typer.Argument(metavar="JSON", help="The event content, a JSON object")
    ] = "{}",
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    database_url: DatabaseUrl = None,
    quiet: Quiet = False,
) -> None:
    """Publish an event to an application's webhooks."""
    from tidings.api.routes.events import request_hash
    from tidings.api.schemas import EventIn
    from tidings.domain.catalog import TEST_EVENT
    from tidings.store import accounts, events

    try:
        parsed = json.loads(content)
    except ValueError as exc:
        fail(f"the content is not valid JSON: {exc}")
    body = _validated(EventIn, type=event_type, content=parsed)
    if body.type == TEST_EVENT:
        fail("TEST_EVENT is sent only by 'send a test' on one webhook")

    def do(conn: Any) -> Any:
        accounts.get_application(conn, app_id)
        known = events.known_event_types(conn)
        if body.type not in known:
            fail(f"unknown event type {body.type}; known: {', '.join(sorted(known))}")
        request = events.PublishRequest(
            app_id, body.type, body.content, idempotency_key, request_hash(body, idempotency_key)
        )
        return events.publish(conn, request, _now())

    accepted = _run(load_settings(database_url=database_url), do)
    event = accepted.event
    if quiet:
        typer.echo(event["id"])
        return
    replay = "" if accepted.created else " (replayed: this Idempotency-Key was used before)"
    count = event["delivery_count"]
    typer.echo(f"Published {event['id']} ({event['type']}) to {count} webhook(s){replay}.")


@app.command()
def listen(
    port: Annotated[int, typer.Option("--port", help="Port to listen on (127.0.0.1)")] = 9000,
    secret: Annotated[
        list[str] | None,
        typer.Option("--secret", help="The webhook's whsec_… secret; repeat during a rotation"),
    ] = None,
    status: Annotated[int, typer.Option("--status", help="Status to answer with")] = 200,
    forward: Annotated[
        str | None, typer.Option("--forward", help="Also POST each delivery to this URL")
    ] = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    signature_header: SignatureHeader = None,
) -> None:
    """Receive deliveries locally: verify their signatures and pretty-print them."""
    from aiohttp import web

    from tidings.domain.signing import secret_key
    from tidings.listen import make_app

    secrets = secret or []
    for s in secrets:
        try:
            secret_key(s)
        except ValueError as exc:
            fail(f"--secret {s[:10]}…: {exc}")
    if not 100 <= status <= 599:
        fail("--status must be an HTTP status code")
    header = signature_header or Settings().signature_header
    application = make_app(
        secrets, status=status, forward=forward, hex_header=header, echo=typer.echo
    )
    checking = (
        f"verifying with {len(secrets)} secret(s)" if secrets else "NOT verifying (no --secret)"
    )
    say(f"Listening on http://{host}:{port}/ , {checking}, answering {status}. Ctrl-C stops.")
    web.run_app(application, host=host, port=port, print=None, access_log=None)


def _validated(model: Any, **values: Any) -> Any:
    try:
        return model(**values)
    except ValidationError as exc:
        fail(
            "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()
            )
        )


def _now() -> float:
    import time

    return time.time()


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tidings {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Tidings: self-hosted webhook delivery, signed and retried."""


def main() -> None:
    from tidings.config import log_format

    logs.configure(log_format())
    app()
