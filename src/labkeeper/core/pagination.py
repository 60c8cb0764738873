"""Lists answer `{items, total, limit, offset}` and take `limit`/`offset`."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

T = TypeVar("T")

MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    total: int
    limit: int
    offset: int


class PageParams(BaseModel):
    """Where a page starts and how long it is."""

    limit: int = 50
    offset: int = 0


async def page_params(
    limit: int = Query(50, ge=1, le=MAX_LIMIT, description="Rows per page (at most 500)"),
    offset: int = Query(0, ge=0, description="Rows to skip"),
) -> PageParams:
    """FastAPI dependency for `limit` and `offset` (async: no thread hop for arithmetic)."""
    return PageParams(limit=limit, offset=offset)


def fetch_page(
    session: Session, stmt: Select, params: PageParams, *, scalars: bool = True
) -> tuple[list[Any], int]:
    """Run a select for one page and count all its rows (two queries, whatever the page size)."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    paged = stmt.limit(params.limit).offset(params.offset)
    run: Any = session  # mypy 2.4.1 crashes inferring Session.execute's overloads here
    rows = list(run.scalars(paged)) if scalars else list(run.execute(paged))
    return rows, total
