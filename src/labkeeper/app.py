"""The FastAPI application: API under /api/v1, pages under /, health and metrics."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from labkeeper.auth.deps import require
from labkeeper.auth.permissions import PUBLIC
from labkeeper.config import Settings, get_settings
from labkeeper.core import audit, migrate
from labkeeper.core.db import SAFE_METHODS, Database, make_engine
from labkeeper.core.errors import AppError
from labkeeper.core.observability import LATENCY, REQUESTS
from labkeeper.core.routing import Route, include

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"


def _error(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details or {}}}, status_code=status
    )


def _record_failure(request: Request, exc: AppError) -> None:
    # A refused change by a signed-in user is part of the trail too. The request's own
    # transaction was rolled back, so this row goes in a transaction of its own.
    principal = getattr(request.state, "principal", None)
    if principal is None or request.method in SAFE_METHODS or exc.commit:
        return
    route = request.scope.get("route")
    action = getattr(route, "name", None) or request.url.path
    db: Database = request.app.state.db
    try:
        with db.scope() as session:
            audit.record(
                session,
                principal,
                f"api.{action}",
                "request",
                None,
                payload={"path": request.url.path, "method": request.method, "code": exc.code},
                outcome="failure",
                message=exc.message,
            )
    except Exception:  # the trail must never turn a 4xx into a 500
        log.exception("could not record a failed action in the audit log")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        _record_failure(request, exc)  # inline, like the request itself (core.routing)
        headers = {}
        if exc.status == 429 and "retry_after" in exc.details:
            headers["Retry-After"] = str(exc.details["retry_after"])
        response = JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            errors.append(
                {"field": ".".join(loc), "message": err.get("msg", ""), "type": err.get("type", "")}
            )
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        return _error(422, "validation_error", message, {"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {
            404: "not_found",
            405: "method_not_allowed",
            401: "not_authenticated",
            403: "permission_denied",
            413: "too_large",
        }
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404:
            message = f"nothing at {request.url.path}"
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), message)

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        # Services check uniqueness first; this answers the race where two requests both pass.
        log.info("integrity error answered as 409: %s", exc.orig)
        return _error(409, "conflict", "the change collides with existing data; reload and retry")

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        return _error(422, "invalid", "a value is out of range for the database")

    @app.exception_handler(PoolTimeout)
    async def _pool(request: Request, exc: PoolTimeout) -> JSONResponse:
        log.warning("database connection pool exhausted: %s", exc)
        return _error(503, "unavailable", "the server is busy; retry shortly")

    @app.exception_handler(OperationalError)
    async def _operational(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc.orig)
        return _error(503, "unavailable", "the database is busy or unreachable; retry shortly")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error", "something went wrong on our side; it has been logged")


class MetricsMiddleware:
    """Counts requests and their latency by route template (pure ASGI: cheap on the hot path)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def _send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "unmatched")
            # Routes of included routers carry their path without the /api/v1 prefix.
            if scope.get("path", "").startswith(API_PREFIX) and not name.startswith(API_PREFIX):
                name = API_PREFIX + name
            method = scope.get("method", "GET")
            REQUESTS.labels(method, name, str(status["code"])).inc()
            LATENCY.labels(method, name).observe(time.perf_counter() - start)


class InflightLimitMiddleware:
    """Lets at most N requests into the app at once; the others queue on the event loop.

    Without it, more concurrent requests than pooled connections deadlock until the pool
    times out: requests holding a connection wait for a worker thread while the threads wait
    for a connection. Live event streams and health checks are not counted.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._semaphore: asyncio.Semaphore | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.endswith("/stream") or path in ("/healthz", "/metrics"):
            await self.app(scope, receive, send)
            return
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.limit)
        async with self._semaphore:
            await self.app(scope, receive, send)


def _routers(app: FastAPI) -> None:
    from labkeeper.admin.router import router as admin_router
    from labkeeper.auth.router import router as auth_router

    app.state.included = []
    for router in (auth_router, admin_router, *_optional_routers()):
        include(app, router, API_PREFIX)


def iter_routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    """Every API route of the app with its full path (routers included with a prefix too)."""
    for route in app.routes:
        if isinstance(route, APIRoute):
            yield route.path, route
    for prefix, router in app.state.included:
        for route in router.routes:
            if isinstance(route, APIRoute):
                yield prefix + route.path, route


def _optional_routers() -> list[Any]:
    # Domains register their routers here as they are built.
    import importlib

    found = []
    for name in ("inventory", "booking", "topology", "backups", "jobs", "notify"):
        try:
            module = importlib.import_module(f"labkeeper.{name}.router")
        except ModuleNotFoundError as exc:
            if exc.name != f"labkeeper.{name}.router":
                raise
            continue
        found.append(module.router)
    return found


def create_app(
    settings: Settings | None = None, db: Database | None = None, *, start_background: bool = True
) -> FastAPI:
    """Build the app; `db` lets tests hand in their own database."""
    settings = settings or get_settings()
    settings.check_production()
    database = db or Database(make_engine(settings.database_url, pool_size=settings.db_pool_size))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine_handle = None
        simulators = None
        if settings.demo:
            # Before the engine starts, so the first backup run it queues is picked up at once.
            import anyio.to_thread

            from labkeeper.demo import first_run

            simulators = await anyio.to_thread.run_sync(first_run, database, settings)
        if start_background:
            from labkeeper.jobs.engine import start_engine

            engine_handle = start_engine(database, settings)
        # Everything imported and built at start-up lives for the whole process: keep it out
        # of the garbage collector's full passes (they showed as 100-200 ms latency spikes).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if engine_handle is not None:
                engine_handle.stop()
            if simulators is not None:
                simulators.stop()
            if db is None:
                database.dispose()

    app = FastAPI(
        title="labkeeper",
        version="0.1.0",
        description="Shared network testbed: bookings, optical patching and configuration backups.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.router.route_class = Route  # /healthz and the like run inline too
    app.state.settings = settings
    app.state.db = database
    _install_error_handlers(app)
    _routers(app)
    _health(app)
    _web(app)
    app.add_middleware(InflightLimitMiddleware, limit=settings.max_inflight_requests)
    app.add_middleware(MetricsMiddleware)
    return app


def _health(app: FastAPI) -> None:
    public = Depends(require(PUBLIC))

    @app.get("/healthz", tags=["ops"], dependencies=[public])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], dependencies=[public])
    def readyz(request: Request) -> Response:
        """Readiness: the database answers and its schema is current."""
        db: Database = request.app.state.db
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            current = migrate.is_current(db.engine)
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "database": str(exc)[:200]}, 503)
        if not current:
            return JSONResponse({"status": "unavailable", "database": "migrations pending"}, 503)
        return JSONResponse({"status": "ok", "database": db.backend})

    @app.get("/metrics", tags=["ops"], dependencies=[public], response_class=PlainTextResponse)
    def metrics() -> Response:
        """Prometheus metrics of this process."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _web(app: FastAPI) -> None:
    try:
        from labkeeper.web.views import install
    except ModuleNotFoundError:

        @app.get("/", include_in_schema=False, dependencies=[Depends(require(PUBLIC))])
        def index() -> RedirectResponse:
            return RedirectResponse("/api/docs")

        return
    install(app)
