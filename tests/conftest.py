"""Real databases for the suite: SQLite always, PostgreSQL and MariaDB where reachable.

With LABKEEPER_REQUIRE_SERVICES=1 (as in CI) a service that cannot be reached fails the run
instead of skipping. Every test that uses `db` runs once per backend.
"""

from __future__ import annotations

import os

os.environ["LABKEEPER_ENV"] = "test"
# A shell that runs the demo (`LABKEEPER_DEMO=1`) must not make every test app start simulators.
os.environ.pop("LABKEEPER_DEMO", None)
os.environ.setdefault("LABKEEPER_SECRET_KEYS", "test-key-0123456789-0123456789-0123456789")

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from labkeeper.admin.service import forget_snapshot as forget_settings_snapshot
from labkeeper.config import Settings, get_settings
from labkeeper.core import migrate
from labkeeper.core.db import Database, make_engine
from labkeeper.core.security import reset_caches
from labkeeper.models import metadata

REQUIRE = os.environ.get("LABKEEPER_REQUIRE_SERVICES") == "1"
PG_ADMIN = os.environ.get(
    "LABKEEPER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MY_ADMIN = os.environ.get("LABKEEPER_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/mysql")
REDIS_URL = os.environ.get("LABKEEPER_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


SERVICES = {
    "postgresql": _port_open("127.0.0.1", 5432),
    "mariadb": _port_open("127.0.0.1", 3306),
    "redis": _port_open("127.0.0.1", 6379),
}
BACKENDS = ["sqlite", "postgresql", "mariadb"]
if os.environ.get("LABKEEPER_TEST_BACKENDS"):
    BACKENDS = [b for b in BACKENDS if b in os.environ["LABKEEPER_TEST_BACKENDS"].split(",")]


def need_service(name: str) -> None:
    """Skip (or, in CI, fail) when a service is not reachable."""
    if SERVICES.get(name):
        return
    message = f"{name} is not reachable on 127.0.0.1"
    if REQUIRE:
        pytest.fail(message + " and LABKEEPER_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _db_name() -> str:
    # Unique per process: several test runs (xdist workers, or people) may share one server.
    return f"labkeeper_test_{_worker()}_{os.getpid()}"


def _drop_database(backend: str) -> None:
    name = _db_name()
    with contextlib.suppress(Exception):
        if backend == "postgresql":
            admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        elif backend == "mariadb":
            admin = create_engine(MY_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            admin.dispose()


def _create_database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    name = _db_name()
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "labkeeper.db"
        return f"sqlite:///{path}"
    if backend == "postgresql":
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    admin = create_engine(MY_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        conn.execute(
            text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        )
    admin.dispose()
    return MY_ADMIN.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session", params=BACKENDS)
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """A migrated database on one backend, shared by the tests of this worker."""
    backend = request.param
    if backend != "sqlite":
        need_service(backend)
    url = _create_database(backend, tmp_path_factory)
    database = Database(make_engine(url, pool_size=40))
    migrate.upgrade(database.engine)
    yield database
    database.dispose()
    _drop_database(backend)


def _truncate(database: Database) -> None:
    # DELETE in dependency order: on small tables it is far cheaper than TRUNCATE (about
    # half a second for all tables on PostgreSQL). Ids keep counting up, as they do in life.
    tables = list(reversed(metadata.sorted_tables))
    with database.engine.begin() as conn:
        for table in tables:
            conn.execute(table.delete())


@pytest.fixture
def db(database: Database) -> Iterator[Database]:
    """The backend's database, emptied before the test."""
    reset_caches()
    _truncate(database)
    forget_settings_snapshot()
    yield database


@pytest.fixture
def settings(db: Database) -> Settings:
    """Settings pointing at the test database."""
    url = db.engine.url.render_as_string(hide_password=False)
    return Settings(database_url=url, env="test", run_scheduler=False)


@pytest.fixture
def app(settings: Settings, db: Database) -> Any:
    """The application on the test database, without background workers."""
    from labkeeper.app import create_app

    return create_app(settings, db=db, start_background=False)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    """An HTTP client for the app (in-process)."""
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


@dataclass
class Account:
    id: int
    username: str
    password: str
    role: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def make_user(db: Database) -> Any:
    """Create a user with a role and an API token: `make_user("admin")`."""
    from labkeeper.auth import service
    from labkeeper.auth.schemas import TokenCreate, UserCreate
    from labkeeper.core.audit import SYSTEM

    counter = {"n": 0}

    def _make(
        role: str = "member", username: str | None = None, password: str = "s3cret-pass!"
    ) -> Account:
        counter["n"] += 1
        name = username or f"{role}{counter['n']}"
        with db.scope() as s:
            user = service.create_user(
                s,
                data=UserCreate(
                    username=name,
                    password=password,
                    role=role,  # type: ignore[arg-type]
                    email=f"{name}@lab.example",
                ),
                actor=SYSTEM,
                check_grant=False,
            )
            _, token = service.create_token(
                s, principal=SYSTEM, data=TokenCreate(name="test"), user_id=user.id
            )
            return Account(user.id, name, password, role, token)

    return _make


@pytest.fixture
def admin(make_user: Any) -> Account:
    """A signed-in admin."""
    return make_user("admin", username="root-admin")


@pytest.fixture
def redis_url() -> str:
    """The test Redis, or skip/fail when Redis is down.

    Not flushed: tests running in parallel share it, so each one keys its queues by a
    namespace of its own.
    """
    need_service("redis")
    return REDIS_URL


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
