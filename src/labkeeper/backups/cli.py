"""`labkeeper backup run|export-git|prune` and `labkeeper keys rotate`.

`backup run` queues a run on the jobs engine like the API does, then executes it in this process
(unless `--distributed` leaves it to the Redis workers) and shows its progress from the run's
counters, so what the terminal shows is what the job log says.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from labkeeper.config import get_settings

if TYPE_CHECKING:
    from labkeeper.core.db import Database

backup_app = typer.Typer(
    help="Configuration backups: collect now, export to git, prune.", no_args_is_help=True
)
keys_app = typer.Typer(help="Secret keys of the credential store.", no_args_is_help=True)

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
FINISHED = ("succeeded", "partial", "failed", "cancelled")
# Up to this many devices, the summary lists every device; beyond, only the failed ones.
LIST_ALL = 50


def _database() -> Database:
    from labkeeper.core import migrate
    from labkeeper.core.db import Database, make_engine

    settings = get_settings()
    database = Database(make_engine(settings.database_url, pool_size=8))
    if not migrate.is_current(database.engine):
        database.dispose()
        raise _fail("the database schema is not current; run `labkeeper db upgrade` first")
    return database


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _actor() -> Any:
    from labkeeper.core.audit import Actor

    return Actor(user_id=None, username="cli", role="system")


def _start(database: Database, devices: list[str], tags: list[str], local: bool) -> int:
    from pydantic import ValidationError

    from labkeeper.backups import repository, service
    from labkeeper.backups.schemas import BackupRunCreate
    from labkeeper.core.errors import AppError

    with database.scope() as s:
        ids = []
        for name in devices:
            device = repository.device_by_name(s, name)
            if device is None:
                raise _fail(f"there is no device called {name!r}", 2)
            ids.append(device.id)
        try:
            data = BackupRunCreate(device_ids=ids, tags=tags)
            run = service.run_backups(s, data=data, actor=_actor(), local=local)
        except ValidationError as exc:
            raise _fail(exc.errors()[0]["msg"], 2) from None
        except AppError as exc:
            raise _fail(exc.message, 2) from None
        return run.id


def _state(database: Database, run_id: int) -> tuple[str, dict[str, int]]:
    from labkeeper.backups import repository
    from labkeeper.jobs.models import JobLog

    with database.scope(write=False) as s:
        run = s.get(JobLog, run_id)
        counters = repository.run_counters(s, run_id) or {}
        return (run.status if run else "failed"), counters


def _summary(database: Database, run_id: int, status: str, counters: dict[str, int]) -> None:
    from labkeeper.backups import repository
    from labkeeper.jobs.models import JobLog

    with database.scope(write=False) as s:
        entries = repository.device_entries(s, run_id)
        run = s.get(JobLog, run_id)
        message = run.message if run else None
    shown = entries if len(entries) <= LIST_ALL else [e for e in entries if e.level == "error"]
    if shown:
        table = Table(title=f"backup run {run_id}", show_lines=False)
        for column in ("device", "result", "version", "credential", "seconds", "detail"):
            table.add_column(column, overflow="fold")
        for entry in shown:
            d = entry.details or {}
            ok = d.get("status") in ("changed", "unchanged")
            table.add_row(
                str(d.get("device", entry.device_id)),
                f"[{'green' if ok else 'red'}]{d.get('status', '?')}[/]",
                "" if d.get("version") is None else str(d["version"]),
                d.get("credential") or "",
                f"{(d.get('duration_ms') or 0) / 1000:.2f}",
                "" if ok else entry.message.split(": ", 2)[-1][:120],
            )
        console.print(table)
    counts = Table(show_header=True, title="summary")
    for column in ("devices", "changed", "unchanged", "failed", "status"):
        counts.add_column(column, justify="right")
    counts.add_row(
        str(counters.get("total", 0)),
        str(counters.get("changed", 0)),
        str(counters.get("unchanged", 0)),
        str(counters.get("failed", 0)),
        status,
    )
    console.print(counts)
    if message:
        console.print(message)


@backup_app.command("run")
def backup_run(
    device: Annotated[
        list[str] | None, typer.Option("--device", help="Device name (repeat for more).")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Devices with this tag (repeat for more).")
    ] = None,
    distributed: Annotated[
        bool,
        typer.Option(help="Leave the run to the Redis workers instead of collecting here."),
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Collect configurations now (all devices when no --device or --tag is given).

    Shows a progress bar and a summary table; the exit status is 1 if any device failed.
    """
    from labkeeper.core.observability import setup_logging
    from labkeeper.jobs import service as jobs
    from labkeeper.jobs.engine import run_job

    settings = get_settings()
    setup_logging("WARNING", settings.log_format)
    if distributed and not settings.redis_url:
        raise _fail("--distributed needs LABKEEPER_REDIS_URL (the workers' Redis)", 2)
    database = _database()
    try:
        run_id = _start(database, device or [], tag or [], local=not distributed)
        worker: threading.Thread | None = None
        if not distributed:
            # Claimed with a compare-and-set: if a worker took it first, we only watch.
            worker = threading.Thread(target=run_job, args=(database, run_id), daemon=True)
            worker.start()
        status, counters = _state(database, run_id)
        bar = Progress(
            TextColumn("[bold]backup[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not progress,
            transient=False,
        )
        try:
            with bar:
                task = bar.add_task("backup", total=None, detail="queued")
                while True:
                    status, counters = _state(database, run_id)
                    bar.update(
                        task,
                        total=counters.get("total") or None,
                        completed=counters.get("done", 0),
                        detail=(
                            f"{counters.get('changed', 0)} changed, "
                            f"{counters.get('unchanged', 0)} unchanged, "
                            f"{counters.get('failed', 0)} failed"
                        ),
                    )
                    if status in FINISHED:
                        break
                    time.sleep(0.2)
        except KeyboardInterrupt:
            err.print("interrupted: cancelling the run ...")
            with database.scope() as s:
                jobs.cancel(s, job_log_id=run_id, actor=_actor())
            if worker is not None:
                worker.join(30)
            status, counters = _state(database, run_id)
        if worker is not None:
            worker.join(5)
        _summary(database, run_id, status, counters)
    finally:
        database.dispose()
    if status != "succeeded" or counters.get("failed", 0):
        raise typer.Exit(1)


@backup_app.command("export-git")
def export_git(
    directory: Annotated[Path, typer.Argument(help="Directory of the git repository.")],
) -> None:
    """Write the stored configurations to a git repository (one commit per backup run).

    Run it again on the same directory to append what was stored since.
    """
    from labkeeper.backups.export import ExportError
    from labkeeper.backups.export import export_git as export

    database = _database()
    try:
        result = export(database, directory)
    except ExportError as exc:
        raise _fail(str(exc), 2) from None
    finally:
        database.dispose()
    if result.commits:
        console.print(
            f"{result.versions} versions of {result.devices} devices in {result.commits} "
            f"commits written to {result.path} (HEAD {result.head})"
        )
    else:
        console.print(f"{result.path} is up to date")


@backup_app.command("prune")
def prune() -> None:
    """Delete stored versions past the retention settings now (never a device's newest)."""
    from labkeeper.backups import service
    from labkeeper.core.time import utcnow

    database = _database()
    deleted = 0
    try:
        while True:
            with database.scope() as s:
                count = service.prune(s, now=utcnow())
            deleted += count
            if not count:
                break
    finally:
        database.dispose()
    console.print(f"deleted {deleted} stored versions")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored secret under the first key of LABKEEPER_SECRET_KEYS.

    Rotation without downtime: put the new key first and keep the old ones, restart, run this,
    then remove the old keys.
    """
    from labkeeper.backups import service
    from labkeeper.core.errors import AppError

    settings = get_settings()
    if len(settings.key_list()) < 2:
        err.print(
            "[yellow]note:[/yellow] only one key is configured; secrets are re-encrypted under it"
        )
    database = _database()
    try:
        with database.scope() as s:
            count = service.rotate_keys(s, actor=_actor())
    except AppError as exc:
        raise _fail(exc.message) from None
    finally:
        database.dispose()
    console.print(f"re-encrypted {count} secrets under the newest key")
