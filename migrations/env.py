"""Alembic environment: one linear history over labkeeper's single metadata."""

from __future__ import annotations

from alembic import context

from labkeeper.config import get_settings
from labkeeper.core.db import make_engine
from labkeeper.models import metadata

config = context.config


def _include(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    # Objects created by hand in migrations for one backend only (PostgreSQL's exclusion
    # constraint) are not in the models; do not report them as drift.
    return not (type_ == "index" and name and name.startswith("ex_"))


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    engine = make_engine(url, null_pool=True)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
        include_object=_include,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `labkeeper db upgrade`")
run_migrations()
