"""Database plumbing: one Base and metadata, engines for SQLite/PostgreSQL/MariaDB, sessions.

One transaction per request or job: the request dependency (`session_dependency`) and the job
wrapper (`session_scope`) are the only places that commit. Services only `flush()` (or `write`
rows past the ORM), and may end a transaction that has written nothing before slow work
(`release_locks`).
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy import JSON, MetaData, create_engine, event
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import (
    DeclarativeBase,
    ORMExecuteState,
    Session,
    SessionTransaction,
    sessionmaker,
)
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.expression import Executable
from starlette.requests import Request

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The one declarative base of labkeeper; every table hangs off its metadata."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


# Execution option that marks a connection as one that will write. On SQLite such
# transactions begin IMMEDIATE so writers queue on the lock instead of failing later
# with "database is locked" when they upgrade from a read lock.
WRITE_OPTION = "labkeeper_write"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own handling is lazy).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def _socket_of(dbapi_conn: Any) -> int | None:
    """The socket of a psycopg or PyMySQL connection, or None when it has none (closed)."""
    try:
        if hasattr(dbapi_conn, "_sock"):  # PyMySQL
            sock = dbapi_conn._sock
            return None if sock is None else int(sock.fileno())
        return int(dbapi_conn.fileno())  # psycopg
    except Exception:  # OSError, or psycopg's OperationalError once it is closed
        return None


def _check_alive(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """Before a pooled connection is handed out, make sure the server has not closed it.

    An idle connection has nothing to read; a server that restarted, timed it out or killed it
    has closed the socket (or left a last error message in it), which makes it readable. One
    poll() with no wait tells, instead of a `SELECT 1` round trip on every checkout (SQLAlchemy's
    pre-ping). A stale connection raises DisconnectionError: the pool drops it and connects anew.
    """
    fd = _socket_of(dbapi_conn)
    if fd is None or fd < 0:
        raise DisconnectionError("the connection is closed")
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    if poller.poll(0):
        raise DisconnectionError("the server closed the connection")


def make_engine(url: str, *, pool_size: int = 20, null_pool: bool = False) -> Engine:
    """Create an engine with the settings each backend needs to behave well under load."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        kwargs["pool_size"] = pool_size
        kwargs["max_overflow"] = pool_size
    else:
        kwargs["pool_size"] = pool_size
        kwargs["max_overflow"] = pool_size
        # Never freeze for 30 s when the pool runs dry: fail fast and let the client retry.
        kwargs["pool_timeout"] = 10
        kwargs["pool_recycle"] = 1800
    if parsed.get_backend_name() == "mysql":
        kwargs["isolation_level"] = "READ COMMITTED"
        kwargs.setdefault("connect_args", {})["charset"] = "utf8mb4"
    if null_pool:
        for key in ("pool_size", "max_overflow", "pool_timeout", "pool_recycle"):
            kwargs.pop(key, None)
        kwargs["poolclass"] = NullPool
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        _configure_sqlite(engine)
    else:
        event.listen(engine, "checkout", _check_alive)
    return engine


AfterCommit = Callable[[], None]


@dataclass
class Database:
    """An engine and the two session factories (read-mostly and write) built on it."""

    engine: Engine

    def __post_init__(self) -> None:
        self._read = sessionmaker(self.engine, expire_on_commit=False, autoflush=True)
        # Reads without a snapshot: on a database server each statement runs on its own, with
        # no BEGIN and COMMIT round trips (SQLite's are local calls; it keeps its snapshot).
        unsnapped = self.engine
        if self.engine.dialect.name != "sqlite":
            unsnapped = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._read_unsnapped = sessionmaker(unsnapped, expire_on_commit=False, autoflush=True)
        self._write = sessionmaker(
            self.engine.execution_options(**{WRITE_OPTION: True}),
            expire_on_commit=False,
            autoflush=True,
        )

    @property
    def backend(self) -> str:
        """sqlite, postgresql or mysql."""
        return self.engine.dialect.name

    def session(self, *, write: bool = True, snapshot: bool = True) -> Session:
        """A new session; `write=False` lets SQLite readers run beside a writer.

        `snapshot=False` (with `write=False`) is for short reads, such as a GET request's: each
        statement sees what is committed when it runs, which spares a database server two round
        trips. Server-side cursors (`yield_per`) need the snapshot.
        """
        if write:
            factory = self._write
        elif snapshot:
            factory = self._read
        else:
            factory = self._read_unsnapped
        session = factory()
        session.info["after_commit"] = []
        return session

    @contextlib.contextmanager
    def scope(self, *, write: bool = True) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on error, then run after-commit hooks."""
        session = self.session(write=write)
        try:
            yield session
            commit(session)
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def after_commit(session: Session, fn: AfterCommit) -> None:
    """Run `fn` once the session's transaction has committed (never if it rolls back)."""
    session.info.setdefault("after_commit", []).append(fn)


