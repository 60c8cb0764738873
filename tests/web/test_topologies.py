"""The topology pages through the test client: the list, saving drawings through the editor's
form, validation as one draws, review, booking, patch states during a booking, refusals."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from labkeeper.booking.models import Booking
from labkeeper.core.time import utcnow
from labkeeper.topology import provision
from labkeeper.topology.models import Topology, TopologyReview
from labkeeper.web.render import lab_timezone
from tests.topology.conftest import Lab, in_port, make_lab, out_port, start_now
from tests.web.conftest import HTML, counting, sign_in


@pytest.fixture
def lab(db) -> Lab:
    return make_lab(db)


@pytest.fixture
def sim(db, lab):
    from labkeeper.inventory.models import Device
    from labkeeper.simulators.polatis import PolatisSimulator

    simulator = PolatisSimulator(ports=64)
    with simulator.run_in_thread():
        with db.scope() as s:
            s.get(Device, lab.switch_id).ssh_port = simulator.port  # type: ignore[union-attr]
        yield simulator


def graph(lab: Lab, names: list[str], links: list[tuple[str, str]]) -> str:
    """The editor's drawing field: nodes n<id> for the devices, edges e1, e2, ..."""
    nodes = [
        {"id": f"n{lab[n]}", "device_id": lab[n], "x": 100.0 * i, "y": 50.0}
        for i, n in enumerate(names)
    ]
    edges = [
        {"id": f"e{i + 1}", "source": f"n{lab[a]}", "target": f"n{lab[b]}"}
        for i, (a, b) in enumerate(links)
    ]
    return json.dumps({"nodes": nodes, "edges": edges})


def save(client: Any, csrf: str, lab: Lab, url: str = "/topologies/new", **fields: Any) -> Any:
    data = {
        "csrf_token": csrf,
        "name": "ring",
        "description": "",
        "graph": graph(lab, ["d1", "d2", "d3"], [("d1", "d2"), ("d2", "d3")]),
        **fields,
    }
    return client.post(url, data=data, headers=HTML, follow_redirects=False)


def created_id(response: Any) -> int:
    assert response.status_code == 303, response.text[:2000]
    found = re.fullmatch(r"/topologies/(\d+)", response.headers["location"])
    assert found, response.headers["location"]
    return int(found.group(1))


def local(db, delta: timedelta) -> str:
    """A datetime-local value `delta` from now in the lab's time zone."""
    from zoneinfo import ZoneInfo

    with db.scope(write=False) as s:
        tz = lab_timezone(s)
    return (utcnow() + delta).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def owner(client, make_user, lab):
    account = make_user("member", username="owner", password="drawing-pass-1")
    csrf = sign_in(client, "owner", "drawing-pass-1")
    return account, csrf


def test_list_is_empty_then_shows_a_saved_topology_and_its_links(client, db, lab, owner):
    _, csrf = owner
    empty = client.get("/topologies", headers=HTML)
    assert empty.status_code == 200
    assert "You have no topologies yet" in empty.text and 'href="/topologies/new"' in empty.text
    editor = client.get("/topologies/new", headers=HTML)
    assert editor.status_code == 200
    palette = json.loads(
        re.search(r'id="topology-data">(.*?)</script>', editor.text, re.S).group(1)
    )["palette"]
    # Only devices a topology can hold: schedulable and on the switch (not the switch itself,
    # not the PDU, not the device with no ports).
    assert {d["name"] for d in palette} == {f"d{k}" for k in range(1, 9)} | {"far"}

    tid = created_id(save(client, csrf, lab, description="two hops"))
    page = client.get(f"/topologies/{tid}", headers=HTML)
    assert page.status_code == 200 and "Topology ring is saved." in page.text
    links = page.text[page.text.index('id="links-table"') :]
    assert f"sw1: {out_port(1)} → {in_port(2)}" in links
    assert f"sw1: {out_port(2)} → {in_port(3)}" in links
    assert "output port 2" in links and "input port 5" in links
    listed = client.get("/topologies", headers=HTML)
    assert f'href="/topologies/{tid}"' in listed.text and "two hops" in listed.text
    assert client.get("/topologies?q=nomatch", headers=HTML).text.count("No topology matches")


