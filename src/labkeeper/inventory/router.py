"""Sites, manufacturers, device types, devices, tags, tag rules, ownership, history and health."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Response

from labkeeper.auth.deps import Principal, require
from labkeeper.core.db import DbSession
from labkeeper.core.pagination import Page, PageParams, fetch_page, page_params
from labkeeper.core.routing import APIRouter
from labkeeper.core.schemas import MAX_ID, AwareDatetime, Id
from labkeeper.core.time import utcnow
from labkeeper.inventory import repository, service
from labkeeper.inventory.schemas import (
    Category,
    DeviceBrief,
    DeviceCreate,
    DeviceRead,
    DeviceSort,
    DeviceStatus,
    DeviceTagAdd,
    DeviceTagsSet,
    DeviceTypeCreate,
    DeviceTypeRead,
    DeviceTypeUpdate,
    DeviceUpdate,
    HealthRead,
    HistoryRead,
    ManufacturerCreate,
    ManufacturerRead,
    ManufacturerUpdate,
    OwnerAssign,
    OwnershipRead,
    Reachability,
    RulePreview,
    SiteCreate,
    SiteRead,
    SiteUpdate,
    TagCreate,
    TagRead,
    TagRuleCreate,
    TagRuleRead,
    TagRuleSaved,
    TagRuleUpdate,
    TagUpdate,
)

router = APIRouter()
DB = DbSession
Reader = Annotated[Principal, Depends(require("devices:read"))]
Writer = Annotated[Principal, Depends(require("devices:write"))]
Paging = Annotated[PageParams, Depends(page_params)]
Search = Annotated[str | None, Query(max_length=100, description="Part of the name")]
NameFilter = Annotated[str | None, Query(max_length=100)]


def _page(items: list[Any], total: int, page: PageParams) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": page.limit, "offset": page.offset}


# -- sites -------------------------------------------------------------------------------------


@router.get("/sites", response_model=Page[SiteRead], tags=["inventory"])
def list_sites(session: DB, _: Reader, page: Paging, q: Search = None) -> Any:
    """Sites with their device counts."""
    rows, total = fetch_page(session, repository.sites_query(q=q), page, scalars=False)
    return _page([service.site_view(s, n) for s, n in rows], total, page)


@router.post("/sites", response_model=SiteRead, status_code=201, tags=["inventory"])
def create_site(body: SiteCreate, session: DB, principal: Writer) -> Any:
    """Create a site."""
    return service.site_view(service.create_site(session, data=body, actor=principal))


@router.get("/sites/{site_id}", response_model=SiteRead, tags=["inventory"])
def get_site(site_id: Id, session: DB, _: Reader) -> Any:
    """One site."""
    return service.site_detail(session, site_id)


@router.patch("/sites/{site_id}", response_model=SiteRead, tags=["inventory"])
def update_site(site_id: Id, body: SiteUpdate, session: DB, principal: Writer) -> Any:
    """Change a site."""
    service.update_site(session, site_id=site_id, data=body, actor=principal)
    return service.site_detail(session, site_id)


@router.delete("/sites/{site_id}", status_code=204, tags=["inventory"])
def delete_site(site_id: Id, session: DB, principal: Writer) -> Response:
    """Delete a site that no device is at."""
    service.delete_site(session, site_id=site_id, actor=principal)
    return Response(status_code=204)


# -- manufacturers -----------------------------------------------------------------------------


@router.get("/manufacturers", response_model=Page[ManufacturerRead], tags=["inventory"])
def list_manufacturers(session: DB, _: Reader, page: Paging, q: Search = None) -> Any:
    """Manufacturers with their device type counts."""
    rows, total = fetch_page(session, repository.manufacturers_query(q=q), page, scalars=False)
    return _page([service.manufacturer_view(m, n) for m, n in rows], total, page)


@router.post("/manufacturers", response_model=ManufacturerRead, status_code=201, tags=["inventory"])
def create_manufacturer(body: ManufacturerCreate, session: DB, principal: Writer) -> Any:
    """Create a manufacturer."""
    row = service.create_manufacturer(session, data=body, actor=principal)
    return service.manufacturer_view(row)


@router.get("/manufacturers/{manufacturer_id}", response_model=ManufacturerRead, tags=["inventory"])
def get_manufacturer(manufacturer_id: Id, session: DB, _: Reader) -> Any:
    """One manufacturer."""
    row = service.get_manufacturer(session, manufacturer_id)
    return service.manufacturer_view(row)


@router.patch(
    "/manufacturers/{manufacturer_id}", response_model=ManufacturerRead, tags=["inventory"]
)
def update_manufacturer(
    manufacturer_id: Id, body: ManufacturerUpdate, session: DB, principal: Writer
) -> Any:
    """Change a manufacturer."""
    row = service.update_manufacturer(
        session, manufacturer_id=manufacturer_id, data=body, actor=principal
    )
    return service.manufacturer_view(row)


@router.delete("/manufacturers/{manufacturer_id}", status_code=204, tags=["inventory"])
def delete_manufacturer(manufacturer_id: Id, session: DB, principal: Writer) -> Response:
    """Delete a manufacturer no device type refers to."""
    service.delete_manufacturer(session, manufacturer_id=manufacturer_id, actor=principal)
    return Response(status_code=204)


# -- device types ------------------------------------------------------------------------------


@router.get("/device-types", response_model=Page[DeviceTypeRead], tags=["inventory"])
def list_device_types(
    session: DB, _: Reader, page: Paging, q: Search = None, category: Category | None = None
) -> Any:
    """Device types with manufacturer and device counts."""
    stmt = repository.device_types_query(q=q, category=category)
    rows, total = fetch_page(session, stmt, page, scalars=False)
    return _page([service.device_type_view(t, m, n) for t, m, n in rows], total, page)


@router.post("/device-types", response_model=DeviceTypeRead, status_code=201, tags=["inventory"])
def create_device_type(body: DeviceTypeCreate, session: DB, principal: Writer) -> Any:
    """Create a device type: `{name, category, is_schedulable, has_ports}` and optional fields."""
    row = service.create_device_type(session, data=body, actor=principal)
    return service.device_type_detail(session, row.id)


@router.get("/device-types/{type_id}", response_model=DeviceTypeRead, tags=["inventory"])
def get_device_type(type_id: Id, session: DB, _: Reader) -> Any:
    """One device type."""
    return service.device_type_detail(session, type_id)


@router.patch("/device-types/{type_id}", response_model=DeviceTypeRead, tags=["inventory"])
def update_device_type(type_id: Id, body: DeviceTypeUpdate, session: DB, principal: Writer) -> Any:
    """Change a device type."""
    service.update_device_type(session, type_id=type_id, data=body, actor=principal)
    return service.device_type_detail(session, type_id)


@router.delete("/device-types/{type_id}", status_code=204, tags=["inventory"])
def delete_device_type(type_id: Id, session: DB, principal: Writer) -> Response:
    """Delete a device type no device has."""
    service.delete_device_type(session, type_id=type_id, actor=principal)
    return Response(status_code=204)


# -- devices -----------------------------------------------------------------------------------


async def _device_filters(
    q: Annotated[
        str | None,
        Query(max_length=100, description="Part of name, hostname, address, serial or model"),
    ] = None,
    device_type: Annotated[str | None, Query(max_length=100, description="Type name")] = None,
    category: Category | None = None,
    status: DeviceStatus | None = None,
    tag: Annotated[
        list[str] | None,
        Query(max_length=50, description="Tag name; repeat for devices carrying all of them"),
    ] = None,
    site: Annotated[str | None, Query(max_length=100, description="Site name")] = None,
    owner: Annotated[
        str | None, Query(max_length=50, description="Current owner: user id or username")
    ] = None,
    schedulable: Annotated[bool | None, Query(description="Type is schedulable")] = None,
    reachability: Reachability | None = None,
    free_now: Annotated[
        bool | None,
        Query(
            description="true: no pending/confirmed/active booking and no maintenance window "
            "covers now; false: the opposite"
        ),
    ] = None,
    sort: DeviceSort = "name",
) -> dict[str, Any]:
    return {
        "q": q,
        "device_type": device_type,
        "category": category,
        "status": status,
        "tags": tag or [],
        "site": site,
        "owner": owner,
        "schedulable": schedulable,
        "reachability": reachability,
        "free_now": free_now,
        "now": utcnow(),
        "sort": sort,
    }


@router.get("/devices", response_model=Page[DeviceRead], tags=["devices"])
def list_devices(
    session: DB,
    _: Reader,
    page: Paging,
    filters: Annotated[dict[str, Any], Depends(_device_filters)],
) -> Any:
    """Devices with type, site, tags and owners; searchable, filtered, sorted, paginated."""
    rows, total = fetch_page(
        session, repository.devices_query(**filters, plain=True), page, plain=True
    )
    return _page(service.device_views(session, rows), total, page)


@router.post("/devices", response_model=DeviceRead, status_code=201, tags=["devices"])
def create_device(body: DeviceCreate, session: DB, principal: Writer) -> Any:
    """Create a device: type, site and tags are given by name and must exist."""
    device = service.create_device(session, data=body, actor=principal)
    return service.device_detail(session, device.id)


@router.get("/devices/{device_id}", response_model=DeviceRead, tags=["devices"])
def get_device(device_id: Id, session: DB, _: Reader) -> Any:
    """One device with type, site, tags and current owners."""
    return service.device_detail(session, device_id)


@router.patch("/devices/{device_id}", response_model=DeviceRead, tags=["devices"])
def update_device(device_id: Id, body: DeviceUpdate, session: DB, principal: Writer) -> Any:
    """Change a device; every changed field is written to its history."""
    service.update_device(session, device_id=device_id, data=body, actor=principal)
    return service.device_detail(session, device_id)


@router.delete("/devices/{device_id}", status_code=204, tags=["devices"])
def delete_device(device_id: Id, session: DB, principal: Writer) -> Response:
    """Delete a device; refused while current or upcoming bookings hold it."""
    service.delete_device(session, device_id=device_id, actor=principal)
    return Response(status_code=204)


@router.get("/devices/{device_id}/history", response_model=Page[HistoryRead], tags=["devices"])
def device_history(device_id: Id, session: DB, _: Reader, page: Paging) -> Any:
    """A device's field-level change history, newest first."""
    service.get_device(session, device_id)
    rows, total = fetch_page(session, repository.history_query(device_id), page, scalars=False)
    items = [service.history_view(h, name) for h, name in rows]
    return _page(items, total, page)


