"""`labkeeper import scheduler-db URL`: a database in the testbed scheduler seed's schema.

Natural keys (how a record already imported, or already in labkeeper, is recognised):
users by username; role assignments by user; devices by name (`deviceName`); maintenance
windows by device and times; tags by name; device tags by the pair; ownership by device, owner
and assignment time; health snapshots by device, time and status; topologies by owner, name and
creation time; reviews by topology; bookings by group, device and time range; collaborator links
by group and user; favourites by owner and name; settings by key; invitations by token hash;
audit rows by time, action, entity and actor name.

The seed's collaborator copy rows (`is_collaborator` true) become `booking_collaborators` links,
as do the user ids of the `collaborators` JSON lists.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from labkeeper.auth.models import Invitation, RoleAssignment, User
from labkeeper.booking import repository as booking_repo
from labkeeper.booking.models import (
    HOLDING_STATUSES,
    Booking,
    BookingCollaborator,
    BookingFavorite,
    BookingStatus,
)
from labkeeper.core.db import Database
from labkeeper.core.security import token_hash
from labkeeper.core.time import as_utc, utcnow
from labkeeper.importers import records
from labkeeper.importers.common import Progress, Report, Run, Source, clean, dt, flag, js
from labkeeper.inventory.models import (
    Device,
    DeviceHealthSnapshot,
    DeviceOwnership,
    DeviceTag,
    MaintenanceWindow,
)
from labkeeper.topology.models import Topology, TopologyReview

TABLES = (
    "user_table",
    "admin_roles",
    "device_table",
    "device_tags",
    "device_ownership",
    "device_health_snapshot",
    "topology_table",
    "topology_review",
    "booking_table",
    "booking_favorite",
    "admin_settings",
    "admin_invitations",
    "admin_audit_log",
)

BOOKING_STATUS_WORDS = {
    "pending": BookingStatus.PENDING,
    "requested": BookingStatus.PENDING,
    "confirmed": BookingStatus.CONFIRMED,
    "approved": BookingStatus.CONFIRMED,
    "booked": BookingStatus.CONFIRMED,
    "active": BookingStatus.ACTIVE,
    "in_progress": BookingStatus.ACTIVE,
    "completed": BookingStatus.COMPLETED,
    "complete": BookingStatus.COMPLETED,
    "finished": BookingStatus.COMPLETED,
    "done": BookingStatus.COMPLETED,
    "cancelled": BookingStatus.CANCELLED,
    "canceled": BookingStatus.CANCELLED,
    "rejected": BookingStatus.REJECTED,
    "declined": BookingStatus.REJECTED,
    "denied": BookingStatus.REJECTED,
    "expired": BookingStatus.EXPIRED,
    "conflicting": BookingStatus.CONFLICTING,
    "conflict": BookingStatus.CONFLICTING,
    "waitlisted": BookingStatus.CONFLICTING,
}
REVIEW_STATUSES = ("submitted", "approved", "rejected")


def _utc(moment: datetime) -> str:
    return as_utc(moment).strftime("%Y-%m-%d %H:%M")


def total_rows(source: Source) -> int:
    """Source rows this import reads (for the progress bar)."""
    return sum(source.count(t) for t in TABLES)


def run_import(
    database: Database, url: str, *, dry_run: bool = False, progress: Progress | None = None
) -> Report:
    """Import a scheduler database; the whole import is one transaction."""
    source = Source(url)
    run = Run(database, "scheduler-db", dry_run=dry_run, progress=progress)
    try:
        _Scheduler(run, source).all()
    except BaseException:
        run.abort()
        raise
    finally:
        source.close()
    return run.finish()


class _Scheduler:
    def __init__(self, run: Run, source: Source) -> None:
        self.run = run
        self.s = run.session
        self.src = source
        self.users = run.map("user")
        self.devices = run.map("device")
        self.topologies = run.map("topology")
        self.usernames: dict[int, str] = {}
        self.new_users: dict[int, bool] = {}  # new user id -> seed is_admin

    def all(self) -> None:
        self.user_table()
        self.admin_roles()
        self.device_table()
        self.device_tags()
        self.device_ownership()
        self.health()
        self.topology_table()
        self.topology_review()
        self.booking_table()
        self.booking_favorite()
        self.admin_settings()
        self.admin_invitations()
        self.admin_audit_log()
        self.s.flush()

    def user_id(self, value: Any) -> int | None:
        return None if value is None else self.users.get(value)

    # -- people -----------------------------------------------------------------------------

    def user_table(self) -> None:
        t = "user_table"
        for row in self.run.each(self.src, t):
            ref = f"id {row['id']}"
            name = clean(row.get("username"))
            if not name:
                self.run.skip(t, ref, "no username")
                continue
            if len(name) > 50:
                self.run.skip(t, ref, f"username {name!r} is longer than 50 characters")
                continue
            found = records.user(self.s, name)
            if found is not None:
                self.users[row["id"]] = found.id
                self.usernames[found.id] = found.username
                self.run.existing(t)
                continue
            email, discord = clean(row.get("email")), clean(row.get("discord_id"))
            if not records.email_free(self.s, email):
                self.run.note(t, name, f"email {email} belongs to another user; left empty")
                email = None
            if not records.discord_free(self.s, discord):
                self.run.note(t, name, f"Discord id {discord} belongs to another user; left empty")
                discord = None
            hashed, why = records.password_hash(row.get("password"))
            if why:
                self.run.note(t, name, why)
            new = User(username=name, email=email, discord_id=discord, password_hash=hashed)
            self.s.add(new)
            self.s.flush()
            self.users[row["id"]] = new.id
            self.usernames[new.id] = name
            self.new_users[new.id] = flag(row.get("is_admin"))
            self.run.created(t)

    def admin_roles(self) -> None:
        t = "admin_roles"
        for row in self.run.each(self.src, t):
            ref = f"id {row['id']}"
            uid = self.user_id(row.get("user_id"))
            if uid is None:
                self.run.skip(t, ref, f"user {row.get('user_id')} is not in the source's users")
                continue
            held = self.s.scalar(select(RoleAssignment).where(RoleAssignment.user_id == uid))
            if held is not None:
                self.run.existing(t)
                continue
            role = records.role_name(clean(row.get("role")), default="viewer")
            if clean(row.get("role")) and records.role_name(row["role"], "?") == "?":
                self.run.note(t, ref, f"unknown role {row['role']!r} became viewer")
            status = (clean(row.get("status")) or "active").lower()
            if status not in ("active", "inactive", "suspended"):
                self.run.note(t, ref, f"unknown status {status!r} became inactive")
                status = "inactive"
            permissions = js(row.get("permissions"))
            if isinstance(permissions, list):
                permissions = {str(k): True for k in permissions}
            if not isinstance(permissions, dict):
                permissions = None
            limits = js(row.get("approval_limits"))
            self.run.add(
                t,
                RoleAssignment(
                    user_id=uid,
                    role=role,
                    status=status,
                    permissions=permissions or None,
                    approval_limits=limits if isinstance(limits, dict) else None,
                    created_at=dt(row.get("created_at")) or utcnow(),
                    updated_at=dt(row.get("updated_at")) or utcnow(),
                ),
            )
        # Everyone else: is_admin gives admin, the rest are members.
        for uid, is_admin in self.new_users.items():
            records.ensure_role(self.s, uid, "admin" if is_admin else "member")

    # -- devices ----------------------------------------------------------------------------

    def device_table(self) -> None:
        t = "device_table"
        for row in self.run.each(self.src, t):
            sid = row["id"]
            ref = f"id {sid}"
            name = clean(row.get("deviceName"))
            if not name:
                name = f"device-{sid}"
                self.run.note(t, ref, f"no deviceName; named {name}")
            name = name[:100]
            found = records.device(self.s, name)
            if found is not None:
                self.devices[sid] = found.id
                self.run.existing(t)
                self.maintenance(row, found.id, name)
                continue
            status, known = records.device_status(clean(row.get("status")))
            if not known:
                self.run.note(t, name, f"unknown status {row.get('status')!r} became available")
            switch = clean(row.get("polatis_name"))
            in_port, out_port = row.get("In_Port"), row.get("Out_Port")
            if switch is None:
                in_port = out_port = None
            else:
                owner = records.port_owner(self.s, switch, in_port, out_port)
                if owner is not None:
                    self.run.note(
                        t,
                        name,
                        f"switch ports {switch} in {in_port}/out {out_port} are taken by "
                        f"{owner}; imported without switch ports",
                    )
                    in_port = out_port = None
            type_name = (clean(row.get("deviceType")) or "unspecified")[:100]
            dtype = records.device_type(self.s, type_name, has_ports=switch is not None)
            new = Device(
                name=name,
                mgmt_address=clean(row.get("ip_address")),
                status=status,
                device_type_id=dtype.id,
                switch_name=switch[:100] if switch else None,
                switch_in_port=in_port,
                switch_out_port=out_port,
            )
            self.s.add(new)
            self.s.flush()
            self.devices[sid] = new.id
            self.run.created(t)
            self.maintenance(row, new.id, name)

    def maintenance(self, row: dict[str, Any], device_id: int, name: str) -> None:
        raw_start, raw_end = row.get("maintenance_start"), row.get("maintenance_end")
        if not clean(raw_start) and not clean(raw_end):
            return
        t = "device_table"
        try:
            start, end = dt(raw_start), dt(raw_end)
        except ValueError:
            self.run.note(
                t, name, f"maintenance {raw_start!r} to {raw_end!r} is not a time; not kept"
            )
            return
        if start is None or end is None or end <= start:
            self.run.note(
                t, name, f"maintenance {raw_start!r} to {raw_end!r} is not a period; not kept"
            )
            return
        exists = records.find(
            self.s, MaintenanceWindow, device_id=device_id, start_time=start, end_time=end
        )
        if exists is None:
            self.s.add(
                MaintenanceWindow(
                    device_id=device_id,
                    start_time=start,
                    end_time=end,
                    reason="imported from the scheduler",
                )
            )
            self.s.flush()

    def device_tags(self) -> None:
        t = "device_tags"
        for row in self.run.each(self.src, t):
            ref = f"id {row['id']}"
            did = self.devices.get(row.get("device_id"))
            name = clean(row.get("tag"))
            if did is None:
                self.run.skip(t, ref, f"device {row.get('device_id')} is not in the source")
                continue
            if not name:
                self.run.skip(t, ref, "empty tag")
                continue
            tag, _ = records.tag(self.s, name[:50])
            if self.s.get(DeviceTag, (did, tag.id)) is not None:
                self.run.existing(t)
                continue
            self.run.add(
                t,
                DeviceTag(
                    device_id=did,
                    tag_id=tag.id,
                    source="manual",
                    created_at=dt(row.get("created_at")) or utcnow(),
                ),
            )

    def device_ownership(self) -> None:
        t = "device_ownership"
        for row in self.run.each(self.src, t):
            ref = f"id {row['id']}"
            did = self.devices.get(row.get("device_id"))
            owner = self.user_id(row.get("owner_id"))
            if did is None or owner is None:
                self.run.skip(t, ref, "its device or owner is not in the source")
                continue
            assigned = dt(row.get("assigned_at")) or utcnow()
            exists = records.find(
                self.s, DeviceOwnership, device_id=did, owner_id=owner, assigned_at=assigned
            )
            if exists is not None:
                self.run.existing(t)
                continue
            self.run.add(
                t,
                DeviceOwnership(
                    device_id=did,
                    owner_id=owner,
                    assigned_by=self.user_id(row.get("assigned_by")),
                    assigned_at=assigned,
                    revoked_at=dt(row.get("revoked_at")),
                ),
            )

    def health(self) -> None:
        t = "device_health_snapshot"
        latest: dict[int, tuple[datetime, str, datetime | None]] = {}
        for row in self.run.each(self.src, t):
            ref = f"id {row['id']}"
            did = self.devices.get(row.get("device_id"))
            if did is None:
                self.run.skip(t, ref, f"device {row.get('device_id')} is not in the source")
                continue
            status = (clean(row.get("status")) or "unknown")[:20]
            taken = dt(row.get("updated_at")) or utcnow()
            heartbeat = dt(row.get("heartbeat_at"))
            if did not in latest or latest[did][0] <= taken:
                latest[did] = (taken, status, heartbeat)
            exists = records.find(
                self.s, DeviceHealthSnapshot, device_id=did, created_at=taken, status=status
            )
            if exists is not None:
                self.run.existing(t)
                continue
            metrics = js(row.get("metrics"))
            latency = metrics.get("latency_ms") if isinstance(metrics, dict) else None
            self.run.add(
                t,
                DeviceHealthSnapshot(
                    device_id=did,
                    status=status,
                    heartbeat_at=heartbeat,
                    latency_ms=float(latency) if isinstance(latency, int | float) else None,
                    metrics=metrics if isinstance(metrics, dict) else None,
                    created_at=taken,
                ),
            )
        for did, (_, status, heartbeat) in latest.items():
            device = self.s.get(Device, did)
            if device is not None and device.reachability == "unknown":
                device.reachability = status
                device.last_seen_at = device.last_seen_at or heartbeat

    # -- topologies -------------------------------------------------------------------------

    def _remap_nodes(self, nodes: list[Any]) -> list[Any]:
        out = []
        for node in nodes:
            if isinstance(node, dict) and node.get("device_id") in self.devices:
                node = {**node, "device_id": self.devices[node["device_id"]]}
            out.append(node)
        return out

    def topology_table(self) -> None:
        t = "topology_table"
        for row in self.run.each(self.src, t):
            ref = f"id {row['id']}"
            owner = self.user_id(row.get("user_id"))
            if owner is None:
                self.run.skip(t, ref, f"owner {row.get('user_id')} is not in the source")
                continue
            nodes, edges = js(row.get("nodes")), js(row.get("edges"))
            if not isinstance(nodes, list) or not isinstance(edges, list):
                self.run.skip(t, ref, "nodes or edges are not JSON lists")
                continue
            name = (clean(row.get("name")) or f"topology {row['id']}")[:200]
            created = dt(row.get("created_at")) or utcnow()
            found = records.find(self.s, Topology, user_id=owner, name=name, created_at=created)
            if found is not None:
                self.topologies[row["id"]] = found
                self.run.existing(t)
                continue
            new = Topology(
                user_id=owner,
                name=name,
                nodes=self._remap_nodes(nodes),
                edges=edges,
                created_at=created,
                updated_at=dt(row.get("updated_at")) or created,
            )
            self.s.add(new)
            self.s.flush()
            self.topologies[row["id"]] = new.id
            self.run.created(t)

    def topology_review(self) -> None:
        t = "topology_review"
        for row in self.run.each(self.src, t):
            ref = f"id {row['id']}"
            tid = self.topologies.get(row.get("topology_id"))
            if tid is None:
                self.run.skip(t, ref, f"topology {row.get('topology_id')} was not imported")
                continue
            if self.s.scalar(select(TopologyReview.id).where(TopologyReview.topology_id == tid)):
                self.run.existing(t)
                continue
            status = (clean(row.get("status")) or "submitted").lower()
            if status not in REVIEW_STATUSES:
                self.run.note(t, ref, f"unknown status {status!r} became submitted")
                status = "submitted"
            created = dt(row.get("created_at")) or utcnow()
            self.run.add(
                t,
                TopologyReview(
                    topology_id=tid,
                    status=status,
                    conflict_count=int(row.get("conflict_count") or 0),
                    last_checked_at=dt(row.get("last_checked_at")),
                    resolved_at=dt(row.get("resolved_at")),
                    resolved_by=self.user_id(row.get("resolved_by")),
                    notes=row.get("notes"),
                    created_at=created,
                    updated_at=dt(row.get("updated_at")) or created,
                ),
            )

    # -- bookings ---------------------------------------------------------------------------

    def _status(self, ref: str, value: Any) -> str:
        word = (clean(value) or "").lower().replace(" ", "_")
        if word in BOOKING_STATUS_WORDS:
            return BOOKING_STATUS_WORDS[word].value
        self.run.note("booking_table", ref, f"status {value!r} is unknown; imported as PENDING")
        return BookingStatus.PENDING.value

    def _collaborator(self, group: str, uid: int, owner: int | None, added: datetime) -> bool:
        """Add a collaborator link; False when it was there already (or is the owner)."""
        if uid == owner:
            return False
        exists = records.find(self.s, BookingCollaborator, grouped_booking_id=group, user_id=uid)
        if exists is not None:
            return False
        self.s.add(
            BookingCollaborator(
                grouped_booking_id=group, user_id=uid, added_by=owner, added_at=added
            )
        )
        self.s.flush()
        return True

    def booking_table(self) -> None:
        t = "booking_table"
        rows = list(self.run.each(self.src, t, order_by="booking_id"))
        owners: dict[str, int] = {}
        # Owner rows first: they are the bookings; copies only name collaborators.
        for row in sorted(rows, key=lambda r: flag(r.get("is_collaborator"))):
            ref = f"booking_id {row['booking_id']}"
            group = clean(row.get("grouped_booking_id"))
            uid = self.user_id(row.get("user_id"))
            if not group:
                self.run.skip(t, ref, "no grouped_booking_id")
                continue
            if uid is None:
                self.run.skip(t, ref, f"user {row.get('user_id')} is not in the source")
                continue
            created = dt(row.get("created_at")) or utcnow()
            if flag(row.get("is_collaborator")):
                owner = owners.get(group)
                if owner is None:
                    self.run.skip(t, ref, f"collaborator copy of group {group} has no owner row")
                elif self._collaborator(group, uid, owner, created):
                    self.run.created(t)
                else:
                    self.run.existing(t)
                continue
            did = self.devices.get(row.get("device_id"))
            if did is None:
                self.run.skip(t, ref, f"device {row.get('device_id')} is not in the source")
                continue
            try:
                start, end = dt(row.get("start_time")), dt(row.get("end_time"))
            except ValueError:
                self.run.skip(t, ref, "start or end is not a time")
                continue
            if start is None or end is None or end <= start:
                self.run.skip(t, ref, "the booking ends before it starts")
                continue
            owners.setdefault(group, uid)
            self._links(row, group, owners[group], created, ref)
            exists = records.find(
                self.s,
                Booking,
                grouped_booking_id=group,
                device_id=did,
                start_time=start,
                end_time=end,
            )
            if exists is not None:
                self.run.existing(t)
                continue
            status = self._status(ref, row.get("status"))
            if status in HOLDING_STATUSES:
                clash = self._clash(did, start, end)
                if clash:
                    self.run.note(
                        t,
                        ref,
                        f"{status} booking overlaps {clash} on the same device; "
                        f"imported as CONFLICTING (waitlisted)",
                    )
                    status = BookingStatus.CONFLICTING.value
            self.run.add(
                t,
                Booking(
                    grouped_booking_id=group,
                    device_id=did,
                    user_id=uid,
                    start_time=start,
                    end_time=end,
                    status=status,
                    comment=row.get("comment"),
                    created_at=created,
                    updated_at=created,
                ),
            )

    def _clash(self, device_id: int, start: datetime, end: datetime) -> str | None:
        """What a live booking would collide with on its device: the first holding booking,
        else the first maintenance window (imported ones included: they are written first)."""
        found = booking_repo.overlaps(self.s, [(device_id, start, end)])
        other = next((o for o in found if o.kind == "booking"), None)
        if other is not None:
            return f"booking {other.id} of {other.username}"
        window = next((o for o in found if o.kind == "maintenance"), None)
        if window is not None:
            return (
                f"maintenance window {window.id} ({_utc(window.start_time)} to "
                f"{_utc(window.end_time)} UTC)"
            )
        return None

    def _links(
        self, row: dict[str, Any], group: str, owner: int, added: datetime, ref: str
    ) -> None:
        listed = js(row.get("collaborators")) or []
        if not isinstance(listed, list):
            self.run.note("booking_table", ref, "collaborators is not a JSON list; ignored")
            return
        for sid in listed:
            uid = self.users.get(sid)
            if uid is None and isinstance(sid, str) and sid.isdigit():
                uid = self.users.get(int(sid))
            if uid is None:
                self.run.note("booking_table", ref, f"collaborator {sid!r} is not a known user")
                continue
            self._collaborator(group, uid, owner, added)

    def booking_favorite(self) -> None:
        t = "booking_favorite"
        for row in self.run.each(self.src, t):
            ref = f"id {row['id']}"
            owner = self.user_id(row.get("user_id"))
            if owner is None:
                self.run.skip(t, ref, f"owner {row.get('user_id')} is not in the source")
                continue
            name = (clean(row.get("name")) or f"favourite {row['id']}")[:200]
            exists = records.find(self.s, BookingFavorite, user_id=owner, name=name)
            if exists is not None:
                self.run.existing(t)
                continue
            created = dt(row.get("created_at")) or utcnow()
            self.run.add(
                t,
                BookingFavorite(
                    user_id=owner,
                    name=name,
                    grouped_booking_id=clean(row.get("grouped_booking_id")),
                    device_snapshot=self._snapshot(js(row.get("device_snapshot"))),
                    created_at=created,
                    updated_at=dt(row.get("updated_at")) or created,
                ),
            )

    def _snapshot(self, value: Any) -> list[Any]:
        items = value if isinstance(value, list) else [value] if value else []
        out: list[Any] = []
        for item in items:
            if isinstance(item, int | str) and not isinstance(item, bool):
                item = {"device_id": item}
            if isinstance(item, dict):
                sid = item.get("device_id", item.get("id"))
                did = self.devices.get(sid)
                if did is not None:
                    device = self.s.get(Device, did)
                    out.append({**item, "device_id": did, "name": device.name if device else None})
                    continue
            out.append(item)
        return out

    # -- administration ---------------------------------------------------------------------

    def admin_settings(self) -> None:
        records.import_settings(
            self.run,
            self.src,
            "admin_settings",
            unknown="not a labkeeper setting (GET /api/v1/settings lists them)",
            columns=lambda row: {"updated_by": self.user_id(row.get("updated_by"))},
        )

    def admin_invitations(self) -> None:
        t = "admin_invitations"
        for row in self.run.each(self.src, t):
            ref = f"id {row['id']}"
            token = clean(row.get("token"))
            email = clean(row.get("email"))
            if not token or not email:
                self.run.skip(t, ref, "no token or no email")
                continue
            digest = token_hash(token)
            if self.s.scalar(select(Invitation.id).where(Invitation.token_hash == digest)):
                self.run.existing(t)
                continue
            try:
                expires = dt(row.get("expires_at"))
            except ValueError:
                expires = None
            if expires is None:
                self.run.skip(t, ref, "no expiry time")
                continue
            accepted = dt(row.get("accepted_at"))
            handle = clean(row.get("handle"))
            accepted_user = records.user(self.s, handle) if accepted and handle else None
            self.run.add(
                t,
                Invitation(
                    email=email[:254],
                    handle=handle,
                    role=records.role_name(clean(row.get("role")), default="viewer"),
                    invited_by=self.user_id(row.get("invited_by")),
                    token_hash=digest,
                    expires_at=expires,
                    accepted_at=accepted,
                    accepted_user_id=accepted_user.id if accepted_user else None,
                    created_at=dt(row.get("created_at")) or utcnow(),
                ),
            )

    def admin_audit_log(self) -> None:
        records.import_audit_log(
            self.run,
            self.src,
            "admin_audit_log",
            action="action",
            entity="entity_type",
            missing="no action or entity type",
            columns=self._audit_columns,
        )

    def _audit_columns(self, row: dict[str, Any]) -> dict[str, Any]:
        actor = self.user_id(row.get("actor_id"))
        payload = js(row.get("payload"))
        return {
            "created_at": dt(row.get("created_at")) or utcnow(),
            "actor_id": actor,
            "actor_username": self.usernames.get(actor or 0),
            "actor_role": clean(row.get("actor_role")),
            "entity_id": clean(row.get("entity_id")),
            "payload": payload if isinstance(payload, dict) else None,
            "outcome": (clean(row.get("outcome")) or "success")[:20],
            "message": row.get("message"),
        }
