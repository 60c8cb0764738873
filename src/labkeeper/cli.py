"""The `labkeeper` command: serve, worker, db, user, token, simulate, ..."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from labkeeper.config import get_settings

if TYPE_CHECKING:
    from labkeeper.core.db import Database

app = typer.Typer(
    help="labkeeper: book a shared network testbed and keep its configurations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema: upgrade and check.", no_args_is_help=True)
user_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")

console = Console()
err = Console(stderr=True, soft_wrap=True)


def _database() -> Database:
    from labkeeper.core.db import Database, make_engine

    settings = get_settings()
    return Database(make_engine(settings.database_url, pool_size=4))


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    scheduler: Annotated[bool, typer.Option(help="Run the periodic-job scheduler.")] = True,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Server processes: one per core on PostgreSQL/MariaDB, one on SQLite.",
        ),
    ] = 1,
    demo: Annotated[
        bool | None,
        typer.Option(
            "--demo/--no-demo",
            help="Run the built-in simulators and load the demo lab into an empty database "
            "(default: LABKEEPER_DEMO, off).",
        ),
    ] = None,
) -> None:
    """Upgrade the database, then serve the API, the pages and the in-process worker."""
    import os

    import uvicorn

    from labkeeper.app import create_app
    from labkeeper.core import migrate
    from labkeeper.core.observability import setup_logging

    settings = get_settings()
    settings.run_scheduler = scheduler
    settings.host, settings.port = host, port
    if demo is not None:
        settings.demo = demo
    if settings.demo and workers > 1:
        raise _fail("the demo (--demo, LABKEEPER_DEMO) runs with one server process (--workers 1)")
    setup_logging(settings.log_level, settings.log_format)
    try:
        settings.check_production()
    except RuntimeError as exc:
        raise _fail(str(exc)) from None
    database = _database()
    migrate.upgrade(database.engine)
    database.dispose()
    backend = settings.database_url.split("://")[0]
    console.print(f"labkeeper on [bold]http://{host}:{port}[/bold] (database: {backend})")
    options = {
        "host": host,
        "port": port,
        "log_level": settings.log_level.lower(),
        "access_log": False,
        "proxy_headers": False,
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]
        return
    # Several processes: each builds its own app from the environment. The scheduler's
    # database lease makes sure only one of them fires each periodic run.
    os.environ["LABKEEPER_RUN_SCHEDULER"] = "true" if scheduler else "false"
    uvicorn.run("labkeeper.app:create_app", factory=True, workers=workers, **options)  # type: ignore[arg-type]


@app.command()
def demo(
    ssh_port_base: Annotated[
        int | None,
        typer.Option(
            help="Port of the first simulated device (default: LABKEEPER_DEMO_SSH_PORT_BASE, 2201)."
        ),
    ] = None,
    polatis_port: Annotated[
        int | None,
        typer.Option(
            help="Port of the simulated switch (default: LABKEEPER_DEMO_POLATIS_PORT, 8830)."
        ),
    ] = None,
) -> None:
    """Load the demo lab (devices on the built-in simulators, accounts, bookings); idempotent."""
    from labkeeper import demo as demo_lab
    from labkeeper.core import migrate
    from labkeeper.core.errors import AppError

    settings = get_settings()
    database = _database()
    try:
        migrate.upgrade(database.engine)
        with database.scope() as session:
            report = demo_lab.load(
                session,
                ssh_port_base=ssh_port_base or settings.demo_ssh_port_base,
                polatis_port=polatis_port or settings.demo_polatis_port,
            )
    except AppError as exc:
        raise _fail(exc.message) from None
    finally:
        database.dispose()
    console.print(f"demo lab: {report.summary()}")
    for note in report.notes:
        console.print(f"note: {note}")
    if report.users_created:
        console.print("demo accounts:\n" + demo_lab.accounts_text())
    console.print(
        "The demo devices are served by `labkeeper serve --demo` (or `make run`), or by "
        "`labkeeper simulate devices --count 10 --platform mixed --port-base 2201` and "
        "`labkeeper simulate polatis --port 8830`."
    )


@app.command()
def worker(
    threads: Annotated[int, typer.Option(min=1, help="Tasks run at once by this process.")] = 8,
) -> None:
    """Execute background work from Redis (needs LABKEEPER_REDIS_URL)."""
    from labkeeper.core.observability import setup_logging
    from labkeeper.jobs.worker import run_worker

    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    if not settings.redis_url:
        raise _fail(
            "LABKEEPER_REDIS_URL is not set; without Redis, `labkeeper serve` runs the work itself"
        )
    run_worker(settings, threads=threads)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to the newest version."""
    from labkeeper.core import migrate

    database = _database()
    before = migrate.current_revision(database.engine)
    migrate.upgrade(database.engine)
    after = migrate.current_revision(database.engine)
    database.dispose()
    console.print(f"database at revision {after}" + ("" if before == after else f" (was {before})"))


