"""Where requests run (inline on the event loop, or wholly in a worker thread) and how routes
are found."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from labkeeper.app import create_app, iter_routes
from labkeeper.core import routing
from labkeeper.core.routing import APIRouter, Route, blocking, include


async def resource(request: Request) -> AsyncIterator[str]:
    """A dependency with a before and an after, like the request's database session."""
    seen = request.app.state.seen
    seen.setdefault("opened", []).append(threading.get_ident())
    yield "resource"
    seen.setdefault("closed", []).append(threading.get_ident())


Resource = Annotated[str, Depends(resource)]


def _app() -> FastAPI:
    app = FastAPI()
    app.state.included = []
    app.state.seen = {}
    api = APIRouter()

    @api.get("/loop")
    async def loop_thread() -> int:
        return threading.get_ident()

    @api.get("/inline")
    def inline(res: Resource) -> int:
        return threading.get_ident()

    @api.post("/slow")
    @blocking
    def slow(res: Resource, body: dict[str, int]) -> dict[str, int]:
        return {"thread": threading.get_ident(), "got": body["n"]}

    @api.get("/items/{item_id}")
    def item(item_id: int) -> int:
        return item_id

    @api.post("/items")
    def add_item() -> str:
        return "added"

    pages = APIRouter()

    @pages.get("/{anything}")
    def catch_all(anything: str) -> str:
        return anything

    include(app, api, "/api")
    include(app, pages)
    return app


def test_plain_handlers_and_dependencies_run_on_the_event_loop() -> None:
    app = _app()
    with TestClient(app) as client:
        loop = client.get("/api/loop").json()
        assert client.get("/api/inline").json() == loop
    seen = app.state.seen
    assert seen["opened"] == [loop] and seen["closed"] == [loop]


def test_a_blocking_route_runs_wholly_in_a_worker_thread() -> None:
    app = _app()
    with TestClient(app) as client:
        loop = client.get("/api/loop").json()
        answer = client.post("/api/slow", json={"n": 7}).json()
    assert answer["got"] == 7  # the body read on the loop reached the thread
    assert answer["thread"] != loop
    # Its dependency (a session, in labkeeper) opened and closed in that same thread.
    assert app.state.seen["opened"] == [answer["thread"]]
    assert app.state.seen["closed"] == [answer["thread"]]


def test_routes_are_found_as_before_with_the_quick_not_here() -> None:
    with TestClient(_app()) as client:
        assert client.get("/api/items/5").json() == 5
        assert client.post("/api/items").json() == "added"
        assert client.delete("/api/items").status_code == 405  # right path, wrong method
        assert client.get("/api/nothing").status_code == 404
        # A router whose route starts with a parameter still answers anything.
        assert client.get("/whatever").json() == "whatever"


def test_a_slow_inline_request_is_logged_with_its_route(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routing, "SLOW_INLINE", 0.0)
    with TestClient(_app()) as client, caplog.at_level(logging.WARNING, "labkeeper.core.routing"):
        client.get("/api/items/5")
    assert "GET /items/{item_id} held the event loop" in caplog.text
    assert "@blocking" in caplog.text


def test_every_labkeeper_route_runs_where_core_routing_says(tmp_path: Any) -> None:
    from labkeeper.config import Settings

    app = create_app(
        Settings(database_url=f"sqlite:///{tmp_path}/r.db", run_scheduler=False),
        start_background=False,
    )
    plain_dependencies = set()

    def walk(dependant: Any) -> None:
        for sub in dependant.dependencies:
            call = sub.call
            if call is not None and not (
                routing.inspect.iscoroutinefunction(call)
                or routing.inspect.isasyncgenfunction(call)
            ):
                plain_dependencies.add(getattr(call, "__qualname__", repr(call)))
            walk(sub)

    routes = list(iter_routes(app))
    for _, route in routes:
        assert isinstance(route, Route), f"{route.path} is not a labkeeper.core.routing.Route"
        walk(route.dependant)
    # A plain dependency would cost a thread hop on every request.
    assert not plain_dependencies
    blocking_routes = {(path, *sorted(r.methods)) for path, r in routes if r.blocking}
    # Everything that hashes a password with argon2 keeps the loop free.
    for hashing in (
        ("/api/v1/auth/login", "POST"),
        ("/api/v1/auth/password", "POST"),
        ("/api/v1/users", "POST"),
        ("/api/v1/invitations/accept", "POST"),
        ("/login", "POST"),
        ("/profile/password", "POST"),
    ):
        assert hashing in blocking_routes
