"""docs/schema.md stays true: to the models (always) and to the seed documents (when present).

Part 1 of the document maps every seed table and column to labkeeper (or says why it was
dropped); Part 2 lists every labkeeper table and column. No database is needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from labkeeper.models import metadata

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "schema.md"
# CI checks out shared/ beside the repository clone, as in /work/{main,shared}.
SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
NETRAVEN_PREFIX = "netraven."

BACKTICKED = re.compile(r"`([^`]+)`")
DOTTED_REF = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)`")
HEADING2 = re.compile(r"^##\s+(.*?)\s*$")
HEADING3_TABLE = re.compile(r"^###\s+`([^`]+)`\s*$")
BULLET_COLUMN = re.compile(r"^[-*]\s+`([^`]+)`")


# --- the document --------------------------------------------------------------------------


@dataclass(frozen=True)
class MappingRow:
    line: int
    seed: str
    labkeeper: str
    notes: str


def _doc_lines() -> list[str]:
    assert DOC.is_file(), f"{DOC} is missing"
    return DOC.read_text(encoding="utf-8").splitlines()


def _part(title_start: str) -> list[tuple[int, str]]:
    """The (line number, text) pairs of the `## <title_start>...` section, up to the next `## `."""
    out: list[tuple[int, str]] = []
    inside = False
    for number, line in enumerate(_doc_lines(), start=1):
        heading = HEADING2.match(line)
        if heading:
            inside = heading.group(1).lower().startswith(title_start.lower())
            continue
        if inside:
            out.append((number, line))
    assert out, f"{DOC.name} has no section starting '## {title_start}'"
    return out


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def mapping_rows() -> list[MappingRow]:
    """Part 1's rows: `| `seed.column` | labkeeper | notes |`."""
    rows = []
    for number, line in _part("Part 1"):
        if not line.lstrip().startswith("|"):
            continue
        cells = _cells(line)
        first = BACKTICKED.fullmatch(cells[0])
        if not first:  # header and separator rows
            continue
        assert len(cells) == 3, f"{DOC.name}:{number}: expected 3 cells, got {len(cells)}: {line}"
        rows.append(MappingRow(number, first.group(1), cells[1], cells[2]))
    assert rows, f"{DOC.name}: Part 1 has no mapping rows"
    return rows


def table_sections() -> dict[str, list[str]]:
    """Part 2's `### `table`` sections and the columns their bullets list, in order."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in _part("Part 2"):
        heading = HEADING3_TABLE.match(line)
        if heading:
            name = heading.group(1)
            assert name not in sections, f"{DOC.name}:{number}: second section for `{name}`"
            current = sections[name] = []
            continue
        if line.startswith("#"):
            current = None
            continue
        bullet = BULLET_COLUMN.match(line)
        if bullet and current is not None:
            current.append(bullet.group(1))
    return sections


# --- the seeds -----------------------------------------------------------------------------


def _scheduler_columns(text: str) -> set[str]:
    """`table.column` for every row of every `### N. `table`` section of the scheduler seed."""
    heading = re.compile(r"^###\s+(?:\d+\.\s*)?`([^`]+)`")
    row = re.compile(r"^\|\s*`([^`]+)`\s*\|")
    columns: set[str] = set()
    tables: list[str] = []
    table: str | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            match = heading.match(line)
            table = match.group(1).strip() if match else None
            if table:
                tables.append(table)
            continue
        match = row.match(line.strip())
        if table and match:
            columns.add(f"{table}.{match.group(1).strip()}")
    # The seed states how many tables it documents; a parser that finds fewer has broken.
    stated = re.search(r"consists of \*\*(\d+) tables\*\*", text)
    if stated:
        assert len(tables) == int(stated.group(1)), (
            f"scheduler seed says {stated.group(1)} tables, parser found {len(tables)}: {tables}"
        )
    tabled = {column.split(".", 1)[0] for column in columns}
    assert tabled == set(tables), (
        f"scheduler seed sections without column rows: {set(tables) - tabled}"
    )
    return columns


def _column_names(cell: str) -> list[str]:
    """`id (String)` -> [id]; `username, email, password_hash` -> the three names."""
    cell = re.sub(r"\([^)]*\)", "", cell).replace("`", "")
    return [name.strip() for name in cell.split(",") if name.strip()]


def _netraven_columns(text: str) -> set[str]:
    """`netraven.table.column` for each table's primary key, important columns and FK columns."""
    columns: set[str] = set()
    lines = text.splitlines()
    index = 0
    # Tables whose header row names "Primary Key" and "Important Columns" (there are two).
    while index < len(lines):
        header = _cells(lines[index]) if lines[index].lstrip().startswith("|") else []
        if "Primary Key" in header and "Important Columns" in header:
            name_at = header.index("Table Name") if "Table Name" in header else 0
            key_at, important_at = header.index("Primary Key"), header.index("Important Columns")
            index += 1
            while index < len(lines) and lines[index].lstrip().startswith("|"):
                cells = _cells(lines[index])
                index += 1
                if set("".join(cells)) <= set("-: "):  # separator row
                    continue
                table = cells[name_at].replace("`", "").strip()
                for name in _column_names(cells[key_at]) + _column_names(cells[important_at]):
                    columns.add(f"{NETRAVEN_PREFIX}{table}.{name}")
            continue
        index += 1
    # "## Foreign Key References": "### device_tags Table" then "- device_id → devices.id".
    inside, table = False, None
    for line in lines:
        if line.startswith("## "):
            inside = "foreign key" in line.lower()
            continue
        if not inside:
            continue
        if line.startswith("### "):
            table = re.sub(r"\s+table$", "", line[4:].replace("`", "").strip(), flags=re.I)
            continue
        match = re.match(r"^[-*]\s+`?([A-Za-z_][A-Za-z0-9_]*)`?\s*(?:→|->)", line.strip())
        if table and match:
            columns.add(f"{NETRAVEN_PREFIX}{table}.{match.group(1)}")
    return columns


