"""Optical provisioning: the database says which patches should exist, the switch is made so.

Level-triggered, so a crash at any point is harmless:

1. `derive` (one transaction) reads the bookings. Every ACTIVE group booked with a topology
   wants the patches of those of its edges whose two devices are ACTIVE in the group; they are
   recorded once in `cross_connects` (desired_state "present"). A wanted patch whose devices
   are no longer ACTIVE in its group (it ended, was cancelled or expired) becomes "absent".
2. Per switch, under a lease row so that only one run talks to a switch at a time: read the
   switch, plan the difference (patches labkeeper does not own are never touched), apply it
   in ONE batched edit-config, read the switch back, and record what it has
   (`actual_state`, `applied_at`, `removed_at`, `attempts`, `last_error`, `next_attempt_at`).

Nothing is remembered between these steps but the database and the switch itself: a worker
killed in the middle of an apply leaves rows whose actual state is unknown or stale, and the
next pass reads the switch and converges. `reconcile` is the same pass over every switch and
every patch, ignoring backoff, and it reports the patches labkeeper does not own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from labkeeper.admin import service as settings
from labkeeper.booking import service as bookings
from labkeeper.core.db import Database, is_deadlock
from labkeeper.core.security import decrypt
from labkeeper.core.time import utcnow
from labkeeper.drivers.base import AuthFailed, DriverError
from labkeeper.drivers.optical.polatis import PolatisClient, SwitchRefused, plan
from labkeeper.jobs import service as jobs
from labkeeper.jobs.context import host_name
from labkeeper.jobs.models import Lease
from labkeeper.topology import repository
from labkeeper.topology.models import CrossConnect

log = logging.getLogger(__name__)

PROVISION_TASK = "topology.provision"
RECONCILE_TASK = "topology.reconcile"
PRESENT, ABSENT, UNKNOWN = "present", "absent", "unknown"
LEASE_PREFIX = "optical:"
# How long a run may wait for another run to finish with a switch before leaving it be.
PROVISION_WAIT_SECONDS = 3.0
RECONCILE_WAIT_SECONDS = 15.0
NO_SYNC = {"synchronize_session": False}

# `log(level, message, *, category=None, device_id=None, details=None)`, as TaskContext.log.
LogFn = Callable[..., None]


def _python_log(level: str, message: str, **_: Any) -> None:
    log.log(logging.getLevelName(level.upper()), message)


# -- edges and the patches they map to -----------------------------------------------------


@dataclass(frozen=True)
class PortedDevice:
    """A device as validation and provisioning see it."""

    id: int
    name: str
    switch_name: str | None
    in_port: int | None
    out_port: int | None
    bookable: bool = True


@dataclass(frozen=True)
class Patch:
    """A cross-connect an edge maps to: source's output port -> target's input port."""

    edge: str
    switch_name: str
    ingress: int
    egress: int
    source_device_id: int
    target_device_id: int


def _problem(code: str, message: str, **where: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **where}


def map_graph(
    nodes: Sequence[Mapping[str, Any]],
    edges: Sequence[Mapping[str, Any]],
    devices: Mapping[int, PortedDevice],
) -> tuple[list[Patch], list[dict[str, Any]]]:
    """The patches a drawing maps to, and every problem found, each naming its node or edge."""
    problems: list[dict[str, Any]] = []
    node_devices: dict[str, PortedDevice] = {}
    seen_devices: dict[int, str] = {}
    for node in nodes:
        node_id, device_id = str(node.get("id")), node.get("device_id")
        if node_id in node_devices or any(p.get("node") == node_id for p in problems):
            problems.append(
                _problem("duplicate_node", f"two nodes have the id {node_id!r}", node=node_id)
            )
            continue
        device = devices.get(device_id) if isinstance(device_id, int) else None
        if device is None:
            problems.append(
                _problem(
                    "unknown_device",
                    f"node {node_id!r}: there is no device with id {device_id}",
                    node=node_id,
                    device_id=device_id,
                )
            )
            continue
        if device.id in seen_devices:
            problems.append(
                _problem(
                    "duplicate_device",
                    f"node {node_id!r}: device {device.name!r} is node "
                    f"{seen_devices[device.id]!r} already",
                    node=node_id,
                    device_id=device.id,
                )
            )
            continue
        if not device.bookable:
            problems.append(
                _problem(
                    "device_not_schedulable",
                    f"node {node_id!r}: device {device.name!r} cannot be booked",
                    node=node_id,
                    device_id=device.id,
                )
            )
        seen_devices[device.id] = node_id
        node_devices[node_id] = device
    known_nodes = {str(n.get("id")) for n in nodes}
    patches: list[Patch] = []
    edge_ids: set[str] = set()
    used: dict[tuple[str, int], str] = {}
    for edge in edges:
        edge_id = str(edge.get("id"))
        source, target = str(edge.get("source")), str(edge.get("target"))
        if edge_id in edge_ids:
            problems.append(
                _problem("duplicate_edge", f"two edges have the id {edge_id!r}", edge=edge_id)
            )
            continue
        edge_ids.add(edge_id)
        missing = [n for n in (source, target) if n not in known_nodes]
        if missing:
            problems.append(
                _problem(
                    "unknown_node",
                    f"edge {edge_id!r}: there is no node {missing[0]!r}",
                    edge=edge_id,
                    node=missing[0],
                )
            )
            continue
        if source == target:
            problems.append(
                _problem(
                    "self_loop", f"edge {edge_id!r} joins node {source!r} to itself", edge=edge_id
                )
            )
            continue
        a, b = node_devices.get(source), node_devices.get(target)
        if a is None or b is None:
            continue  # the node's own problem is reported already
        if not a.switch_name or a.out_port is None:
            problems.append(
                _problem(
                    "edge_not_patchable",
                    f"edge {edge_id!r}: device {a.name!r} has no output port on an optical switch",
                    edge=edge_id,
                    device_id=a.id,
                )
            )
            continue
        if not b.switch_name or b.in_port is None:
            problems.append(
                _problem(
                    "edge_not_patchable",
                    f"edge {edge_id!r}: device {b.name!r} has no input port on an optical switch",
                    edge=edge_id,
                    device_id=b.id,
                )
            )
            continue
        if a.switch_name != b.switch_name:
            problems.append(
                _problem(
                    "different_switches",
                    f"edge {edge_id!r}: {a.name!r} is on switch {a.switch_name!r} but "
                    f"{b.name!r} is on {b.switch_name!r}; one patch cannot join two switches",
                    edge=edge_id,
                )
            )
            continue
        switch, ingress, egress = a.switch_name, a.out_port, b.in_port
        if ingress == egress:
            problems.append(
                _problem(
                    "port_reused",
                    f"edge {edge_id!r}: ingress and egress are both port {ingress}",
                    edge=edge_id,
                    switch_name=switch,
                    port=ingress,
                )
            )
            continue
        clash = next((p for p in (ingress, egress) if (switch, p) in used), None)
        if clash is not None:
            problems.append(
                _problem(
                    "port_reused",
                    f"edge {edge_id!r}: port {clash} of switch {switch!r} is used by edge "
                    f"{used[(switch, clash)]!r} already",
                    edge=edge_id,
                    switch_name=switch,
                    port=clash,
                    other_edge=used[(switch, clash)],
                )
            )
            continue
        used[(switch, ingress)] = used[(switch, egress)] = edge_id
        patches.append(Patch(edge_id, switch, ingress, egress, a.id, b.id))
    return patches, problems


def ported_devices(
    session: Session, ids: Iterable[int] = (), switches: Iterable[str] = ()
) -> dict[int, PortedDevice]:
    """Devices by id (and all devices on some switches) with their switch ports."""
    return {
        r.id: PortedDevice(r.id, r.name, r.switch_name, r.switch_in_port, r.switch_out_port)
        for r in repository.port_devices(session, ids=ids, switches=switches)
    }


# -- asking for a run ----------------------------------------------------------------------


def request_provisioning(session: Session) -> int | None:
    """Queue a provisioning run that starts once this transaction commits (unless one waits
    to start already); returns the run's id. Call it after a change that moves patches."""
    if repository.queued_run_exists(session, PROVISION_TASK):
        return None
    return jobs.enqueue(session, PROVISION_TASK, params={}).id