def test_list_pages_and_costs_the_same_queries_for_more_topologies(client, db, lab, owner):
    _, csrf = owner
    for i in range(3):
        created_id(save(client, csrf, lab, name=f"t{i}"))
    client.get("/topologies", headers=HTML)  # shows the flash message of the last save
    with counting(db) as few:
        assert client.get("/topologies", headers=HTML).status_code == 200
    for i in range(3, 12):
        created_id(save(client, csrf, lab, name=f"t{i}"))
    client.get("/topologies", headers=HTML)
    with counting(db) as many:
        second = client.get("/topologies?limit=5&offset=5", headers=HTML)
    assert len(many) == len(few)
    assert "Showing 6\u201310 of 12 topologies" in second.text


def test_validation_endpoint_returns_the_services_messages(client, lab, owner):
    _, csrf = owner
    drawing = json.loads(graph(lab, ["d1", "d2", "d3"], [("d1", "d2"), ("d3", "d2")]))
    headers = {"X-CSRF-Token": csrf, "accept": "application/json"}
    r = client.post("/topologies/validate", json=drawing, headers=headers)
    assert r.status_code == 200, r.text
    [problem] = r.json()["problems"]
    assert problem["code"] == "port_reused" and problem["edge"] == "e2"
    assert f"port {in_port(2)} of switch 'sw1' is used by edge 'e1'" in problem["message"]
    assert [p["edge"] for p in r.json()["patches"]] == ["e1"]

    far = {
        "nodes": [*drawing["nodes"], {"id": "far", "device_id": lab.extra["far"]}],
        "edges": [{"id": "x", "source": "far", "target": f"n{lab['d1']}"}],
    }
    messages = [
        p["message"]
        for p in client.post("/topologies/validate", json=far, headers=headers).json()["problems"]
    ]
    assert any("one patch cannot join two switches" in m for m in messages)
    clean = client.post("/topologies/validate", json={"nodes": [], "edges": []}, headers=headers)
    assert clean.json() == {"problems": [], "patches": []}
    # The session cookie alone is not enough: the CSRF header must come with it.
    assert client.post("/topologies/validate", json=drawing).status_code == 403


def test_an_invalid_drawing_is_not_saved_and_its_problems_are_shown(client, db, lab, owner):
    _, csrf = owner
    bad = graph(lab, ["d1", "d2", "d3"], [("d1", "d2"), ("d3", "d2")])
    r = save(client, csrf, lab, graph=bad, name="clash")
    assert r.status_code == 422
    assert "The drawing has problems" in r.text
    assert f"port {in_port(2)} of switch &#39;sw1&#39; is used by edge &#39;e1&#39;" in r.text
    assert 'value="clash"' in r.text  # what was typed stays
    nameless = save(client, csrf, lab, name="")
    assert nameless.status_code == 422 and "Give the topology a name" in nameless.text
    with db.scope(write=False) as s:
        assert s.scalars(select(Topology)).all() == []


def test_saving_again_redraws_and_renames(client, db, lab, owner):
    _, csrf = owner
    tid = created_id(save(client, csrf, lab))
    url = f"/topologies/{tid}"
    again = save(
        client,
        csrf,
        lab,
        url=url,
        name="line",
        graph=graph(lab, ["d1", "d2", "d4"], [("d1", "d4")]),
    )
    assert created_id(again) == tid
    with db.scope(write=False) as s:
        row = s.get(Topology, tid)
        assert row.name == "line" and [e["target"] for e in row.edges] == [f"n{lab['d4']}"]