@router.get("/devices/{device_id}/health", response_model=Page[HealthRead], tags=["devices"])
def device_health(
    device_id: Id,
    session: DB,
    _: Reader,
    page: Paging,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> Any:
    """A device's health check snapshots, newest first."""
    service.get_device(session, device_id)
    rows, total = fetch_page(
        session, repository.health_query(device_id, since=since, until=until), page
    )
    return _page(rows, total, page)


# -- device tags and owners --------------------------------------------------------------------


@router.put("/devices/{device_id}/tags", response_model=DeviceRead, tags=["devices"])
def set_device_tags(device_id: Id, body: DeviceTagsSet, session: DB, principal: Writer) -> Any:
    """Set the device's manual tags to exactly these names (rule tags stay as rules decide)."""
    service.set_device_tags(session, device_id=device_id, names=body.tags, actor=principal)
    return service.device_detail(session, device_id)


@router.post("/devices/{device_id}/tags", response_model=DeviceRead, tags=["devices"])
def add_device_tag(device_id: Id, body: DeviceTagAdd, session: DB, principal: Writer) -> Any:
    """Give the device one more tag by hand."""
    service.add_device_tag(session, device_id=device_id, name=body.tag, actor=principal)
    return service.device_detail(session, device_id)


@router.delete("/devices/{device_id}/tags/{tag_id}", response_model=DeviceRead, tags=["devices"])
def remove_device_tag(device_id: Id, tag_id: Id, session: DB, principal: Writer) -> Any:
    """Take a tag off the device (409 when a rule gives it)."""
    service.remove_device_tag(session, device_id=device_id, tag_id=tag_id, actor=principal)
    return service.device_detail(session, device_id)


@router.get("/devices/{device_id}/owners", response_model=Page[OwnershipRead], tags=["devices"])
def list_owners(
    device_id: Id,
    session: DB,
    _: Reader,
    page: Paging,
    history: Annotated[bool, Query(description="Include revoked ownerships")] = False,
) -> Any:
    """A device's current owners (or, with history=true, every ownership), newest first."""
    service.get_device(session, device_id)
    stmt = repository.ownership_query(device_id, include_revoked=history)
    rows, total = fetch_page(session, stmt, page, scalars=False)
    return _page([service.ownership_view(o, name) for o, name in rows], total, page)


@router.post(
    "/devices/{device_id}/owners", response_model=OwnershipRead, status_code=201, tags=["devices"]
)
def assign_owner(device_id: Id, body: OwnerAssign, session: DB, principal: Writer) -> Any:
    """Make a user an owner of the device."""
    return service.assign_owner(
        session, device_id=device_id, username=body.username, actor=principal
    )


@router.delete(
    "/devices/{device_id}/owners/{user_id}", response_model=OwnershipRead, tags=["devices"]
)
def revoke_owner(device_id: Id, user_id: Id, session: DB, principal: Writer) -> Any:
    """End a user's ownership of the device (kept as history)."""
    return service.revoke_owner(session, device_id=device_id, user_id=user_id, actor=principal)


# -- tags --------------------------------------------------------------------------------------


@router.get("/tags", response_model=Page[TagRead], tags=["tags"])
def list_tags(session: DB, _: Reader, page: Paging, q: Search = None) -> Any:
    """Tags with how many devices carry them and how many rules apply them."""
    rows, total = fetch_page(session, repository.tags_query(q=q), page, scalars=False)
    return _page([service.tag_view(t, d, r) for t, d, r in rows], total, page)


@router.post("/tags", response_model=TagRead, status_code=201, tags=["tags"])
def create_tag(body: TagCreate, session: DB, principal: Writer) -> Any:
    """Create a tag `{name, color?, description?}`; names are unique."""
    return service.tag_view(service.create_tag(session, data=body, actor=principal))


@router.get("/tags/{tag_id}", response_model=TagRead, tags=["tags"])
def get_tag(tag_id: Id, session: DB, _: Reader) -> Any:
    """One tag with its counts."""
    return service.tag_detail(session, tag_id)


@router.patch("/tags/{tag_id}", response_model=TagRead, tags=["tags"])
def update_tag(tag_id: Id, body: TagUpdate, session: DB, principal: Writer) -> Any:
    """Rename a tag or change its color or description."""
    service.update_tag(session, tag_id=tag_id, data=body, actor=principal)
    return service.tag_detail(session, tag_id)


@router.delete("/tags/{tag_id}", status_code=204, tags=["tags"])
def delete_tag(
    tag_id: Id,
    session: DB,
    principal: Writer,
    force: Annotated[
        bool, Query(description="Also when credentials or scheduled jobs select by it")
    ] = False,
) -> Response:
    """Delete a tag: it leaves every device and its rules go too."""
    service.delete_tag(session, tag_id=tag_id, force=force, actor=principal)
    return Response(status_code=204)


# -- tag rules ---------------------------------------------------------------------------------


@router.get("/tag-rules", response_model=Page[TagRuleRead], tags=["tags"])
def list_rules(
    session: DB,
    _: Reader,
    page: Paging,
    tag_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    is_active: bool | None = None,
) -> Any:
    """Tag rules, by tag and name."""
    stmt = repository.rules_query(tag_id=tag_id, is_active=is_active)
    rows, total = fetch_page(session, stmt, page, scalars=False)
    return _page([service.rule_view(r, name) for r, name in rows], total, page)


@router.post("/tag-rules", response_model=TagRuleSaved, status_code=201, tags=["tags"])
def create_rule(body: TagRuleCreate, session: DB, principal: Writer) -> Any:
    """Save a rule that gives a tag to matching devices; it is applied at once."""
    return service.create_rule(session, data=body, actor=principal)


@router.post("/tag-rules/preview", response_model=Page[DeviceBrief], tags=["tags"])
def preview_rule(body: RulePreview, session: DB, _: Reader, page: Paging) -> Any:
    """The devices a rule would match; nothing is changed."""
    found = service.preview_rule(session, tree=body.rule)
    return _page(found[page.offset : page.offset + page.limit], len(found), page)


@router.get("/tag-rules/{rule_id}", response_model=TagRuleRead, tags=["tags"])
def get_rule(rule_id: Id, session: DB, _: Reader) -> Any:
    """One tag rule."""
    rule, tag_name = service.get_rule(session, rule_id)
    return service.rule_view(rule, tag_name)


@router.patch("/tag-rules/{rule_id}", response_model=TagRuleSaved, tags=["tags"])
def update_rule(rule_id: Id, body: TagRuleUpdate, session: DB, principal: Writer) -> Any:
    """Change a rule; its tag is re-applied to every device at once."""
    return service.update_rule(session, rule_id=rule_id, data=body, actor=principal)


@router.delete("/tag-rules/{rule_id}", status_code=204, tags=["tags"])
def delete_rule(rule_id: Id, session: DB, principal: Writer) -> Response:
    """Delete a rule; devices that had the tag only from rules lose it."""
    service.delete_rule(session, rule_id=rule_id, actor=principal)
    return Response(status_code=204)