def retry_due(session: Session, now: datetime) -> bool:
    """Whether a patch still differs from the switch and its backoff has passed."""
    return repository.patches_due(session, now)


def _groups_moved(session: Session, gids: set[str]) -> None:
    """Booking groups started or ended: if one was booked with a topology, patch or unpatch."""
    if repository.any_with_topology(session, gids):
        request_provisioning(session)


bookings.active_change_hooks.append(_groups_moved)


# -- step 1: what the bookings want --------------------------------------------------------


def derive(session: Session, *, log_fn: LogFn = _python_log) -> dict[str, int]:
    """Record the patches ACTIVE topology groups want; release those of groups that ended."""
    active: dict[str, set[int]] = defaultdict(set)
    topology_of: dict[str, tuple[int, int]] = {}
    # A row past its end counts as over at once, not when the lifecycle job gets to it.
    for r in repository.active_rows(session, utcnow()):
        active[r.grouped_booking_id].add(r.device_id)
        if r.topology_id is not None:
            topology_of[r.grouped_booking_id] = (r.topology_id, r.user_id)
    wanted = repository.wanted_patches(session)
    topologies = repository.topologies_by_ids(session, {t for t, _ in topology_of.values()})
    node_device_ids = {
        n.get("device_id")
        for t in topologies.values()
        for n in (t.nodes or [])
        if isinstance(n, dict) and isinstance(n.get("device_id"), int)
    }
    devices = ported_devices(
        session, ids=cast(set[int], node_device_ids), switches={w.switch_name for w in wanted}
    )
    by_out = {(d.switch_name, d.out_port): d.id for d in devices.values() if d.out_port}
    by_in = {(d.switch_name, d.in_port): d.id for d in devices.values() if d.in_port}

    recorded = 0
    known = repository.patch_keys(session, set(topology_of))
    for gid, (topology_id, user_id) in sorted(topology_of.items()):
        topology = topologies.get(topology_id)
        if topology is None:
            continue
        patches, problems = map_graph(topology.nodes or [], topology.edges or [], devices)
        for problem in problems:
            if "edge" in problem:
                log_fn(
                    "warning",
                    f"group {gid}, topology {topology_id}: {problem['message']}",
                    category="provision",
                    details={"grouped_booking_id": gid, **problem},
                )
        for p in patches:
            key = (gid, p.switch_name, p.ingress, p.egress)
            if key in known:
                continue
            if not {p.source_device_id, p.target_device_id} <= active[gid]:
                continue  # one of its devices is not (or no longer) booked and active
            session.add(
                CrossConnect(
                    grouped_booking_id=gid,
                    topology_id=topology_id,
                    switch_name=p.switch_name,
                    ingress_port=p.ingress,
                    egress_port=p.egress,
                    desired_state=PRESENT,
                    actual_state=UNKNOWN,
                    attempts=0,
                    created_by=user_id,
                )
            )
            known.add(key)
            recorded += 1
    released = []
    for row in wanted:
        if row.grouped_booking_id is None:
            continue  # not tied to a booking: kept until someone removes it
        ends = (
            by_out.get((row.switch_name, row.ingress_port)),
            by_in.get((row.switch_name, row.egress_port)),
        )
        if None in ends or not set(ends) <= active.get(row.grouped_booking_id, set()):
            released.append(row.id)
    if released:
        session.execute(
            update(CrossConnect)
            .where(CrossConnect.id.in_(released), CrossConnect.desired_state == PRESENT)
            .values(desired_state=ABSENT, attempts=0, last_error=None, next_attempt_at=None),
            execution_options=NO_SYNC,
        )
    session.flush()
    return {"recorded": recorded, "released": len(released)}