@db_app.command("check")
def db_check() -> None:
    """Fail when the models and the migrations differ, or the database is behind."""
    from alembic.util import AutogenerateDiffsDetected

    from labkeeper.core import migrate

    database = _database()
    try:
        if not migrate.is_current(database.engine):
            raise _fail(
                f"database at {migrate.current_revision(database.engine)}, newest is "
                f"{migrate.head_revision()}: run `labkeeper db upgrade`"
            )
        migrate.check(database.engine)
    except AutogenerateDiffsDetected as exc:
        raise _fail(f"the models differ from the migrations: {exc}") from None
    finally:
        database.dispose()
    console.print("schema matches the models; database is current")


@user_app.command("create")
def user_create(
    name: Annotated[str, typer.Argument(help="Username.")],
    role: Annotated[
        str, typer.Option(help="viewer, member, approver, admin or superadmin.")
    ] = "member",
    email: Annotated[str | None, typer.Option(help="Email address.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a user (the first superadmin, for example)."""
    from pydantic import ValidationError

    from labkeeper.auth import service
    from labkeeper.auth.schemas import UserCreate
    from labkeeper.core.audit import Actor
    from labkeeper.core.errors import AppError

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        data = UserCreate(username=name, password=password, role=role, email=email)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _fail(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    database = _database()
    try:
        with database.scope() as session:
            user = service.create_user(
                session, data=data, actor=Actor(None, "cli", "system"), check_grant=False
            )
            user_id = user.id
    except AppError as exc:
        raise _fail(exc.message) from None
    finally:
        database.dispose()
    console.print(f"created user [bold]{name}[/bold] (id {user_id}, role {role})")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="Username the token belongs to.")],
    scopes: Annotated[
        list[str] | None,
        typer.Option("--scopes", help="Permission keys (repeat); default: all of the user's."),
    ] = None,
    expires_days: Annotated[int, typer.Option(min=1, help="Days until the token expires.")] = 90,
    label: Annotated[str, typer.Option("--label", help="A name to tell tokens apart.")] = "cli",
) -> None:
    """Create an API token for a user and print it (shown once)."""
    from pydantic import ValidationError

    from labkeeper.auth import repository, service
    from labkeeper.auth.schemas import TokenCreate
    from labkeeper.core.audit import Actor
    from labkeeper.core.errors import AppError

    try:
        data = TokenCreate(name=label, scopes=scopes or None, expires_days=expires_days)
    except ValidationError as exc:
        raise _fail(exc.errors()[0]["msg"]) from None
    database = _database()
    try:
        with database.scope() as session:
            user = repository.user_by_username(session, name)
            if user is None:
                raise _fail(f"there is no user called {name!r}")
            _, token = service.create_token(
                session, principal=Actor(None, "cli", "system"), data=data, user_id=user.id
            )
    except AppError as exc:
        raise _fail(exc.message) from None
    finally:
        database.dispose()
    print(token)


def _register_optional() -> None:
    from labkeeper.simulators.cli import app as simulate_app

    app.add_typer(simulate_app, name="simulate")
    from labkeeper.backups.cli import backup_app, keys_app

    app.add_typer(backup_app, name="backup")
    app.add_typer(keys_app, name="keys")
    from labkeeper.importers.cli import export_app, import_app

    app.add_typer(import_app, name="import")
    app.add_typer(export_app, name="export")


_register_optional()


def main() -> None:
    """Entry point of the `labkeeper` script."""
    app()


if __name__ == "__main__":
    main()