def seed_columns() -> set[str]:
    """Every seed column as Part 1 names it, read from both seed documents."""
    if not SEEDS.is_dir():
        pytest.skip(f"seed documents not found at {SEEDS} (shared/ is not beside the repository)")
    scheduler = netraven = None
    for path in sorted(SEEDS.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        if "Scheduler Database Schema" in text:
            scheduler = text
        elif "NetRaven" in text and "Important Columns" in text:
            netraven = text
    assert scheduler is not None, f"no scheduler seed document (the 13-table schema) in {SEEDS}"
    assert netraven is not None, f"no NetRaven seed document (table mapping) in {SEEDS}"
    return _scheduler_columns(scheduler) | _netraven_columns(netraven)


# --- tests ---------------------------------------------------------------------------------


def test_part1_rows_are_well_formed() -> None:
    problems = []
    seen: set[str] = set()
    for row in mapping_rows():
        where = f"line {row.line} `{row.seed}`"
        if row.seed in seen:
            problems.append(f"{where}: second row for this seed column")
        seen.add(row.seed)
        if row.labkeeper.lower().startswith("dropped"):
            if not row.notes:
                problems.append(f"{where}: dropped without a reason in notes")
        elif not DOTTED_REF.search(row.labkeeper):
            problems.append(
                f"{where}: labkeeper cell {row.labkeeper!r} is neither `table.column` nor 'dropped'"
            )
    assert not problems, "Part 1 of docs/schema.md:\n" + "\n".join(problems)


def test_part1_points_at_real_columns() -> None:
    missing = []
    for row in mapping_rows():
        for table, column in DOTTED_REF.findall(row.labkeeper):
            if table not in metadata.tables:
                missing.append(
                    f"line {row.line} `{row.seed}` -> `{table}.{column}`: no table {table}"
                )
            elif column not in metadata.tables[table].columns:
                missing.append(
                    f"line {row.line} `{row.seed}` -> `{table}.{column}`: no such column"
                )
    assert not missing, "Part 1 of docs/schema.md names columns the models lack:\n" + "\n".join(
        missing
    )


def test_part2_lists_every_table_and_exactly_its_columns() -> None:
    sections = table_sections()
    problems = []
    for name in sorted(set(metadata.tables) - set(sections)):
        columns = ", ".join(metadata.tables[name].columns.keys())
        problems.append(f"table `{name}` has no section (columns: {columns})")
    for name in sorted(set(sections) - set(metadata.tables)):
        problems.append(f"section `{name}` is not a table of the models")
    for name in sorted(set(sections) & set(metadata.tables)):
        listed, actual = sections[name], list(metadata.tables[name].columns.keys())
        duplicated = sorted({c for c in listed if listed.count(c) > 1})
        absent = [c for c in actual if c not in listed]
        extra = [c for c in listed if c not in actual]
        if absent:
            problems.append(f"`{name}`: columns not listed: {', '.join(absent)}")
        if extra:
            problems.append(f"`{name}`: listed but not in the model: {', '.join(extra)}")
        if duplicated:
            problems.append(f"`{name}`: listed twice: {', '.join(duplicated)}")
    assert not problems, "Part 2 of docs/schema.md is out of date:\n" + "\n".join(problems)


def test_part1_covers_every_seed_column() -> None:
    expected = seed_columns()
    documented = {row.seed for row in mapping_rows()}
    missing = sorted(expected - documented)
    unknown = sorted(documented - expected)
    message = []
    if missing:
        message.append("seed columns without a Part 1 row:\n  " + "\n  ".join(missing))
    if unknown:
        message.append("Part 1 rows for columns the seeds do not have:\n  " + "\n  ".join(unknown))
    assert not message, "docs/schema.md vs the seeds:\n" + "\n".join(message)


def test_seed_parsers_read_known_rows() -> None:
    """The parsers see the formats the seeds use (guards against a parser that finds nothing)."""
    columns = seed_columns()
    for known in (
        "user_table.password",
        "device_table.deviceType",
        "device_table.In_Port",
        "booking_table.booking_id",
        "admin_invitations.token",
        "netraven.users.id",
        "netraven.users.password_hash",
        "netraven.admin_settings.id",
        "netraven.job_logs.created_by",
        "netraven.credential_tags.tag_id",
    ):
        assert known in columns, f"seed parser did not find {known}"
