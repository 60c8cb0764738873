"""The configuration pages: search, devices with their latest backup, history, diffs, one version,
"Back up now" (simulated devices over real SSH on 127.0.0.1)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from labkeeper.backups.models import ConfigBackup
from labkeeper.inventory.models import Device
from labkeeper.jobs.models import JobLog
from tests.backups.conftest import add_credential, add_devices, backup_now
from tests.backups.conftest import make_farm as make_farm  # the fixture
from tests.web.conftest import HTML, counting, sign_in

CHANGED = "ntp server 10.9.9.9"


@pytest.fixture
def lab(db, make_farm):
    """Two simulated devices backed up twice; alpha's configuration changed in between."""
    farm = make_farm(2)
    alpha, beta = add_devices(db, farm, names=["alpha", "beta"])
    add_credential(db, "lab-admin")
    backup_now(db)
    farm.do(farm.sim.append_config_line, 0, CHANGED)
    backup_now(db)
    with db.scope(write=False) as s:
        ids = list(
            s.scalars(
                select(ConfigBackup.id)
                .where(ConfigBackup.device_id == alpha)
                .order_by(ConfigBackup.version)
            )
        )
    return {"alpha": alpha, "beta": beta, "versions": ids, "farm": farm}


def _viewer(client, make_user) -> str:
    make_user("viewer", username="vera", password="viewer-pass-1")
    return sign_in(client, "vera", "viewer-pass-1")


def test_devices_list_shows_latest_backup_and_filters_failed(client, make_user, db, lab):
    add_devices(db, None, names=["gamma"], ports=[1])  # nothing listens there
    with db.scope() as s:
        gamma = s.scalar(select(Device.id).where(Device.name == "gamma"))
    backup_now(db, device_ids=[gamma])
    _viewer(client, make_user)
    page = client.get("/configurations", headers=HTML)
    assert page.status_code == 200
    for name in ("alpha", "beta", "gamma"):
        assert name in page.text
    assert "badge-danger" in page.text and "failed:" in page.text
    assert re.search(r'href="/configurations/\d+">v2</a> <span class="muted">of 2', page.text)
    failed = client.get("/configurations?state=failed", headers=HTML).text
    assert "gamma" in failed and "alpha" not in failed and "beta" not in failed
    named = client.get("/configurations?device=alp", headers=HTML).text
    assert "alpha" in named and "beta" not in named
    nothing = client.get("/configurations?device=zzz", headers=HTML)
    assert nothing.status_code == 200 and "No device matches" in nothing.text


def test_search_shows_device_version_and_highlighted_lines(client, make_user, lab):
    _viewer(client, make_user)
    page = client.get("/configurations", params={"q": "10.9.9.9"}, headers=HTML)
    assert page.status_code == 200
    assert "1 device match" in page.text
    assert "alpha" in page.text and "version 2" in page.text
    assert "<mark>10.9.9.9</mark>" in page.text
    none = client.get("/configurations", params={"q": "no-such-word-anywhere"}, headers=HTML)
    assert none.status_code == 200 and "No configuration holds all of these words" in none.text
    bad = client.get("/configurations", params={"q": "a\x01b"}, headers=HTML)
    assert bad.status_code == 422 and "Search for words on one line" in bad.text