def test_submit_review_approve_and_reject_with_a_comment(client, db, lab, owner, make_user):
    _, csrf = owner
    tid = created_id(save(client, csrf, lab))
    window = {
        "window_start": local(db, timedelta(hours=2)),
        "window_end": local(db, timedelta(hours=5)),
    }
    backwards = client.post(
        f"/topologies/{tid}/submit",
        data={
            "csrf_token": csrf,
            "window_start": window["window_end"],
            "window_end": window["window_start"],
        },
        headers=HTML,
    )
    assert backwards.status_code == 422 and "The window must end after it starts" in backwards.text
    r = client.post(f"/topologies/{tid}/submit", data={"csrf_token": csrf, **window}, headers=HTML)
    assert r.status_code == 200 and "Submitted for review." in r.text
    assert "Status: <strong>in review</strong>" in r.text
    # The owner (a member) may not decide.
    own = client.post(f"/topologies/{tid}/approve", data={"csrf_token": csrf}, headers=HTML)
    assert own.status_code == 403

    reviewer = make_user("approver", username="rev")
    as_reviewer = {**HTML, **reviewer.headers}
    queue = client.get("/topologies?scope=review", headers=as_reviewer)
    assert f'href="/topologies/{tid}"' in queue.text and "owner" in queue.text
    shown = client.get(f"/topologies/{tid}", headers=as_reviewer)
    assert "Approve" in shown.text and "Reject" in shown.text
    no_reason = client.post(f"/topologies/{tid}/reject", data={}, headers=as_reviewer)
    assert no_reason.status_code == 422 and "Say why it is rejected" in no_reason.text
    rejected = client.post(
        f"/topologies/{tid}/reject",
        data={"notes": "use d4 instead"},
        headers=as_reviewer,
        follow_redirects=False,
    )
    assert rejected.status_code == 303
    with db.scope(write=False) as s:
        review = s.scalar(select(TopologyReview).where(TopologyReview.topology_id == tid))
        assert (review.status, review.notes) == ("rejected", "use d4 instead")
    assert "use d4 instead" in client.get(f"/topologies/{tid}", headers=HTML).text
    twice = client.post(
        f"/topologies/{tid}/approve", data={}, headers=as_reviewer, follow_redirects=False
    )
    assert twice.status_code == 303  # refused, with the reason as a flash message
    client.post(f"/topologies/{tid}/submit", data={"csrf_token": csrf, **window}, headers=HTML)
    approved = client.post(
        f"/topologies/{tid}/approve",
        data={"notes": "fine"},
        headers=as_reviewer,
        follow_redirects=False,
    )
    assert approved.status_code == 303
    with db.scope(write=False) as s:
        review = s.scalar(select(TopologyReview).where(TopologyReview.topology_id == tid))
        assert (review.status, review.notes) == ("approved", "fine")


def test_book_for_a_window_starting_now_then_links_show_their_patches(client, db, lab, owner, sim):
    _, csrf = owner
    tid = created_id(save(client, csrf, lab))
    too_long = client.post(
        f"/topologies/{tid}/book",
        data={"csrf_token": csrf, "now": "1", "end": local(db, timedelta(days=30))},
        headers=HTML,
    )
    assert too_long.status_code == 422 and "at most" in too_long.text
    r = client.post(
        f"/topologies/{tid}/book",
        data={
            "csrf_token": csrf,
            "now": "1",
            "end": local(db, timedelta(hours=2)),
            "comment": "run 1",
        },
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:2000]
    with db.scope(write=False) as s:
        rows = s.scalars(select(Booking).where(Booking.topology_id == tid)).all()
    assert len(rows) == 3 and len({b.grouped_booking_id for b in rows}) == 1
    gid = rows[0].grouped_booking_id
    page = client.get(f"/topologies/{tid}", headers=HTML)
    assert f"Booked as group {gid}" in page.text and f'href="/bookings/{gid}"' in page.text

    start_now(db, gid)
    waiting = client.get(f"/topologies/{tid}/links", headers=HTML)
    assert waiting.text.count("waiting to patch") == 2
    provision.provision(db)
    assert sim.cross_connects == {out_port(1): in_port(2), out_port(2): in_port(3)}
    links = client.get(f"/topologies/{tid}/links", headers=HTML)
    assert links.status_code == 200 and links.text.count(">patched<") == 2
    assert "wanted present, switch has present" in links.text
    assert 'hx-trigger="every 3s"' in links.text
    page = client.get(f"/topologies/{tid}", headers=HTML)
    assert "A booking of this topology is active" in page.text and page.text.count(">patched<") == 2
    # The drawing is held while patched; a rename still works.
    redraw = save(client, csrf, lab, url=f"/topologies/{tid}", graph=graph(lab, ["d1"], []))
    assert redraw.status_code == 409 and "cannot be redrawn while it is patched" in redraw.text
    rename = save(client, csrf, lab, url=f"/topologies/{tid}", name="renamed")
    assert rename.status_code == 303


