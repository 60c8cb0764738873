"""Stored versions: history, diffs, search, retention and the git export."""

from __future__ import annotations

import json
from datetime import timedelta

from dulwich.repo import Repo
from sqlalchemy import select, update
from typer.testing import CliRunner

from labkeeper.admin import service as settings
from labkeeper.backups.models import ConfigBackup
from labkeeper.cli import app as cli_app
from labkeeper.core.audit import SYSTEM
from labkeeper.core.time import utcnow
from labkeeper.inventory.models import Device
from labkeeper.jobs import service as jobs
from labkeeper.jobs.engine import run_job
from tests.backups.conftest import add_credential, add_devices, backup_now


def _ids(db, device_id):
    with db.scope(write=False) as s:
        return list(
            s.scalars(
                select(ConfigBackup.id)
                .where(ConfigBackup.device_id == device_id)
                .order_by(ConfigBackup.version)
            )
        )


def test_history_and_unified_diff_between_any_two_versions(db, make_farm, api, make_user):
    farm = make_farm(2)
    first, second = add_devices(db, farm, names=["alpha", "beta"])
    add_credential(db, "admin")
    backup_now(db)
    farm.do(farm.sim.append_config_line, 0, "ntp server 10.9.9.9")
    backup_now(db)
    farm.do(farm.sim.delete_config_lines, 0, "ntp server 10.9.9.9")
    farm.do(farm.sim.append_config_line, 0, "logging host 10.8.8.8")
    backup_now(db)
    viewer = make_user("viewer")
    read = api.client.get

    history = read(f"/api/v1/devices/{first}/backups", headers=viewer.headers).json()
    assert [v["version"] for v in history["items"]] == [3, 2, 1] and history["total"] == 3
    assert "content" not in history["items"][0]
    assert (history["items"][0]["lines_added"], history["items"][0]["lines_removed"]) == (1, 1)
    v1, v2, v3 = _ids(db, first)

    latest = api.call("GET", f"/devices/{first}/backups/latest")
    assert latest["id"] == v3 and "logging host 10.8.8.8" in latest["content"]
    assert api.call("GET", f"/backups/{v1}")["content"].count("\n") > 20
    raw = api.call("GET", f"/backups/{v2}/raw")
    assert (
        "ntp server 10.9.9.9" in raw.text and "alpha-v2.cfg" in raw.headers["content-disposition"]
    )

    newest = api.call("GET", f"/devices/{first}/backups/diff")
    assert (newest["from_version"], newest["to_version"]) == (2, 3)
    assert "-ntp server 10.9.9.9" in newest["diff"] and "+logging host 10.8.8.8" in newest["diff"]
    assert newest["diff"].startswith("--- alpha v2\n+++ alpha v3\n")
    span = api.call(
        "GET", f"/devices/{first}/backups/diff", params={"from_version": 1, "to_version": 3}
    )
    assert "10.9.9.9" not in span["diff"] and (span["lines_added"], span["lines_removed"]) == (1, 0)
    same = api.call("GET", "/backups/diff", params={"from_id": v1, "to_id": v1})
    assert same["diff"] == "" and same["lines_added"] == 0
    (other,) = _ids(db, second)
    across = api.call("GET", "/backups/diff", params={"from_id": v1, "to_id": other})
    assert across["from_device_id"] == first and across["to_device_id"] == second
    assert "-hostname" in across["diff"] and "+hostname" in across["diff"]

    api.call("GET", f"/devices/{first}/backups/diff", 404, params={"to_version": 9})
    api.call("GET", "/backups/diff", 404, params={"from_id": v1, "to_id": 999999})
    only = api.call("GET", f"/devices/{second}/backups/diff")  # one version: nothing to compare
    assert (only["from_version"], only["to_version"], only["diff"]) == (1, 1, "")
    api.call("GET", "/devices/999999/backups", 404)
    newest_only = api.call("GET", "/backups", params={"latest_only": True})
    assert sorted(v["id"] for v in newest_only["items"]) == sorted([v3, other])
    assert api.call("GET", "/backups", params={"device_id": first, "limit": 1})["total"] == 3


def test_search_looks_at_the_newest_version_of_each_device(db, make_farm, api):
    farm = make_farm(3, "mixed")  # IOS, NX-OS and IOS XR
    ids = add_devices(db, farm, names=["core1", "core2", "edge1"])
    add_credential(db, "admin")
    farm.do(farm.sim.append_config_line, 1, "snmp-server location old-rack-7")
    backup_now(db)
    farm.do(farm.sim.delete_config_lines, 1, "old-rack-7")
    for i in (0, 2):
        farm.do(farm.sim.append_config_line, i, "snmp-server location rack-42")
    farm.do(farm.sim.append_config_line, 0, "ntp server 10.9.9.9")
    backup_now(db)

    hits = api.call("GET", "/backups/search", params={"q": "rack-42"})
    assert hits["total"] == 2
    assert [h["device_name"] for h in hits["items"]] == ["core1", "edge1"]
    line = hits["items"][0]["lines"][0]
    assert "snmp-server location rack-42" in line["text"] and line["number"] > 1
    # Every word must be present; the old version of core2 is not searched.
    both = api.call("GET", "/backups/search", params={"q": "rack-42 10.9.9.9"})
    assert [h["device_id"] for h in both["items"]] == [ids[0]]
    assert len(both["items"][0]["lines"]) == 2
    assert api.call("GET", "/backups/search", params={"q": "old-rack-7"})["total"] == 0
    one = api.call("GET", "/backups/search", params={"q": "rack-42", "device_id": ids[2]})
    assert [h["device_id"] for h in one["items"]] == [ids[2]]
    api.call("GET", "/backups/search", 422, params={"q": "   "})
    api.call("GET", "/backups/search", 422)