# -- step 2: the switches ------------------------------------------------------------------


@dataclass
class SwitchTarget:
    """How to reach one switch, or why it cannot be reached."""

    name: str
    device_id: int | None = None
    host: str | None = None
    port: int = 830
    credentials: list[tuple[int, str, str]] = field(default_factory=list)
    problem: str | None = None


def switch_targets(session: Session, names: Iterable[str]) -> dict[str, SwitchTarget]:
    """Address and credentials of switches by name (from the inventory and credential store)."""
    wanted = set(names)
    rows = {r.name: r for r in repository.switch_devices(session, wanted)}
    creds = repository.switch_credentials(
        session, {r.id for r in rows.values()}, {r.id: r.last_credential_id for r in rows.values()}
    )
    out: dict[str, SwitchTarget] = {}
    for name in sorted(wanted):
        row = rows.get(name)
        if row is None:
            out[name] = SwitchTarget(
                name,
                problem=f"switch {name!r} is not in the inventory: add a device named "
                f"{name!r} with platform 'polatis'",
            )
            continue
        target = SwitchTarget(name, row.id, row.mgmt_address, row.ssh_port or 830)
        for credential in creds.get(row.id, []):
            if not credential.password_enc:
                continue
            try:
                target.credentials.append(
                    (credential.id, credential.username, decrypt(credential.password_enc))
                )
            except ValueError:
                log.warning(
                    "credential %s cannot be decrypted with the current keys", credential.id
                )
        if not row.mgmt_address:
            target.problem = f"switch {name!r} has no management address in the inventory"
        elif not target.credentials:
            target.problem = (
                f"no usable credential for switch {name!r}: give it a tag that a credential "
                "carries (or check the secret keys)"
            )
        out[name] = target
    return out


