"""Where a request runs: on the event loop (the default) or wholly in a worker thread.

Our handlers are short database transactions written as plain functions. FastAPI would run each
plain function, and each plain dependency, in a thread of its own pool: four or five thread
hops per request, and worse, threads fighting over the GIL (SQLite releases it on every row it
steps through). Measured on a 2-core machine, that made a 50-row list cost 11-12 ms of CPU
instead of 3 ms. So every route here runs inline on the event loop, dependencies and all, as
a sync worker of a pre-fork server would; worker processes (`labkeeper serve --workers`) give
the parallelism.

A handler that is slow on purpose or by nature (argon2 password hashing, a large page) is
marked `@blocking`: the whole request, dependencies, handler and commit, then runs in one worker
thread (with an event loop of its own), so the server's loop keeps answering everyone else.

Rules this relies on, kept here and tested:
- a request's body is read before its dependencies run, so no handler waits on the network
  while its transaction holds locks (another request on the same loop could wait for them);
- dependencies are `async def` (a plain one would cost a thread hop again);
- an inline request first lets the loop read whatever else has arrived (`FAIR_WAIT`), so
  requests are served in turn;
- an inline request that takes longer than `SLOW_INLINE` seconds is logged, naming the route,
  so the next person knows to mark it `@blocking`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import anyio.to_thread
import fastapi
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
Handler = Callable[[Request], Coroutine[Any, Any, Response]]

BLOCKING = "_labkeeper_blocking"
SLOW_INLINE = 0.25
BODILESS = frozenset({"GET", "HEAD", "OPTIONS"})
# Before it blocks the loop, an inline request waits for the loop's next look at the sockets,
# so requests that arrived meanwhile are read first and served in turn. Without it uvloop
# (whose I/O callbacks run ahead of the ready queue) let some connections wait several
# rounds behind others under load: p99 3-5 times the median instead of under 2 times.
FAIR_WAIT = 1e-6


def blocking(fn: F) -> F:
    """Run this route's whole request in a worker thread (it is slow: hashing, big pages)."""
    setattr(fn, BLOCKING, True)
    return fn


def _as_coroutine(fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return fn

    @functools.wraps(fn)  # FastAPI reads the signature and annotations through __wrapped__
    async def run(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return run


def _run_in_own_loop(handler: Handler, request: Request) -> Response:
    async def run() -> Response:
        # The dependencies (the request's session among them) are entered in this thread, so
        # they are closed here too: the commit happens before the thread returns the response.
        async with AsyncExitStack() as stack:
            request.scope["fastapi_function_astack"] = stack
            request.scope["fastapi_inner_astack"] = stack
            return await handler(request)

    with asyncio.Runner() as runner:
        return runner.run(run())


class Route(APIRoute):
    """An API or page route that runs inline, or in a worker thread when marked `@blocking`."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        self.blocking = bool(getattr(endpoint, BLOCKING, False))
        super().__init__(path, _as_coroutine(endpoint), **kwargs)

    def get_route_handler(self) -> Handler:
        handler: Handler = super().get_route_handler()
        label = f"{','.join(sorted(self.methods or ()))} {self.path}"

        if self.blocking:

            async def in_thread(request: Request) -> Response:
                await request.body()  # read here; the thread parses it from memory
                return await anyio.to_thread.run_sync(_run_in_own_loop, handler, request)

            return in_thread

        async def inline(request: Request) -> Response:
            if request.method not in BODILESS:
                await request.body()
            await asyncio.sleep(FAIR_WAIT)
            start = time.perf_counter()
            try:
                return await handler(request)
            finally:
                took = time.perf_counter() - start
                if took > SLOW_INLINE:
                    log.warning(
                        "%s held the event loop for %.0f ms; if it is always slow, mark it "
                        "@blocking (labkeeper.core.routing)",
                        label,
                        took * 1000,
                    )

        return inline


class APIRouter(fastapi.APIRouter):
    """FastAPI's router with our `Route`: use it for every API and page router.

    FastAPI matches a request by trying the routes of every included router in turn, twice
    (about 4 us a route; 250 routes made a late route cost a millisecond). So a router
    included with `include` first checks the path's first segment against its own routes'
    and says "not here" at once when none starts that way.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("route_class", Route)
        super().__init__(**kwargs)
        self.mounted_at: str | None = None
        self._heads: tuple[int, frozenset[str] | None] = (-1, None)

    def _first_segments(self) -> frozenset[str] | None:
        """The first path segment of every route, or None when one starts with a parameter."""
        count, heads = self._heads
        if count != len(self.routes):
            paths = [getattr(route, "path", "") for route in self.routes]
            firsts = {path.split("/", 2)[1] if path.count("/") else "" for path in paths}
            heads = None if any(f.startswith("{") for f in firsts) else frozenset(firsts)
            self._heads = (len(self.routes), heads)
        return heads

    def matches(self, scope: Any) -> tuple[Match, Any]:
        if self.mounted_at is not None:
            path: str = scope.get("path", "")
            if not path.startswith(self.mounted_at):
                return Match.NONE, {}
            heads = self._first_segments()
            rest = path[len(self.mounted_at) :]
            if heads is not None and rest.split("/", 2)[1 if rest.count("/") else 0] not in heads:
                return Match.NONE, {}
        return super().matches(scope)


def include(app: fastapi.FastAPI, router: APIRouter, prefix: str = "") -> None:
    """Include a router (and remember where, for its quick "not here" and for `iter_routes`)."""
    router.mounted_at = prefix
    app.include_router(router, prefix=prefix)
    app.state.included.append((prefix, router))