def test_refusals(client, db, lab, owner, make_user):
    _, csrf = owner
    tid = created_id(save(client, csrf, lab))
    viewer = make_user("viewer")
    assert client.get("/topologies", headers={**HTML, **viewer.headers}).status_code == 403
    other = make_user("member")
    as_other = {**HTML, **other.headers}
    assert client.get(f"/topologies/{tid}", headers=as_other).status_code == 404
    assert client.get(f"/topologies/{tid}/links", headers=as_other).status_code == 404
    assert save(client, "", lab, url=f"/topologies/{tid}").status_code == 403  # no CSRF token
    for path in ("", "/submit", "/book", "/delete"):
        r = client.post(f"/topologies/{tid}{path}", data={"name": "x"}, headers=as_other)
        assert r.status_code in (303, 404), (path, r.status_code)
        if r.status_code == 303:
            assert r.headers["location"] == f"/topologies/{tid}"
    with db.scope(write=False) as s:
        assert s.get(Topology, tid) is not None and s.get(Topology, tid).name == "ring"
    assert client.post(f"/topologies/{tid}/approve", data={}, headers=as_other).status_code == 403
    # Reviewers read others' topologies but do not change them.
    reviewer = make_user("approver")
    as_reviewer = {**HTML, **reviewer.headers}
    assert client.get(f"/topologies/{tid}", headers=as_reviewer).status_code == 200
    r = save(client, "", lab, url=f"/topologies/{tid}", name="mine now")
    assert r.status_code == 403


@pytest.mark.parametrize(
    "graph_value",
    [
        "not json",
        "[]",
        '{"nodes": 5}',
        '{"nodes": [{"id": "", "device_id": -1}]}',
        '{"nodes": [5], "edges": [null]}',
        '{"nodes": [{"id": ["x"], "device_id": "y"}], "edges": [{"id": {}}]}',
        "x" * 500_000,
    ],
)
def test_garbage_drawings_are_4xx(client, lab, owner, graph_value):
    _, csrf = owner
    r = save(client, csrf, lab, graph=graph_value)
    assert 400 <= r.status_code < 500
    assert "drawing" in r.text or "the form could not be read" in r.text.lower()


def test_garbage_requests_are_4xx(client, lab, owner):
    _, csrf = owner
    headers = {"X-CSRF-Token": csrf}
    for body in (None, [], "text", {"nodes": "x"}, {"nodes": [{"id": "a"}]}, {"extra": 1}):
        r = client.post("/topologies/validate", json=body, headers=headers)
        assert r.status_code == 422, (body, r.status_code)
    for path in ("/topologies/abc", "/topologies/0", "/topologies/99999999999999"):
        assert client.get(path, headers=HTML).status_code == 422
    assert client.get("/topologies/424242", headers=HTML).status_code == 404
    tid = created_id(save(client, csrf, lab))
    for data in ({"window_start": "soon", "window_end": ""}, {"window_start": "2026-13-45T99:00"}):
        r = client.post(
            f"/topologies/{tid}/submit", data={"csrf_token": csrf, **data}, headers=HTML
        )
        assert r.status_code == 422
    r = client.post(
        f"/topologies/{tid}/book", data={"csrf_token": csrf, "start": "x", "end": "y"}, headers=HTML
    )
    assert r.status_code == 422
    assert client.get("/topologies?scope=everything", headers=HTML).status_code == 422