def test_history_diff_and_one_version(client, make_user, lab):
    _viewer(client, make_user)
    alpha = lab["alpha"]
    old_id, new_id = lab["versions"]
    history = client.get(f"/configurations/devices/{alpha}", headers=HTML)
    assert history.status_code == 200
    assert f'name="a" value="{old_id}"' in history.text
    assert f'name="b" value="{new_id}"' in history.text
    assert "Back up now" not in history.text  # a viewer reads only

    split = client.get(
        f"/configurations/devices/{alpha}/diff", params={"a": old_id, "b": new_id}, headers=HTML
    )
    assert split.status_code == 200
    assert "+1 added" in split.text and "\N{MINUS SIGN}0 removed" in split.text
    assert re.search(
        r'<td class="code add"><span class="visually-hidden">added: </span>' + re.escape(CHANGED),
        split.text,
    )
    # The default pair is the newest and the one before; the order of a and b does not matter.
    default = client.get(f"/configurations/devices/{alpha}/diff", headers=HTML)
    swapped = client.get(
        f"/configurations/devices/{alpha}/diff", params={"a": new_id, "b": old_id}, headers=HTML
    )
    assert "version 1 → 2" in default.text and "version 1 → 2" in swapped.text
    unified = client.get(
        f"/configurations/devices/{alpha}/diff",
        params={"a": old_id, "b": new_id, "view": "unified"},
        headers=HTML,
    )
    assert f'<span class="add">+{CHANGED}</span>' in unified.text
    assert "Side by side" in unified.text

    one = client.get(f"/configurations/{new_id}", headers=HTML)
    assert one.status_code == 200
    assert CHANGED in one.text and 'id="L1"' in one.text
    download = client.get(f"/configurations/{new_id}/download", headers=HTML)
    assert download.status_code == 200
    assert "attachment" in download.headers["content-disposition"]
    assert CHANGED in download.text


def test_bad_input_gets_4xx_pages(client, make_user, lab):
    _viewer(client, make_user)
    alpha, beta = lab["alpha"], lab["beta"]
    with_beta = client.get(
        f"/configurations/devices/{beta}/diff",
        params={"a": lab["versions"][0], "b": lab["versions"][1]},
        headers=HTML,
    )
    assert with_beta.status_code == 404  # versions of another device
    only_one = client.get(f"/configurations/devices/{beta}/diff", headers=HTML)
    assert only_one.status_code == 404 and "only one stored version" in only_one.text
    for url in (
        "/configurations/999999",
        "/configurations/devices/999999",
        "/configurations/abc",
        f"/configurations/devices/{alpha}/diff?a=x",
        f"/configurations/devices/{alpha}/diff?view=sideways",
        "/configurations?offset=-1",
        "/configurations?q=" + "x" * 500,
    ):
        r = client.get(url, headers=HTML)
        assert 400 <= r.status_code < 500, url
        assert "<html" in r.text


def test_back_up_now_for_operators_only(client, make_user, db, lab):
    csrf = _viewer(client, make_user)
    alpha = lab["alpha"]
    refused = client.post(
        f"/configurations/devices/{alpha}/backup", data={"csrf_token": csrf}, headers=HTML
    )
    assert refused.status_code == 403
    client.cookies.clear()
    make_user("admin", username="otto", password="operator-pass-1")
    csrf = sign_in(client, "otto", "operator-pass-1")
    assert "Back up now" in client.get(f"/configurations/devices/{alpha}", headers=HTML).text
    no_token = client.post(f"/configurations/devices/{alpha}/backup", headers=HTML)
    assert no_token.status_code == 403
    r = client.post(
        f"/configurations/devices/{alpha}/backup",
        data={"csrf_token": csrf},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303
    run_id = int(r.headers["location"].rsplit("/", 1)[1])
    with db.scope(write=False) as s:
        run = s.get(JobLog, run_id)
        assert run is not None and run.job_type == "backups.run"
        assert run.params and run.params["device_ids"] == [alpha]
    gone = client.post(
        "/configurations/devices/999999/backup",
        data={"csrf_token": csrf},
        headers=HTML,
        follow_redirects=False,
    )
    assert gone.status_code == 303 and gone.headers["location"] == "/configurations/devices/999999"


def test_query_count_does_not_grow_with_the_devices(client, make_user, db):
    _viewer(client, make_user)

    def queries(path: str) -> int:
        with counting(db) as seen:
            assert client.get(path, headers=HTML).status_code == 200
        return len(seen)

    add_devices(db, None, names=[f"n{i}" for i in range(3)], ports=[None] * 3)
    few = queries("/configurations")
    add_devices(db, None, names=[f"m{i}" for i in range(40)], ports=[None] * 40)
    assert queries("/configurations") == few
