"""Line diffs of stored configurations: counts for each new version, unified diffs for people."""

from __future__ import annotations

import difflib

__all__ = ["stats", "unified"]


def _lines(text: str) -> list[str]:
    return text.splitlines()


def stats(old: str | None, new: str) -> tuple[int, int]:
    """(lines added, lines removed) going from `old` to `new` (everything is new without old)."""
    new_lines = _lines(new)
    if old is None:
        return len(new_lines), 0
    old_lines = _lines(old)
    added = removed = 0
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("replace", "delete"):
            removed += i2 - i1
        if tag in ("replace", "insert"):
            added += j2 - j1
    return added, removed


def unified(old: str, new: str, *, old_name: str, new_name: str, context: int = 3) -> str:
    """A unified diff (`diff -u` style) between two texts; empty when they are equal."""
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=old_name,
            tofile=new_name,
            n=context,
        )
    )
