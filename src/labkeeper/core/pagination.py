"""Lists answer `{items, total, limit, offset}` and take `limit`/`offset`."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from labkeeper.core.db import read

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
    session: Session,
    stmt: Select,
    params: PageParams,
    *,
    scalars: bool = True,
    plain: bool = False,
) -> tuple[list[Any], int]:
    """Run a select for one page and count all its rows (two queries, whatever the page size).

    `scalars=False` gives rows rather than the first column's values. `plain=True` says the
    select has columns only, no ORM entities: it then runs past the ORM's execution layer,
    which is a tenth of a 50-row list's cost.
    """
    count = select(func.count()).select_from(stmt.order_by(None).subquery())
    paged = stmt.limit(params.limit).offset(params.offset)
    if plain:
        return list(read(session, paged).all()), read(session, count).scalar() or 0
    run: Any = session  # mypy 2.4.1 crashes inferring Session.execute's overloads here
    rows = list(run.scalars(paged)) if scalars else list(run.execute(paged))
    return rows, session.scalar(count) or 0
