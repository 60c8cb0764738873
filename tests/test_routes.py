"""Every route declares a permission, each role is allowed or denied as declared, and no input
whatsoever makes a route answer 500."""

from __future__ import annotations

import re
from typing import Any

import pytest

from labkeeper.app import iter_routes
from labkeeper.auth.deps import route_permission
from labkeeper.auth.permissions import AUTHENTICATED, PUBLIC, ROLE_PERMISSIONS, ROLES


def _routes(app: Any, *, streams: bool = True) -> list[tuple[str, str, Any]]:
    out = []
    for path, route in iter_routes(app):
        # Live streams (server-sent events) stay open while a run is going; their own tests
        # drive them to the end. The permission walk still checks they declare a permission.
        if not streams and path.endswith("/stream"):
            continue
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            out.append((method, path, route))
    return out


def _fill(path: str, ids: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(ids.get(m.group(1), 1)), path)


def test_every_route_declares_a_permission(app):
    missing = [f"{m} {p}" for m, p, r in _routes(app) if route_permission(r.dependant) is None]
    assert not missing, f"routes without require(...): {missing}"
    assert len(_routes(app)) > 20


def test_roles_are_allowed_and_denied_as_declared(client, app, make_user):
    target = make_user("member", username="target-user")
    accounts = {role: make_user(role) for role in ROLES}
    ids = {"user_id": target.id, "key": "general.lab_name"}
    checked = 0
    for method, path, route in _routes(app, streams=False):
        permission = route_permission(route.dependant)
        if permission in (PUBLIC,):
            continue
        url = _fill(path, ids)
        anonymous = client.request(method, url, json={})
        assert anonymous.status_code == 401, (
            f"{method} {path} without a token: {anonymous.status_code}"
        )
        for role, account in accounts.items():
            r = client.request(method, url, json={}, headers=account.headers)
            allowed = permission == AUTHENTICATED or permission in ROLE_PERMISSIONS[role]
            if allowed:
                gate = r.status_code == 403 and "permission" in r.json()["error"].get("details", {})
                assert r.status_code != 401 and not gate, (
                    f"{role} should reach {method} {path}: {r.status_code} {r.text}"
                )
            else:
                assert r.status_code == 403, (
                    f"{role} must not reach {method} {path}: {r.status_code}"
                )
                assert r.json()["error"]["code"] == "permission_denied"
            checked += 1
    assert checked > 100


GARBAGE_VALUES: list[Any] = [
    None,
    "x" * 20_000,
    10**30,
    -1,
    [],
    {},
    "2026-01-01T09:00:00",
    "'; DROP TABLE users; --",
    "\x00",
]
GARBAGE_BODIES: list[Any] = [None, [], "text", 123, {}, {"unknown_field": 1}]
GARBAGE_PATH = ["abc", "-1", "0", "99999999999999999999", "%00", "x" * 300]


def _body_fields(route: Any) -> list[str]:
    field = route.body_field
    if field is None:
        return []
    model = getattr(field, "type_", None) or getattr(field.field_info, "annotation", None)
    fields = getattr(model, "model_fields", None)
    return list(fields) if fields else []


@pytest.mark.slow
def test_garbage_never_causes_a_500(client, app, make_user):
    boss = make_user("superadmin", username="garbage-boss")
    failures = []

    def send(method: str, url: str, extra: dict[str, str] | None = None, **kwargs: Any) -> None:
        r = client.request(method, url, headers={**boss.headers, **(extra or {})}, **kwargs)
        if r.status_code >= 500:
            failures.append(
                f"{method} {url[:80]} {str(kwargs)[:120]} -> {r.status_code} {r.text[:200]}"
            )

    for method, path, route in _routes(app, streams=False):
        if path in ("/api/v1/auth/logout", "/api/v1/auth/logout-all"):
            continue
        url = _fill(path, {"user_id": boss.id, "key": "general.lab_name"})
        for body in GARBAGE_BODIES:
            send(method, url, json=body)
        send(method, url, content=b"{not json", extra={"content-type": "application/json"})
        for field in _body_fields(route):
            for value in GARBAGE_VALUES:
                send(method, url, json={field: value})
        for value in GARBAGE_PATH:
            if "{" in path:
                send(method, re.sub(r"\{\w+\}", value, path), json={})
        for param in route.dependant.query_params:
            for value in ("x" * 5000, "-1", "99999999999999999999", "2026-01-01T00:00:00", "nan"):
                send(method, url, params={param.alias: value})
    assert not failures, "\n".join(failures[:20])
