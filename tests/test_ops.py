"""Operations endpoints: liveness, readiness, metrics, error shape."""

from __future__ import annotations

from fastapi.testclient import TestClient

from labkeeper.app import create_app
from labkeeper.config import Settings
from labkeeper.core.db import Database, make_engine


def test_health_ready_and_metrics(client, admin):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    client.get("/api/v1/auth/me", headers=admin.headers)
    metrics = client.get("/metrics").text
    assert (
        'labkeeper_http_requests_total{method="GET",route="/api/v1/auth/me",status="200"}'
        in metrics
    )


def test_readyz_says_unavailable_when_migrations_are_pending(tmp_path):
    url = f"sqlite:///{tmp_path}/empty.db"
    db = Database(make_engine(url))
    app = create_app(Settings(database_url=url, env="test"), db=db, start_background=False)
    with TestClient(app) as c:
        r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["database"] == "migrations pending"
    db.dispose()


def test_unknown_paths_and_methods_use_the_error_shape(client):
    r = client.get("/api/v1/no-such-thing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.delete("/api/v1/auth/me")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_openapi_describes_every_route(client):
    spec = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/auth/login" in spec["paths"]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            assert op.get("description") or op.get("summary"), f"{method} {path} has no docstring"