@dataclass
class Timing:
    """Settings that shape a pass."""

    timeout: float = 10.0
    backoff: float = 2.0
    max_backoff: float = 300.0

    @classmethod
    def read(cls, session: Session) -> Timing:
        """Current values from settings."""
        return cls(
            timeout=float(settings.get(session, "optical.timeout_seconds")),
            backoff=float(settings.get(session, "optical.retry_backoff_seconds")),
            max_backoff=float(settings.get(session, "optical.retry_max_backoff_seconds")),
        )

    def delay(self, attempts: int) -> timedelta:
        """Wait after the attempts-th failure in a row."""
        seconds = self.backoff * 2 ** max(0, min(attempts - 1, 30))
        return timedelta(seconds=min(seconds, self.max_backoff))


@dataclass(frozen=True)
class Snap:
    """A patch row as read at the start of a pass."""

    id: int
    gid: str | None
    switch_name: str
    ingress: int
    egress: int
    desired: str
    actual: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None

    @property
    def pair(self) -> tuple[int, int]:
        """(ingress, egress)."""
        return self.ingress, self.egress

    def due(self, now: datetime) -> bool:
        """Whether its backoff is over."""
        return self.next_attempt_at is None or self.next_attempt_at <= now

    @classmethod
    def of(cls, row: CrossConnect) -> Snap:
        """A snapshot of a row."""
        return cls(
            row.id,
            row.grouped_booking_id,
            row.switch_name,
            row.ingress_port,
            row.egress_port,
            row.desired_state,
            row.actual_state,
            row.attempts or 0,
            row.last_error,
            row.next_attempt_at,
        )


@dataclass
class Outcome:
    """What became of one row in a pass: its state on the switch, or why it failed."""

    snap: Snap
    actual: str | None
    error: str | None = None
    attempted: bool = False


@dataclass
class SwitchReport:
    """The result of a pass over one switch."""

    switch: str
    added: int = 0
    removed: int = 0
    failed: int = 0
    confirmed: int = 0
    foreign: list[tuple[int, int]] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None
    seconds: float = 0.0


def _occupant(port: int, patches: Mapping[int, int]) -> str | None:
    if port in patches:
        return f"{port}->{patches[port]}"
    for i, e in patches.items():
        if e == port:
            return f"{i}->{e}"
    return None


