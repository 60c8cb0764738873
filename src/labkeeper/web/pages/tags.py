"""Tags with their colours and device counts, and the rules that tag devices automatically.

A rule is built in the form from up to a few conditions joined by and/or (or, for nested trees,
written as JSON); `/tags/rules/preview` (htmx, as the form changes) lists the devices it would
match before it is saved.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData, QueryParams

from labkeeper.auth.deps import Principal, require
from labkeeper.core.errors import AppError, Invalid
from labkeeper.core.pagination import PageParams, fetch_page
from labkeeper.core.routing import APIRouter
from labkeeper.core.schemas import MAX_ID, Id
from labkeeper.inventory import repository, rules, service
from labkeeper.inventory.schemas import TagCreate, TagRuleCreate, TagRuleUpdate, TagUpdate
from labkeeper.web.deps import DB, Filter, Form, Paging, refused
from labkeeper.web.render import error_fields, page, redirect, sentence, text, validation_errors

router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(require("devices:read"))]
Writer = Annotated[Principal, Depends(require("devices:write"))]
CONDITIONS = 3  # condition rows in the rule form
PREVIEW_ROWS = 50
RULES_SHOWN = PageParams(limit=200, offset=0)
OPERATOR_LABELS = {
    "equals": "is",
    "contains": "contains",
    "startswith": "starts with",
    "endswith": "ends with",
    "regex": "matches the regex",
    "in_subnet": "is in the subnet",
}


def rule_tree(values: QueryParams | FormData) -> dict[str, Any]:
    """The rule tree a form stands for: its JSON when given, else its conditions joined."""
    raw = values.get("rule_json")
    if isinstance(raw, str) and raw.strip():
        try:
            tree = json.loads(raw)
        except ValueError as exc:
            raise Invalid(f"the rule is not valid JSON: {exc}", field="rule_json") from None
        if not isinstance(tree, dict):
            raise Invalid("the rule must be a JSON object", field="rule_json")
        return tree
    leaves = []
    for i in range(CONDITIONS):
        value = values.get(f"value_{i}")
        if not isinstance(value, str) or not value.strip():
            continue
        leaf: dict[str, Any] = {
            "field": values.get(f"field_{i}"),
            "operator": values.get(f"operator_{i}"),
            "value": value.strip(),
        }
        if values.get(f"negate_{i}"):
            leaf["negate"] = True
        leaves.append(leaf)
    if not leaves:
        raise Invalid("give at least one condition with a value", field="value_0")
    op = values.get("op")
    return {"op": op if op in rules.GROUP_OPS else "and", "rules": leaves}


def rule_form_values(rule: Any, tag_name: str) -> dict[str, str]:
    """The rule form's fields for a saved rule: its conditions when they fit the form (one
    group of leaves), else the whole tree as JSON."""
    tree = rule.rule if isinstance(rule.rule, dict) else {}
    values = {"name": rule.name, "tag": tag_name, "op": "and"}
    values["is_active"] = "1" if rule.is_active else ""
    leaves = tree.get("rules") if "op" in tree else [tree]
    simple = (
        (not tree.get("negate") if "op" in tree else True)
        and isinstance(leaves, list)
        and 0 < len(leaves) <= CONDITIONS
    )
    simple = simple and all(isinstance(leaf, dict) and "op" not in leaf for leaf in leaves or [])
    if not simple or not isinstance(leaves, list):
        values["rule_json"] = json.dumps(tree, indent=1)
        return values
    values["op"] = str(tree.get("op", "and"))
    for i, leaf in enumerate(leaves):
        values[f"field_{i}"] = str(leaf.get("field", ""))
        values[f"operator_{i}"] = str(leaf.get("operator", ""))
        values[f"value_{i}"] = str(leaf.get("value", ""))
        if leaf.get("negate"):
            values[f"negate_{i}"] = "1"
    return values


def describe(tree: Any) -> str:
    """A rule tree in words."""
    if not isinstance(tree, dict):
        return "?"
    if "op" in tree:
        inner = f" {tree['op']} ".join(describe(r) for r in tree.get("rules", []))
        text_ = f"({inner})" if len(tree.get("rules", [])) > 1 else inner
        return f"not {text_}" if tree.get("negate") else text_
    words = OPERATOR_LABELS.get(tree.get("operator", ""), tree.get("operator", ""))
    leaf = f"{tree.get('field')} {words} “{tree.get('value')}”"
    return f"not {leaf}" if tree.get("negate") else leaf


def _page(
    request: Request,
    session: DB,
    principal: Principal,
    *,
    paging: PageParams,
    q: str | None = None,
    status: int = 200,
    **context: Any,
) -> Response:
    tag_rows, total = fetch_page(session, repository.tags_query(q=q), paging, scalars=False)
    rule_rows, rule_total = fetch_page(
        session, repository.rules_query(), RULES_SHOWN, scalars=False
    )
    context.setdefault("values", {"op": "and", "color": "#2450c2"})
    context.setdefault("errors", {})
    return page(
        request,
        session,
        principal,
        "tags/index.html",
        status=status,
        tags=[service.tag_view(t, d, r) for t, d, r in tag_rows],
        total=total,
        paging=paging,
        filters={"q": q or ""},
        rule_list=[(rule, name, describe(rule.rule)) for rule, name in rule_rows],
        rule_total=rule_total,
        fields=rules.FIELDS,
        operators=[(o, OPERATOR_LABELS[o]) for o in rules.OPERATORS],
        conditions=range(CONDITIONS),
        **context,
    )


@router.get("/tags")
def tags_page(
    request: Request,
    session: DB,
    principal: Reader,
    paging: Paging,
    q: Filter = None,
    edit_rule: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    """Tags with their colours and device counts, and the rules that apply them (`edit_rule`:
    the rule form holds that rule, to change it)."""
    if edit_rule is None:
        return _page(request, session, principal, paging=paging, q=q)
    rule, tag_name = service.get_rule(session, edit_rule)
    return _page(
        request,
        session,
        principal,
        paging=paging,
        q=q,
        values=rule_form_values(rule, tag_name),
        editing=rule.id,
        open_rule=True,
    )


@router.post("/tags")
def tag_create(request: Request, session: DB, form: Form, principal: Writer) -> Response:
    """Create a tag."""
    values = {k: text(form, k, limit=2000) for k in ("name", "color", "description")}
    try:
        data = TagCreate(
            name=values["name"],
            color=values["color"] or None,
            description=values["description"] or None,
        )
        row = service.create_tag(session, data=data, actor=principal)
    except ValidationError as exc:
        errors = validation_errors(exc)
    except AppError as exc:
        refused(request, session, principal, exc)
        errors = error_fields(exc, set(values))
    else:
        return redirect("/tags", f"The tag “{row.name}” is created.")
    return _page(
        request,
        session,
        principal,
        paging=PageParams(),
        status=422,
        tag_values=values,
        tag_errors=errors,
        open_tag=True,
    )


@router.post("/tags/{tag_id}/delete")
def tag_delete(
    request: Request, tag_id: Id, session: DB, form: Form, principal: Writer
) -> Response:
    """Delete a tag; one that credentials or scheduled jobs use needs the force box."""
    try:
        service.delete_tag(session, tag_id=tag_id, force=bool(form.get("force")), actor=principal)
    except AppError as exc:
        refused(request, session, principal, exc)
        return redirect("/tags", sentence(exc.message), "error")
    return redirect("/tags", "The tag is deleted.")


@router.get("/tags/rules/preview")
def rule_preview(request: Request, session: DB, principal: Reader) -> Response:
    """The devices a rule (as the form stands) would match; changes nothing."""
    error = None
    matches: list[dict[str, Any]] = []
    try:
        matches = service.preview_rule(session, tree=rule_tree(request.query_params))
    except AppError as exc:
        error = sentence(exc.message)
    htmx = request.headers.get("hx-request") == "true"
    return page(
        request,
        session,
        principal,
        "tags/_preview.html",
        status=422 if error and not htmx else 200,
        error=error,
        matches=matches[:PREVIEW_ROWS],
        match_total=len(matches),
    )


@router.post("/tags/rules")
def rule_create(request: Request, session: DB, form: Form, principal: Writer) -> Response:
    """Save a tag rule; it is applied to every device at once."""
    values = {k: text(form, k, limit=5000) for k in form if k != "csrf_token"}
    errors: dict[str, str] = {}
    try:
        tree = rule_tree(form)
        data = TagRuleCreate(
            tag=values.get("tag", ""),
            name=values.get("name", ""),
            rule=tree,
            is_active=bool(values.get("is_active")),
        )
        saved = service.create_rule(session, data=data, actor=principal)
    except ValidationError as exc:
        errors = validation_errors(exc)
    except AppError as exc:
        refused(request, session, principal, exc)
        errors = error_fields(exc, {"tag", "name", "rule_json", "value_0"})
        if "__all__" in errors and str(exc.details.get("field", "")).startswith("rule"):
            errors = {"rule_json": errors["__all__"]}
    else:
        return redirect(
            "/tags",
            f"The rule “{saved['name']}” is saved: {saved['tagged']} devices tagged, "
            f"{saved['untagged']} untagged.",
        )
    return _page(
        request,
        session,
        principal,
        paging=PageParams(),
        status=422,
        values=values,
        errors=errors,
        open_rule=True,
    )


@router.post("/tags/rules/{rule_id}")
def rule_update(
    request: Request, rule_id: Id, session: DB, form: Form, principal: Writer
) -> Response:
    """Change a tag rule; its tag is re-applied to every device at once."""
    values = {k: text(form, k, limit=5000) for k in form if k != "csrf_token"}
    errors: dict[str, str] = {}
    status = 422
    try:
        tree = rule_tree(form)
        data = TagRuleUpdate(
            tag=values.get("tag", ""),
            name=values.get("name", ""),
            rule=tree,
            is_active=bool(values.get("is_active")),
        )
        saved = service.update_rule(session, rule_id=rule_id, data=data, actor=principal)
    except ValidationError as exc:
        errors = validation_errors(exc)
    except AppError as exc:
        refused(request, session, principal, exc)
        if exc.status == 404 and exc.details.get("field") is None:
            raise
        errors = error_fields(exc, {"tag", "name", "rule_json", "value_0"})
        if "__all__" in errors and str(exc.details.get("field", "")).startswith("rule"):
            errors = {"rule_json": errors["__all__"]}
        status = exc.status if 400 <= exc.status < 500 else 422
    else:
        return redirect(
            "/tags",
            f"The rule “{saved['name']}” is saved: {saved['tagged']} devices tagged, "
            f"{saved['untagged']} untagged.",
        )
    return _page(
        request,
        session,
        principal,
        paging=PageParams(),
        status=status,
        values=values,
        errors=errors,
        open_rule=True,
        editing=rule_id,
    )


@router.post("/tags/rules/{rule_id}/active")
def rule_switch(
    request: Request, rule_id: Id, session: DB, form: Form, principal: Writer
) -> Response:
    """Turn a tag rule on or off (`is_active`: 1 or empty); its tag is re-applied at once."""
    active = text(form, "is_active") in ("1", "on", "true", "yes")
    try:
        saved = service.update_rule(
            session, rule_id=rule_id, data=TagRuleUpdate(is_active=active), actor=principal
        )
    except AppError as exc:
        refused(request, session, principal, exc)
        if exc.status == 404:
            raise
        return redirect("/tags", sentence(exc.message), "error")
    return redirect(
        "/tags",
        f"The rule “{saved['name']}” is {'on' if active else 'off'}: "
        f"{saved['tagged']} devices tagged, {saved['untagged']} untagged.",
    )


@router.post("/tags/rules/{rule_id}/delete")
def rule_delete(
    request: Request, rule_id: Id, session: DB, form: Form, principal: Writer
) -> Response:
    """Delete a tag rule; devices it alone tagged lose the tag."""
    try:
        applied = service.delete_rule(session, rule_id=rule_id, actor=principal)
    except AppError as exc:
        refused(request, session, principal, exc)
        return redirect("/tags", sentence(exc.message), "error")
    return redirect("/tags", f"The rule is deleted; {applied['untagged']} devices lost the tag.")


# Last: "/tags/{tag_id}" would otherwise catch the posts to "/tags/rules".
@router.post("/tags/{tag_id}")
def tag_update(
    request: Request, tag_id: Id, session: DB, form: Form, principal: Writer
) -> Response:
    """Rename a tag or change its colour or description."""
    values = {k: text(form, k, limit=2000) for k in ("name", "color", "description")}
    try:
        data = TagUpdate(
            name=values["name"],
            color=values["color"] or None,
            description=values["description"] or None,
        )
        row = service.update_tag(session, tag_id=tag_id, data=data, actor=principal)
    except ValidationError as exc:
        errors = validation_errors(exc)
        status = 422
    except AppError as exc:
        refused(request, session, principal, exc)
        if exc.status == 404:
            raise
        errors = error_fields(exc, set(values))
        status = exc.status if 400 <= exc.status < 500 else 422
    else:
        return redirect("/tags", f"The tag “{row.name}” is saved.")
    return _page(
        request,
        session,
        principal,
        paging=PageParams(),
        status=status,
        edit_tag=tag_id,
        edit_values=values,
        edit_errors=errors,
    )
