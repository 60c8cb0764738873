"""List endpoints cost the same number of queries whatever the page size."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from sqlalchemy import event

from labkeeper.backups.models import ConfigBackup, Credential, CredentialTag
from labkeeper.core.time import utcnow
from labkeeper.inventory.models import Tag
from labkeeper.jobs.models import ScheduledJob, ScheduledJobTag
from tests.backups.conftest import add_devices


@contextlib.contextmanager
def _counting(engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _add(db, start: int, count: int) -> None:
    names = [f"r{start + i:03d}" for i in range(count)]
    ids = add_devices(db, None, names=names, ports=[None] * count, tags=())
    now = utcnow()
    with db.scope() as s:
        tags = [Tag(name=f"t{start + i}") for i in range(count)]
        s.add_all(tags)
        s.flush()
        for i, (device_id, tag) in enumerate(zip(ids, tags, strict=True)):
            s.add(
                ConfigBackup(
                    device_id=device_id,
                    version=1,
                    content="hostname r\nsnmp-server location rack-1\n",
                    content_hash="0" * 64,
                    size_bytes=40,
                    collected_at=now,
                )
            )
            cred = Credential(name=f"c{start + i:03d}", username="u", password_enc="x")
            job = ScheduledJob(
                name=f"j{start + i:03d}",
                schedule_type="interval",
                interval_seconds=3600,
                target_type="tags",
            )
            s.add_all([cred, job])
            s.flush()
            s.add_all(
                [
                    CredentialTag(credential_id=cred.id, tag_id=tag.id),
                    ScheduledJobTag(scheduled_job_id=job.id, tag_id=tag.id),
                ]
            )


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/credentials", {}),
        ("/backups", {}),
        ("/backups", {"latest_only": True}),
        ("/backups/search", {"q": "rack-1"}),
        ("/scheduled-jobs", {}),
    ],
)
def test_list_endpoints_cost_the_same_for_3_and_60_rows(db, api, path, params):
    _add(db, 0, 3)
    api.call("GET", path, params=params)  # warm up: token "last used" write, caches
    with _counting(db.engine) as few:
        page = api.call("GET", path, params={**params, "limit": 500})
    assert page["total"] == 3
    _add(db, 3, 57)
    with _counting(db.engine) as many:
        page = api.call("GET", path, params={**params, "limit": 500})
    assert page["total"] == 60 and len(page["items"]) == 60
    assert len(many) == len(few), many
