"""Pages of a list: the ORM path and the plain-rows path answer alike."""

from __future__ import annotations

from sqlalchemy import select

from labkeeper.admin.models import AuditLog
from labkeeper.core.pagination import PageParams, fetch_page


def test_plain_rows_page_like_orm_rows_and_see_pending_changes(db):
    stmt = select(AuditLog.id, AuditLog.action).where(AuditLog.entity_type == "page")
    with db.scope() as s:
        for i in range(7):
            s.add(AuditLog(action=f"a{i}", entity_type="page"))
        # Not flushed yet: the plain path must flush first, as the ORM path would.
        page = PageParams(limit=3, offset=3)
        plain, plain_total = fetch_page(s, stmt.order_by(AuditLog.action), page, plain=True)
        orm, orm_total = fetch_page(s, stmt.order_by(AuditLog.action), page, scalars=False)
    assert plain_total == orm_total == 7
    assert [r.action for r in plain] == [r.action for r in orm] == ["a3", "a4", "a5"]
    assert [tuple(r) for r in plain] == [tuple(r) for r in orm]
