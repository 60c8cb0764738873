"""What every importer shares: the source reader, the run (one transaction), problems, counts.

How an import stays idempotent: every record is looked up in labkeeper by its *natural key*
before it is written (a user by username, a device by name, a tag by name, a booking by group,
device and time range, a configuration version by device and content hash, ...; each importer's
module docstring lists them). While a run goes on, an in-memory map from each source id to the
labkeeper id rewrites the foreign keys. Nothing about the source is stored, so running the same
import twice, or importing a database that shares users or devices with one imported before,
finds the records already there and writes nothing for them.

A run is one transaction: all of it is written, or nothing (`--dry-run` rolls it back at the end,
after doing every lookup and insert, so what it reports is what a real run would do).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.orm import Session

from labkeeper.core import audit
from labkeeper.core.audit import Actor
from labkeeper.core.db import Database, commit

IMPORT_ACTOR = Actor(user_id=None, username="import", role="system")

Progress = Callable[[str, int], None]
"""Called with (source table, rows done in it) after every row; the CLI draws the bar from it."""


@dataclass
class Problem:
    """A source record that was not brought over (`skipped`) or was brought over changed."""

    table: str
    ref: str
    reason: str
    skipped: bool = True


@dataclass
class Counts:
    """What happened to the rows of one source table."""

    source: int = 0
    created: int = 0
    updated: int = 0
    existing: int = 0
    skipped: int = 0


@dataclass
class Report:
    """The outcome of one import run."""

    kind: str
    dry_run: bool
    counts: dict[str, Counts] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def table(self, name: str) -> Counts:
        """The counters of a source table (created on first use, in source order)."""
        return self.counts.setdefault(name, Counts())

    @property
    def created(self) -> int:
        """Records written (or that would be, in a dry run)."""
        return sum(c.created for c in self.counts.values())

    @property
    def skipped(self) -> int:
        """Source records not brought over."""
        return sum(c.skipped for c in self.counts.values())


class ImportError_(Exception):
    """The import cannot start (unreadable source, missing key...)."""


def source_engine(url: str) -> Engine:
    """An engine on the source database: a SQLAlchemy URL (sqlite:///..., mysql://...)."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ImportError_(f"not a database URL: {url!r}") from exc
    if parsed.drivername in ("mysql", "mariadb", "mariadb+pymysql"):
        parsed = parsed.set(drivername="mysql+pymysql")
    if parsed.get_backend_name() not in ("sqlite", "mysql", "postgresql"):
        raise ImportError_(f"unsupported source database {parsed.get_backend_name()!r}")
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "mysql":
        kwargs["connect_args"] = {"charset": "utf8mb4"}
    return create_engine(parsed, **kwargs)


class Source:
    """Rows of the source database as plain dicts, read without type conversion.

    Raw reads (no reflected types) survive what the seed systems actually stored: timestamps as
    strings in any ISO form, JSON as text, booleans as 0/1.
    """

    def __init__(self, url: str) -> None:
        self.engine = source_engine(url)
        try:
            self.tables = set(inspect(self.engine).get_table_names())
        except Exception as exc:
            self.engine.dispose()
            raise ImportError_(f"cannot read the source database: {exc}") from exc

    def count(self, table: str) -> int:
        """Rows in a source table (0 when it does not exist)."""
        if table not in self.tables:
            return 0
        quoted = self.engine.dialect.identifier_preparer.quote(table)
        with self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT COUNT(*) FROM {quoted}")).scalar_one())

    def rows(self, table: str, order_by: str | None = None) -> list[dict[str, Any]]:
        """Every row of a source table, in primary key (or the given column's) order."""
        if table not in self.tables:
            return []
        prep = self.engine.dialect.identifier_preparer
        columns = {c["name"] for c in inspect(self.engine).get_columns(table)}
        key = order_by if order_by in columns else None
        if key is None:
            pk = inspect(self.engine).get_pk_constraint(table).get("constrained_columns") or []
            key = pk[0] if pk else None
        sql = f"SELECT * FROM {prep.quote(table)}"
        if key:
            sql += f" ORDER BY {prep.quote(key)}"
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql))]

    def close(self) -> None:
        """Close the source connections."""
        self.engine.dispose()


# -- value conversion ----------------------------------------------------------------------


def dt(value: Any) -> datetime | None:
    """A source timestamp as an aware UTC datetime (the seeds wrote naive UTC); None if empty.

    Raises ValueError for text that is not a timestamp.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        raw = str(value).strip()
        if raw.endswith("Z"):
            raw = raw[:-1] + "+00:00"
        moment = datetime.fromisoformat(raw)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def js(value: Any) -> Any:
    """A source JSON value: decoded when stored as text, as is otherwise."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def flag(value: Any, default: bool = False) -> bool:
    """A source boolean (0/1, true/false, 'yes'...)."""
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "t", "yes", "y", "on")
    return bool(value)


def clean(value: Any) -> str | None:
    """Text with surrounding blanks removed; None when empty."""
    if value is None:
        return None
    out = str(value).strip()
    return out or None


class Run:
    """One import: a write session, the report, the progress hook and the id maps."""

    def __init__(
        self, database: Database, kind: str, *, dry_run: bool, progress: Progress | None
    ) -> None:
        self.session: Session = database.session()
        self.report = Report(kind=kind, dry_run=dry_run)
        self.progress = progress
        self.maps: dict[str, dict[Any, int]] = {}

    def map(self, name: str) -> dict[Any, int]:
        """The source-id → labkeeper-id map of one kind of record."""
        return self.maps.setdefault(name, {})

    def each(self, source: Source, table: str, order_by: str | None = None) -> Iterator[Any]:
        """The rows of a source table, counted and reported to the progress hook."""
        rows = source.rows(table, order_by)
        counts = self.report.table(table)
        counts.source += len(rows)
        for done, row in enumerate(rows, 1):
            yield row
            if self.progress:
                self.progress(table, done)

    def created(self, table: str) -> None:
        """A source row became a new labkeeper record."""
        self.report.table(table).created += 1

    def existing(self, table: str) -> None:
        """A source row was already in labkeeper (an earlier import, or merged by its key)."""
        self.report.table(table).existing += 1

    def add(self, table: str, record: Any, *, flush: bool = True) -> Any:
        """Write a new labkeeper record for a source row and count it; flushed (so it has its
        id) unless `flush` is False (rows nothing refers to, written many at a time)."""
        self.session.add(record)
        if flush:
            self.session.flush()
        self.created(table)
        return record

    def skip(self, table: str, ref: Any, reason: str) -> None:
        """A source row that cannot be brought over, and why."""
        self.report.table(table).skipped += 1
        self.report.problems.append(Problem(table, str(ref), reason, skipped=True))

    def note(self, table: str, ref: Any, reason: str) -> None:
        """A source row brought over with a change worth knowing about."""
        self.report.problems.append(Problem(table, str(ref), reason, skipped=False))

    def finish(self) -> Report:
        """Commit (or, in a dry run, roll back) and close; returns the report."""
        try:
            if self.report.dry_run:
                self.session.rollback()
            else:
                audit.record(
                    self.session,
                    IMPORT_ACTOR,
                    f"import.{self.report.kind}",
                    "import",
                    None,
                    payload={
                        name: {"source": c.source, "created": c.created, "skipped": c.skipped}
                        for name, c in self.report.counts.items()
                    },
                    message=f"{self.report.created} records imported, "
                    f"{self.report.skipped} not brought over",
                )
                commit(self.session)
        finally:
            self.session.close()
        return self.report

    def abort(self) -> None:
        """Roll back everything (an unexpected error)."""
        self.session.rollback()
        self.session.close()
