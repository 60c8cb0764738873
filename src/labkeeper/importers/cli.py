"""`labkeeper import scheduler-db|netraven-db|devices` and `labkeeper export devices`.

Every import shows a progress bar over the source's rows, then a summary table (per source
table: rows read, created, updated, already there, not imported) and the list of records that
were not brought over, or were brought over changed, with the reason. `--dry-run` does the whole
import in a transaction that is rolled back, so it reports exactly what a real run would do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from labkeeper.config import get_settings

if TYPE_CHECKING:
    from labkeeper.core.db import Database
    from labkeeper.importers.common import Report

import_app = typer.Typer(
    help="Bring a running lab over: the seed systems' databases, device lists.",
    no_args_is_help=True,
)
export_app = typer.Typer(help="Write labkeeper's records to files.", no_args_is_help=True)

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")]
ShowProgress = Annotated[bool, typer.Option(help="Show a progress bar.")]


def _database() -> Database:
    from labkeeper.core import migrate
    from labkeeper.core.db import Database, make_engine

    database = Database(make_engine(get_settings().database_url, pool_size=2))
    if not migrate.is_current(database.engine):
        database.dispose()
        raise _fail("the database schema is not current; run `labkeeper db upgrade` first")
    return database


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _with_progress(
    label: str, total: int, show: bool, work: Callable[[Callable[[str, int], None]], Report]
) -> Report:
    bar = Progress(
        TextColumn(f"[bold]{label}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show,
        transient=False,
    )
    done_before: dict[str, int] = {}
    state = {"done": 0}

    with bar:
        task = bar.add_task(label, total=total or None, detail="")

        def step(table: str, done: int) -> None:
            state["done"] += done - done_before.get(table, 0)
            done_before[table] = done
            bar.update(task, completed=state["done"], detail=table)

        report = work(step)
        bar.update(task, completed=total, detail="done")
    return report


def _summary(report: Report) -> None:
    # One line per problem (not a table): easy to read, grep and paste into a ticket.
    if report.problems:
        console.print("[bold]records not brought over, or brought over changed[/bold]")
        for p in report.problems:
            mark = "[red]not imported[/red]" if p.skipped else "[yellow]changed[/yellow]"
            console.print(f"  {p.table} {p.ref}: {mark}: {p.reason}", highlight=False)
    counts = Table(title="summary" + (" (dry run: nothing was written)" if report.dry_run else ""))
    for column in ("source table", "read", "created", "updated", "already there", "not imported"):
        counts.add_column(column, justify="left" if column == "source table" else "right")
    for name, c in report.counts.items():
        counts.add_row(
            name,
            str(c.source),
            str(c.created),
            str(c.updated),
            str(c.existing),
            f"[red]{c.skipped}[/red]" if c.skipped else "0",
        )
    console.print(counts)
    verb = "would be imported" if report.dry_run else "imported"
    console.print(
        f"{report.created} records {verb}; {report.skipped} not brought over"
        + (" (listed above)" if report.skipped else "")
    )


def _run(work: Callable[[Database], Report]) -> None:
    from labkeeper.core.errors import AppError
    from labkeeper.importers.common import ImportError_

    database = _database()
    try:
        report = work(database)
    except ImportError_ as exc:
        raise _fail(str(exc), 2) from None
    except AppError as exc:
        raise _fail(exc.message) from None
    finally:
        database.dispose()
    _summary(report)


@import_app.command("scheduler-db")
def import_scheduler(
    url: Annotated[
        str, typer.Argument(help="The scheduler's database: sqlite:///scheduler.db, mysql://...")
    ],
    dry_run: DryRun = False,
    progress: ShowProgress = True,
) -> None:
    """Import a testbed scheduler database: users (password hashes kept), devices, bookings..."""
    from labkeeper.importers import scheduler
    from labkeeper.importers.common import ImportError_, Source

    def work(database: Database) -> Report:
        try:
            source = Source(url)
            total = scheduler.total_rows(source)
            source.close()
        except ImportError_:
            raise
        return _with_progress(
            "scheduler-db",
            total,
            progress,
            lambda step: scheduler.run_import(database, url, dry_run=dry_run, progress=step),
        )

    _run(work)


@import_app.command("netraven-db")
def import_netraven(
    url: Annotated[
        str, typer.Argument(help="NetRaven's database: postgresql://..., sqlite:///...")
    ],
    source_passphrase: Annotated[
        str | None,
        typer.Option(
            envvar="NETRAVEN_ENCRYPTION_KEY",
            help="NetRaven's NETRAVEN_ENCRYPTION_KEY, to decrypt its credentials.",
        ),
    ] = None,
    source_key_file: Annotated[
        Path | None,
        typer.Option(
            help="File with NetRaven's Fernet keys: JSON {key_id: key}, or lines 'key_id: key'."
        ),
    ] = None,
    backup_dir: Annotated[
        Path | None,
        typer.Option(help="Directory holding NetRaven's backup files (relative file names)."),
    ] = None,
    dry_run: DryRun = False,
    progress: ShowProgress = True,
) -> None:
    """Import a NetRaven database: devices, tags and rules, credentials, backups, jobs, logs..."""
    from labkeeper.importers import netraven
    from labkeeper.importers.common import Source

    def work(database: Database) -> Report:
        source = Source(url)
        total = netraven.total_rows(source)
        source.close()
        return _with_progress(
            "netraven-db",
            total,
            progress,
            lambda step: netraven.run_import(
                database,
                url,
                dry_run=dry_run,
                progress=step,
                passphrase=source_passphrase,
                key_file=source_key_file,
                backup_dir=backup_dir,
            ),
        )

    _run(work)


@import_app.command("devices")
def import_devices(
    file: Annotated[Path, typer.Argument(help="CSV file with a header (see `export devices`).")],
    dry_run: DryRun = False,
    progress: ShowProgress = True,
) -> None:
    """Create or update devices from a CSV file (matched by name)."""
    from labkeeper.importers import devices_csv

    def work(database: Database) -> Report:
        total = len(devices_csv.read_rows(file))
        return _with_progress(
            "devices",
            total,
            progress,
            lambda step: devices_csv.run_import(database, file, dry_run=dry_run, progress=step),
        )

    _run(work)


@export_app.command("devices")
def export_devices(
    file: Annotated[Path, typer.Argument(help="CSV file to write (`import devices` reads it).")],
) -> None:
    """Write every device to a CSV file."""
    from labkeeper.importers import devices_csv

    database = _database()
    try:
        count = devices_csv.export(database, file)
    except OSError as exc:
        raise _fail(f"cannot write {file}: {exc}") from None
    finally:
        database.dispose()
    console.print(f"{count} devices written to {file}")
