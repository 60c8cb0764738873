"""Placeholder until the jobs engine lands."""

from __future__ import annotations

from typing import Any


class _Handle:
    def stop(self) -> None:
        pass


def start_engine(database: Any, settings: Any) -> _Handle:
    """Start the background engine (placeholder)."""
    return _Handle()