def _apply(
    client: PolatisClient, add: list[tuple[int, int]], remove: list[tuple[int, int]]
) -> dict[tuple[int, int], str]:
    """One batched edit-config; when the switch refuses it, find out which items it refuses
    (one item per edit-config) so one bad patch does not hold back the others."""
    try:
        client.apply(add=add, remove=remove)
        return {}
    except SwitchRefused as exc:
        if len(add) + len(remove) <= 1:
            return {pair: exc.switch_message for pair in (*add, *remove)}
    refused: dict[tuple[int, int], str] = {}
    for pair in remove:
        try:
            client.apply(remove=[pair])
        except SwitchRefused as exc:
            refused[pair] = exc.switch_message
    for pair in add:
        try:
            client.apply(add=[pair])
        except SwitchRefused as exc:
            refused[pair] = exc.switch_message
    return refused


def _connect(target: SwitchTarget, timeout: float) -> tuple[PolatisClient, int]:
    """A connected client, trying the switch's credentials in order."""
    assert target.host is not None
    last: DriverError | None = None
    for credential_id, username, password in target.credentials:
        client = PolatisClient(target.host, target.port, username, password, timeout=timeout)
        try:
            return client.connect(), credential_id
        except AuthFailed as exc:
            last = exc
            continue
    raise last or AuthFailed(f"{target.host}:{target.port}: no credential to try")


def sync_switch(
    target: SwitchTarget,
    rows: Sequence[Snap],
    *,
    full: bool,
    now: datetime,
    timing: Timing,
) -> tuple[list[Outcome], SwitchReport, int | None]:
    """Converge one switch towards the rows (talks to the switch, never to the database).

    Returns what became of each row it considered, a report, and the credential that worked.
    """
    report = SwitchReport(target.name)
    work = [r for r in rows if full or (r.desired != r.actual and r.due(now))]
    if not work and not full:
        return [], report, None
    # The rows whose state this pass establishes: the work, and the patches in place already
    # (kept, and put back if they went missing). Failing rows still in backoff are left be.
    considered = {r.id: r for r in work}
    for r in rows:
        if r.desired == PRESENT and r.actual == PRESENT and r.id not in considered:
            considered[r.id] = r
    wanted_rows = sorted(
        (r for r in considered.values() if r.desired == PRESENT),
        key=lambda r: (r.actual != PRESENT, r.id),
    )
    going_rows = [r for r in considered.values() if r.desired != PRESENT]
    outcomes: dict[int, Outcome] = {}
    desired: dict[int, int] = {}
    busy: dict[int, int] = {}
    for r in wanted_rows:
        clash = next((p for p in (r.ingress, r.egress) if p in busy), None)
        if r.ingress == r.egress:
            outcomes[r.id] = Outcome(r, None, "ingress and egress are the same port", True)
        elif clash is not None:
            outcomes[r.id] = Outcome(
                r, None, f"port {clash} is wanted by another patch (#{busy[clash]}) too", True
            )
        else:
            desired[r.ingress] = r.egress
            busy[r.ingress] = busy[r.egress] = r.id
    wanted_pairs = set(desired.items())
    started = time.perf_counter()
    credential_id: int | None = None

    def fail_all(message: str) -> None:
        report.error = message
        for r in considered.values():
            if r.id in outcomes:
                continue
            mismatched = r.desired != r.actual
            # A patch in place that could not be checked keeps its state and its error-free
            # record; only rows that needed a change count a failed attempt.
            if mismatched:
                outcomes[r.id] = Outcome(r, None, message, True)

    if target.problem:
        fail_all(target.problem)
        return list(outcomes.values()), report, None
    client: PolatisClient | None = None
    try:
        client, credential_id = _connect(target, timing.timeout)
        actual = client.get_cross_connects()
        owned = {
            r.ingress
            for r in going_rows
            if actual.get(r.ingress) == r.egress and r.pair not in wanted_pairs
        }
        the_plan = plan(desired, actual, owned)
        refused = _apply(client, the_plan.add, the_plan.remove) if not the_plan.empty else {}
        after = client.get_cross_connects() if not the_plan.empty else actual
    except SwitchRefused as exc:
        fail_all(exc.switch_message)
        return list(outcomes.values()), report, credential_id
    except DriverError as exc:
        fail_all(str(exc))
        return list(outcomes.values()), report, credential_id
    finally:
        if client is not None:
            client.close()
        report.seconds = time.perf_counter() - started
    added, removed, blocked = set(the_plan.add), set(the_plan.remove), set(the_plan.blocked)
    kept = {i: e for i, e in actual.items() if (i, e) not in removed}
    report.foreign = list(the_plan.foreign)
    for r in wanted_rows:
        if r.id in outcomes:
            continue
        attempted = r.pair in added or r.pair in blocked
        if after.get(r.ingress) == r.egress:
            outcomes[r.id] = Outcome(r, PRESENT, None, attempted)
            report.added += r.pair in added
            report.confirmed += r.pair not in added
            continue
        if r.pair in refused:
            message = refused[r.pair]
        elif r.pair in blocked:
            holder = _occupant(r.ingress, kept) or _occupant(r.egress, kept)
            message = (
                f"port in use on the switch by patch {holder}, which labkeeper does not own"
                if holder
                else "the switch has no room for this patch"
            )
        else:
            found = after.get(r.ingress)
            message = (
                f"not on the switch after applying it (ingress {r.ingress} goes to "
                f"{found if found is not None else 'nothing'})"
            )
        outcomes[r.id] = Outcome(r, ABSENT, message, True)
    for r in going_rows:
        attempted = r.pair in removed
        if after.get(r.ingress) != r.egress or r.pair in wanted_pairs:
            outcomes[r.id] = Outcome(r, ABSENT, None, attempted)
            report.removed += attempted
        else:
            message = refused.get(r.pair) or "still on the switch after removing it"
            outcomes[r.id] = Outcome(r, PRESENT, message, True)
    return list(outcomes.values()), report, credential_id


