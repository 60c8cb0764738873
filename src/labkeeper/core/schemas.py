"""Base classes for request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Body(BaseModel):
    """A request body: unknown fields are refused (422 naming the field)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Read(BaseModel):
    """A response body built from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("the time needs a UTC offset, e.g. 2026-05-01T09:00:00+00:00")
    return value


# A datetime the client must send with an offset; naive times are a 422.
AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


# Ids in paths and bodies: bounded so no value can overflow a database integer into a 500.
MAX_ID = 2**31 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID, description="Numeric id")]
BodyId = Annotated[int, Field(ge=1, le=MAX_ID)]