def commit(session: Session) -> None:
    """Commit, then run the hooks queued with `after_commit` (e.g. enqueue background work)."""
    session.commit()
    hooks: list[AfterCommit] = session.info.get("after_commit", [])
    session.info["after_commit"] = []
    for hook in hooks:
        hook()


# Whether a session's current transaction has written anything yet.
_WROTE = "labkeeper_wrote"


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _context: Any) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _executed(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_WROTE, None)


def has_written(session: Session) -> bool:
    """Whether the session's transaction has written, or holds changes it will write."""
    return bool(session.info.get(_WROTE) or session.new or session.dirty or session.deleted)


_PLAIN_ROWS = {"_result_disable_adapt_to_context": True}


def read(
    session: Session, statement: Executable, params: Any = None
) -> CursorResult[*tuple[Any, ...]]:
    """Run a SELECT of plain columns (no ORM entities) on the session's connection, past the
    ORM's execution layer (its events and result wrapping: a quarter of a short query's cost).

    Pending ORM changes are flushed first, as `session.execute` would. Rows are read by name
    and position, never by column object, so SQLAlchemy need not re-key its cached result
    columns to a statement built for this call (`_PLAIN_ROWS`: its own option, which the ORM
    sets for itself).
    """
    if session.autoflush:
        session.flush()
    return session.connection().execute(statement, params, execution_options=_PLAIN_ROWS)


def write(
    session: Session, statement: Executable, params: Any = None
) -> CursorResult[*tuple[Any, ...]]:
    """Run an INSERT, UPDATE or DELETE on the session's connection, past the ORM's unit of work.

    For rows nobody needs back as objects (audit rows, a booking request's rows) this costs a
    fraction of `session.add` and a flush. Pending ORM changes are not flushed first: write
    rows whose foreign keys point at rows already in the database, or flush before.
    """
    session.info[_WROTE] = True
    return session.connection().execute(statement, params)


def release_locks(session: Session) -> None:
    """End a transaction that has written nothing, so that slow work next (password hashing)
    holds no database lock meanwhile.

    On SQLite a write request's transaction holds the database's write lock from its first
    statement; hashing a password inside it would stall every other writer for as long. The
    next statement begins a new transaction, and ORM objects read so far reload on next use.
    A transaction that has written is left alone: its writes must commit with the rest.
    """
    if session.in_transaction() and not has_written(session):
        session.rollback()


def is_deadlock(exc: BaseException) -> bool:
    """Whether a database error is a deadlock or serialization failure worth retrying."""
    text = str(getattr(exc, "orig", exc)).lower()
    return any(
        marker in text
        for marker in ("deadlock", "could not serialize", "lock wait timeout", "database is locked")
    )


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def session_dependency(request: Request) -> AsyncIterator[Session]:
    """FastAPI dependency: the request's one transaction, committed here and only here.

    It runs where the route runs (see `labkeeper.core.routing`): its database calls are plain
    blocking calls, made inline and never across an await. Safe methods get a read session (on
    SQLite it does not take the write lock). A domain error that asks for it (`AppError.commit`,
    e.g. a counted login failure) still commits.
    """
    from labkeeper.core.errors import AppError

    existing = getattr(request.state, "db_session", None)
    if existing is not None:
        yield existing
        return
    db: Database = request.app.state.db
    reading = request.method in SAFE_METHODS
    session = db.session(write=not reading, snapshot=not reading)
    request.state.db_session = session
    try:
        yield session
        commit(session)
    except AppError as exc:
        if exc.commit:
            commit(session)
        else:
            session.rollback()
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
        request.state.db_session = None


# scope="function": the commit runs before the response is sent, so a failed commit reaches
# the client as an error instead of being lost after a 201.
DbSession = Annotated[Session, Depends(session_dependency, scope="function")]