def record(
    session: Session, outcomes: Sequence[Outcome], *, now: datetime, timing: Timing
) -> list[Outcome]:
    """Write what a pass found, in a few bulk updates; returns rows that started failing.

    Each update is guarded by the desired state the pass acted on: a row whose wish changed
    meanwhile (a booking ended) is left for the next pass, which reads the switch again.
    """
    batches: dict[tuple[str, tuple[tuple[str, Any], ...]], list[int]] = defaultdict(list)
    newly_failing: list[Outcome] = []
    for o in outcomes:
        s = o.snap
        values: dict[str, Any] = {}
        if o.error is None:
            if o.actual is not None and o.actual != s.actual:
                values["actual_state"] = o.actual
                if o.actual == ABSENT:
                    values["removed_at"] = now
            if o.actual == PRESENT and (s.actual != PRESENT or o.attempted):
                values["applied_at"] = now
            if s.last_error is not None or s.next_attempt_at is not None:
                values.update(last_error=None, next_attempt_at=None)
            if o.attempted:
                values["attempts"] = s.attempts + 1
        else:
            attempts = s.attempts + 1
            values.update(
                attempts=attempts,
                last_error=o.error[:4000],
                next_attempt_at=now + timing.delay(attempts),
            )
            if o.actual is not None and o.actual != s.actual:
                values["actual_state"] = o.actual
            if s.last_error is None:
                newly_failing.append(o)
        if values:
            batches[(s.desired, tuple(sorted(values.items())))].append(s.id)
    for (desired, changes), ids in batches.items():
        session.execute(
            update(CrossConnect)
            .where(CrossConnect.id.in_(ids), CrossConnect.desired_state == desired)
            .values(**dict(changes)),
            execution_options=NO_SYNC,
        )
    return newly_failing


# -- leases: one run per switch at a time ---------------------------------------------------


def lease_name(switch_name: str) -> str:
    """The lease row that guards a switch."""
    name = LEASE_PREFIX + switch_name
    if len(name) > 50:
        name = LEASE_PREFIX + hashlib.sha256(switch_name.encode()).hexdigest()[:40]
    return name


