"""`labkeeper backup export-git DIR`: the stored configurations as a git repository (dulwich).

One file per device (`<device name>.cfg`) at the top of the tree; one commit per backup run
(the versions a run stored, committed at the time they were collected), one per version stored
outside a run. Exporting again into the same directory appends only what was stored since: each
commit message ends with a `Labkeeper-Backup-Id:` trailer naming the newest version it holds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dulwich import porcelain
from dulwich.objects import Blob, Commit, ObjectID, ShaFile, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo

from labkeeper.backups import repository
from labkeeper.core.db import Database

BRANCH = Ref(b"refs/heads/main")
HEAD = Ref(b"HEAD")
TRAILER = "Labkeeper-Backup-Id:"
# A JSON object {device id: file name} at the top of the tree.
INDEX = b".labkeeper-devices.json"
AUTHOR = b"labkeeper <labkeeper@localhost>"
# Objects are written in packs of about this many.
PACK_OBJECTS = 5000
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


class ExportError(Exception):
    """The directory cannot take an export."""


@dataclass
class ExportResult:
    """What one export wrote."""

    path: Path
    commits: int
    versions: int
    devices: int
    head: str | None


def file_name(device_name: str, device_id: int) -> str:
    """The file a device's configuration is written to: its name, made safe.

    A name that had to be changed gets the device's id as well, so two devices never share a
    file (`core/1` and `core_1`).
    """
    safe = _UNSAFE.sub("_", device_name.strip()) or "device"
    if safe.startswith("."):
        safe = "_" + safe
    return f"{safe}.cfg" if safe == device_name else f"{safe}-{device_id}.cfg"


def _load_index(repo: Repo, entries: dict[bytes, ObjectID]) -> dict[str, str]:
    # Which file holds which device (by id), so a renamed device moves instead of leaving a
    # stale copy behind.
    sha = entries.get(INDEX)
    if sha is None:
        return {}
    blob = repo[sha]
    assert isinstance(blob, Blob)
    loaded = json.loads(blob.data.decode())
    return {str(k): str(v) for k, v in loaded.items()}


def _last_exported(repo: Repo) -> tuple[int, dict[bytes, ObjectID], ObjectID | None]:
    try:
        head = repo.refs[BRANCH]
    except KeyError:
        return 0, {}, None
    commit = repo[head]
    assert isinstance(commit, Commit)
    match = re.search(rf"^{TRAILER}\s*(\d+)\s*$", commit.message.decode(), re.MULTILINE)
    if match is None:
        raise ExportError(f"{repo.path} holds commits that labkeeper did not write")
    tree = repo[commit.tree]
    assert isinstance(tree, Tree)
    entries = {item.path: item.sha for item in tree.items()}
    return int(match.group(1)), entries, head


def _groups(rows: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    # Consecutive versions of one run become one commit; a version stored by hand is its own.
    group: list[tuple[Any, ...]] = []
    for row in rows:
        run = row[6]
        if group and (run is None or group[-1][6] != run):
            yield group
            group = []
        group.append(row)
    if group:
        yield group


def _message(group: list[tuple[Any, ...]]) -> str:
    run = group[0][6]
    title = (
        f"backup run {run}: {len(group)} configuration(s) changed"
        if run is not None
        else f"{group[0][2]}: version {group[0][3]} stored by hand"
    )
    lines = [
        f"{name}: version {version} (+{added} -{removed})"
        for _, _, name, version, _, _, _, added, removed in group
    ]
    return f"{title}\n\n" + "\n".join(lines) + f"\n\n{TRAILER} {group[-1][0]}\n"


def export_git(db: Database, directory: Path) -> ExportResult:
    """Write every stored version not yet exported to the git repository in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / ".git").exists():
        repo = Repo(str(directory))
    elif any(directory.iterdir()):
        raise ExportError(f"{directory} is not empty and not a git repository")
    else:
        repo = Repo.init(str(directory), default_branch=b"main")
    try:
        last_id, entries, parent = _last_exported(repo)
        index = _load_index(repo, entries)
        pending: list[tuple[ShaFile, str | None]] = []
        commits = versions = 0
        devices: set[int] = set()
        with db.scope(write=False) as s:
            for group in _groups(repository.versions_for_export(s, after_id=last_id)):
                for _, device_id, name, _, content, _, _, _, _ in group:
                    blob = Blob.from_string(content.encode("utf-8"))
                    pending.append((blob, None))
                    path = file_name(name, device_id)
                    old = index.get(str(device_id))
                    if old and old != path:
                        entries.pop(old.encode(), None)  # renamed since the last commit
                    index[str(device_id)] = path
                    entries[path.encode()] = blob.id
                    devices.add(device_id)
                    versions += 1
                listing = Blob.from_string(
                    json.dumps(index, indent=1, sort_keys=True).encode() + b"\n"
                )
                pending.append((listing, None))
                entries[INDEX] = listing.id
                tree = Tree()
                for entry, sha in sorted(entries.items()):
                    tree.add(entry, 0o100644, sha)
                when = int(max(row[5] for row in group).timestamp())
                commit = Commit()
                commit.tree = tree.id
                commit.parents = [parent] if parent else []
                commit.author = commit.committer = AUTHOR
                commit.author_time = commit.commit_time = when
                commit.author_timezone = commit.commit_timezone = 0
                commit.encoding = b"UTF-8"
                commit.message = _message(group).encode()
                pending += [(tree, None), (commit, None)]
                parent = commit.id
                commits += 1
                if len(pending) >= PACK_OBJECTS:
                    repo.object_store.add_objects(pending)
                    pending = []
        if pending:
            repo.object_store.add_objects(pending)
        if commits and parent is not None:
            repo.refs[BRANCH] = parent
            repo.refs.set_symbolic_ref(HEAD, BRANCH)
            porcelain.reset(repo, "hard", parent)
        head = parent.decode() if parent else None
    finally:
        repo.close()
    return ExportResult(
        path=directory, commits=commits, versions=versions, devices=len(devices), head=head
    )