def _insert(db, device_id, ages_days):
    now = utcnow()
    with db.scope() as s:
        for version, age in enumerate(ages_days, start=1):
            s.add(
                ConfigBackup(
                    device_id=device_id,
                    version=version,
                    content=f"hostname r\nversion {version}\n",
                    content_hash=f"{version:064d}",
                    size_bytes=20,
                    collected_at=now - timedelta(days=age),
                )
            )


def _versions(db, device_id):
    with db.scope(write=False) as s:
        return list(
            s.scalars(
                select(ConfigBackup.version)
                .where(ConfigBackup.device_id == device_id)
                .order_by(ConfigBackup.version)
            )
        )


def _retention(db):
    with db.scope() as s:
        run_id = jobs.enqueue(s, "backups.retention", params={}).id
    assert run_job(db, run_id) == "succeeded"


def test_retention_by_count_and_age_never_touches_the_newest(db):
    busy, old_only = add_devices(db, None, names=["busy", "old"], ports=[None, None])
    _insert(db, busy, [400, 390, 30, 20, 10, 1])
    _insert(db, old_only, [1000])
    with db.scope() as s:
        settings.put(s, key="backup.retention_versions", value=4, actor=SYSTEM)
        settings.put(s, key="backup.retention_days", value=365, actor=SYSTEM)
    _retention(db)
    # Count keeps the newest 4; age drops v1 (replaced 390 days ago) anyway.
    assert _versions(db, busy) == [3, 4, 5, 6]
    assert _versions(db, old_only) == [1]  # a device's newest version is never deleted

    with db.scope() as s:
        settings.put(s, key="backup.retention_versions", value=100, actor=SYSTEM)
        settings.put(s, key="backup.retention_days", value=15, actor=SYSTEM)
    _retention(db)
    # v3 was replaced 20 days ago: gone; v4 was replaced 10 days ago: kept.
    assert _versions(db, busy) == [4, 5, 6]
    assert _versions(db, old_only) == [1]


def test_export_git_writes_one_commit_per_run_and_appends_later(
    db, make_farm, tmp_path, monkeypatch
):
    monkeypatch.setenv(
        "LABKEEPER_DATABASE_URL", db.engine.url.render_as_string(hide_password=False)
    )
    farm = make_farm(2)
    core, edge = add_devices(db, farm, names=["core/1", "edge1"])
    add_credential(db, "admin")
    first = backup_now(db)
    farm.do(farm.sim.append_config_line, 1, "ntp server 10.9.9.9")
    second = backup_now(db)
    backup_now(db)  # nothing changed: no commit
    runner = CliRunner()
    target = tmp_path / "configs"

    result = runner.invoke(cli_app, ["backup", "export-git", str(target)])
    assert result.exit_code == 0, result.output
    assert "3 versions of 2 devices in 2 commits" in result.output
    repo = Repo(str(target))
    head = repo[repo.head()]
    parent = repo[head.parents[0]]
    assert not parent.parents
    assert f"backup run {first.id}" in parent.message.decode()
    assert f"backup run {second.id}" in head.message.decode()
    files = {e.path.decode(): repo[e.sha].data.decode() for e in repo[head.tree].items()}
    index = json.loads(files.pop(".labkeeper-devices.json"))
    # A name that had to be made safe for a file name carries the device's id.
    assert index == {str(core): f"core_1-{core}.cfg", str(edge): "edge1.cfg"}
    assert sorted(files) == sorted(index.values())
    assert "ntp server 10.9.9.9" in files["edge1.cfg"]
    old = {e.path.decode(): repo[e.sha].data.decode() for e in repo[parent.tree].items()}
    assert "ntp server 10.9.9.9" not in old["edge1.cfg"]
    assert old[f"core_1-{core}.cfg"] == files[f"core_1-{core}.cfg"]
    with db.scope(write=False) as s:
        newest = s.scalar(select(ConfigBackup).order_by(ConfigBackup.id.desc()).limit(1))
    assert files["edge1.cfg"] == newest.content
    assert head.commit_time == int(newest.collected_at.timestamp())
    assert (target / "edge1.cfg").read_text() == newest.content  # checked out too
    repo.close()

    assert "up to date" in runner.invoke(cli_app, ["backup", "export-git", str(target)]).output
    farm.do(farm.sim.append_config_line, 0, "logging host 10.8.8.8")
    third = backup_now(db)
    result = runner.invoke(cli_app, ["backup", "export-git", str(target)])
    assert result.exit_code == 0 and "1 versions of 1 devices in 1 commits" in result.output
    repo = Repo(str(target))
    head = repo[repo.head()]
    assert f"backup run {third.id}" in head.message.decode() and len(head.parents) == 1
    repo.close()

    # A renamed device moves to its new file; the old one does not linger.
    with db.scope() as s:
        s.execute(update(Device).where(Device.id == edge).values(name="edge-renamed"))
    farm.do(farm.sim.append_config_line, 1, "logging host 10.7.7.7")
    backup_now(db)
    assert runner.invoke(cli_app, ["backup", "export-git", str(target)]).exit_code == 0
    repo = Repo(str(target))
    names = sorted(e.path.decode() for e in repo[repo[repo.head()].tree].items())
    assert names == [".labkeeper-devices.json", f"core_1-{core}.cfg", "edge-renamed.cfg"]
    repo.close()

    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    assert runner.invoke(cli_app, ["backup", "export-git", str(stray)]).exit_code == 2