def _holder_gone(holder: str) -> bool:
    # A holder on this machine whose process has died (killed mid-apply) is gone at once;
    # elsewhere only the lease's expiry tells.
    host, _, rest = holder.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != host_name() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def acquire(db: Database, name: str, holder: str, *, seconds: float, wait: float) -> bool:
    """Take a lease (waiting up to `wait` seconds for its holder to finish or die)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with db.scope() as s:
                if jobs.renew_lease(s, name=name, holder=holder, seconds=seconds):
                    return True
                current = s.scalar(select(Lease.holder).where(Lease.name == name))
                if current is None:
                    jobs.create_lease(s, name=name, holder=holder, seconds=seconds)
                    return True
                if _holder_gone(current):
                    taken = s.execute(
                        update(Lease)
                        .where(Lease.name == name, Lease.holder == current)
                        .values(holder=holder, expires_at=utcnow() + timedelta(seconds=seconds)),
                        execution_options=NO_SYNC,
                    )
                    if _rowcount(taken) == 1:
                        log.info("took over lease %s from %s, whose process is gone", name, current)
                        return True
        except IntegrityError:
            pass  # created by another run meanwhile
        except OperationalError as exc:
            if not is_deadlock(exc):
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def release(db: Database, name: str, holder: str) -> None:
    """Give a lease back."""
    try:
        with db.scope() as s:
            jobs.release_lease(s, name=name, holder=holder)
    except Exception:  # it expires anyway
        log.warning("could not release lease %s", name, exc_info=True)


# -- a whole pass --------------------------------------------------------------------------


def _retrying(db: Database, work: Callable[[Session], Any], attempts: int = 4) -> Any:
    """Run `work` in a transaction, again when a concurrent run made it collide."""
    for attempt in range(1, attempts + 1):
        try:
            with db.scope() as s:
                return work(s)
        except IntegrityError:
            if attempt == attempts:
                raise
        except OperationalError as exc:
            if not is_deadlock(exc) or attempt == attempts:
                raise
        time.sleep(0.02 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _alert(session: Session, failing: Sequence[Outcome], switch: str) -> None:
    """Tell the admin channel about patches that started failing (if it is configured)."""
    from labkeeper.notify import service as notify

    if not failing or not notify.configured(session).admin:
        return
    sample = "; ".join(
        f"{o.snap.ingress}->{o.snap.egress} ({'add' if o.snap.desired == PRESENT else 'remove'}"
        f"{', group ' + o.snap.gid if o.snap.gid else ''}): {o.error}"
        for o in failing[:5]
    )
    more = f" and {len(failing) - 5} more" if len(failing) > 5 else ""
    notify.enqueue(
        session,
        channel=notify.ADMIN_CHANNEL,
        event="optical_failure",
        text=f"Optical switch {switch}: {len(failing)} patch(es) failed: {sample}{more}. "
        "labkeeper retries with backoff.",
        mention=False,
    )


def run(
    db: Database,
    *,
    full: bool = False,
    log_fn: LogFn = _python_log,
    switches: Iterable[str] | None = None,
    wait: float | None = None,
) -> dict[str, Any]:
    """One provisioning pass (or, with `full`, a reconcile pass) over the switches."""
    derived = _retrying(db, lambda s: derive(s, log_fn=log_fn))
    now = utcnow()
    with db.scope(write=False) as s:
        timing = Timing.read(s)
        rows = [Snap.of(r) for r in repository.live_patches(s)]
        names = {r.switch_name for r in rows if full or (r.desired != r.actual and r.due(now))}
        if full:
            names |= {r.name for r in repository.switch_devices(s)}
        if switches is not None:
            names &= set(switches)
    holder = f"{host_name()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    lease_seconds = 6 * timing.timeout + 10
    wait = (
        wait if wait is not None else (RECONCILE_WAIT_SECONDS if full else PROVISION_WAIT_SECONDS)
    )
    reports: list[SwitchReport] = []
    for name in sorted(names):
        lease = lease_name(name)
        if not acquire(db, lease, holder, seconds=lease_seconds, wait=wait):
            reports.append(SwitchReport(name, skipped="another run is working on this switch"))
            log_fn(
                "info",
                f"switch {name}: skipped, another run is working on it",
                category="provision",
            )
            continue
        try:
            reports.append(_pass(db, name, full=full, timing=timing, log_fn=log_fn))
        finally:
            release(db, lease, holder)
    return _summary(derived, reports)


def _pass(db: Database, name: str, *, full: bool, timing: Timing, log_fn: LogFn) -> SwitchReport:
    # Re-read under the lease: another run may have changed things since the first look.
    with db.scope(write=False) as s:
        rows = [Snap.of(r) for r in repository.live_patches(s, name)]
        target = switch_targets(s, [name])[name]
    now = utcnow()
    outcomes, report, credential_id = sync_switch(target, rows, full=full, now=now, timing=timing)
    if not outcomes and not full:
        return report

    def write(session: Session) -> list[Outcome]:
        failing = record(session, outcomes, now=utcnow(), timing=timing)
        _alert(session, failing, name)
        if credential_id is not None and target.device_id is not None:
            _remember_credential(session, target.device_id, credential_id)
        return failing

    _retrying(db, write)
    failed = [o for o in outcomes if o.error is not None]
    report.failed = len(failed)
    device = target.device_id
    if report.error is not None:
        log_fn(
            "error",
            f"switch {name}: {report.error}",
            category="provision",
            device_id=device,
            details={"switch": name, "error": report.error, "patches": len(failed)},
        )
    if report.added or report.removed:
        log_fn(
            "info",
            f"switch {name}: applied {report.added} and removed {report.removed} patches "
            f"in {report.seconds * 1000:.0f} ms",
            category="provision",
            device_id=device,
            details={"added": report.added, "removed": report.removed},
        )
    for o in failed[:50]:
        action = "add" if o.snap.desired == PRESENT else "remove"
        log_fn(
            "error",
            f"switch {name}: could not {action} patch {o.snap.ingress}->{o.snap.egress}"
            f"{' of group ' + o.snap.gid if o.snap.gid else ''}: {o.error}",
            category="provision",
            device_id=device,
            details={
                "cross_connect_id": o.snap.id,
                "grouped_booking_id": o.snap.gid,
                "attempt": o.snap.attempts + 1,
                "error": o.error,
            },
        )
    if len(failed) > 50:
        log_fn(
            "error", f"switch {name}: {len(failed) - 50} more patches failed", category="provision"
        )
    if full:
        for ingress, egress in report.foreign[:100]:
            log_fn(
                "warning",
                f"switch {name}: patch {ingress}->{egress} is not labkeeper's; left untouched",
                category="foreign_patch",
                device_id=device,
                details={"switch": name, "ingress": ingress, "egress": egress},
            )
        if len(report.foreign) > 100:
            log_fn(
                "warning",
                f"switch {name}: {len(report.foreign) - 100} more patches are not labkeeper's",
                category="foreign_patch",
                device_id=device,
            )
        if report.error is None:
            log_fn(
                "info",
                f"switch {name}: reconciled; {report.confirmed} in place, {report.added} "
                f"added, {report.removed} removed, {len(report.foreign)} not labkeeper's",
                category="reconcile",
                device_id=device,
            )
    return report


def _remember_credential(session: Session, device_id: int, credential_id: int) -> None:
    from labkeeper.inventory.models import Device

    session.execute(
        update(Device)
        .where(Device.id == device_id, Device.last_credential_id.is_distinct_from(credential_id))
        .values(last_credential_id=credential_id),
        execution_options=NO_SYNC,
    )


def _summary(derived: dict[str, int], reports: list[SwitchReport]) -> dict[str, Any]:
    return {
        **derived,
        "switches": len(reports),
        "added": sum(r.added for r in reports),
        "removed": sum(r.removed for r in reports),
        "failed": sum(r.failed for r in reports),
        "foreign": sum(len(r.foreign) for r in reports),
        "skipped": [r.switch for r in reports if r.skipped],
        "errors": {r.switch: r.error for r in reports if r.error},
    }


def provision(db: Database, *, log_fn: LogFn = _python_log) -> dict[str, Any]:
    """Bring every switch with due work in line with the bookings."""
    return run(db, full=False, log_fn=log_fn)


def reconcile(db: Database, *, log_fn: LogFn = _python_log) -> dict[str, Any]:
    """Compare every switch with the database and converge, ignoring backoff; report
    patches labkeeper does not own without touching them."""
    return run(db, full=True, log_fn=log_fn)
