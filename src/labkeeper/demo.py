"""The demo lab: a small testbed that points at the built-in simulators, and the first run.

`load(session, ...)` creates, through the domain services, a lab a new user can try every
feature on: two sites, device types, 24 devices (ten of them simulated SSH devices on
127.0.0.1, optical gear wired to a simulated Polatis switch), tags and a tag rule, a credential
(admin/admin, as the simulators expect) matched by tag, a nightly backup job, demo accounts
(unless accounts exist already), bookings in the past, now, later and waiting for approval, a
maintenance window and a saved topology. It is idempotent: whatever exists already (by name) is
left alone, so running it twice adds nothing the second time.

`DemoSimulators` runs the simulated devices and switch on the fixed ports of the settings, in a
background thread of the serving process. `first_run(db, settings)` is what `labkeeper serve
--demo` (and `make run`) does at start-up: start the simulators, load the demo lab when the
database has no users, queue a first backup run, and print where to sign in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labkeeper.auth.deps import Principal
from labkeeper.auth.permissions import ROLE_PERMISSIONS
from labkeeper.core.audit import Actor
from labkeeper.core.errors import AppError
from labkeeper.core.time import utcnow

if TYPE_CHECKING:
    from labkeeper.config import Settings
    from labkeeper.core.db import Database
    from labkeeper.simulators.devices import DeviceFarm
    from labkeeper.simulators.polatis import PolatisSimulator

log = logging.getLogger(__name__)

DEMO_ACTOR = Actor(user_id=None, username="demo", role="system")
LOOPBACK = "127.0.0.1"
# Every demo account has this password; the accounts are for trying labkeeper out.
DEMO_PASSWORD = "labkeeper-demo"  # noqa: S105
SWITCH_NAME = "polatis-01"
SWITCH_PORTS = 64
MANAGED_TAG = "ssh-managed"
SWITCH_TAG = "optical-switch"
CREDENTIAL_NAME = "Lab default (admin)"
BACKUP_JOB_NAME = "Nightly configuration backup"
TOPOLOGY_NAME = "400G ZR+ ring test"
MAINTENANCE_REASON = "Demo: firmware upgrade of the aggregation switch"
COMMENT_PREFIX = "Demo: "

# (username, role, full name)
USERS = (
    ("admin", "admin", "Ada Admin"),
    ("approver", "approver", "Paul Approver"),
    ("alice", "member", "Alice Researcher"),
    ("bob", "member", "Bob Student"),
    ("viewer", "viewer", "Vera Viewer"),
)

SITES = (
    ("Main lab", "Building A, room 2.14: racks A1-A4", "Building A, room 2.14"),
    ("Optical annex", "Fibre room next to the main lab: ROADMs, transceivers, the switch", None),
)

# (name, category, platform, schedulable, has switch ports, description)
DEVICE_TYPES = (
    ("Router", "infra", None, True, False, "IP/MPLS routers"),
    ("Switch", "infra", None, True, False, "Ethernet switches"),
    ("Compute", "compute", "linux", True, False, "Servers for traffic generation and tools"),
    ("ROADM", "optical", None, True, True, "Reconfigurable optical add-drop multiplexers"),
    ("Transceiver", "optical", None, True, True, "Coherent pluggables on test boards"),
    ("Optical switch", "optical", "polatis", False, False, "Polatis all-optical switch"),
)

# The simulated devices, in the order of the simulator's `mixed` platforms: device i listens on
# demo_ssh_port_base + i and behaves like PLATFORMS[i % 7].
# (name, type, platform, model, site, rack, tags)
SIMULATED = (
    ("core-rtr-01", "Router", "cisco_ios", "Cisco ISR 4451", "Main lab", "A1", ("core",)),
    ("dc-spine-01", "Switch", "cisco_nxos", "Cisco Nexus 93180YC-FX", "Main lab", "A2", ("dc",)),
    ("pe-rtr-01", "Router", "cisco_xr", "Cisco ASR 9901", "Main lab", "A1", ("core",)),
    ("tor-sw-01", "Switch", "arista_eos", "Arista 7050SX3", "Main lab", "A3", ("dc",)),
    ("edge-rtr-01", "Router", "juniper_junos", "Juniper MX204", "Main lab", "A1", ("core",)),
    ("agg-sw-01", "Switch", "huawei_vrp", "Huawei CE6881", "Main lab", "A2", ("dc",)),
    ("compute-01", "Compute", "linux", "Dell PowerEdge R750", "Main lab", "A4", ("compute",)),
    ("core-rtr-02", "Router", "cisco_ios", "Cisco ISR 4451", "Main lab", "A1", ("core",)),
    ("dc-leaf-01", "Switch", "cisco_nxos", "Cisco Nexus 93180YC-FX", "Main lab", "A3", ("dc",)),
    ("pe-rtr-02", "Router", "cisco_xr", "Cisco ASR 9901", "Main lab", "A1", ("core",)),
)

# Optical gear plugged into the switch: device k uses input port k and output port 32 + k.
# (name, type, model, status)
OPTICAL = (
    ("roadm-01", "ROADM", "Lumentum ROADM-20", "available"),
    ("roadm-02", "ROADM", "Lumentum ROADM-20", "available"),
    ("roadm-03", "ROADM", "Ciena 6500 CMD", "available"),
    ("roadm-04", "ROADM", "Ciena 6500 CMD", "available"),
    ("trx-01", "Transceiver", "400G ZR+ QSFP-DD", "available"),
    ("trx-02", "Transceiver", "400G ZR+ QSFP-DD", "available"),
    ("trx-03", "Transceiver", "400G ZR QSFP-DD", "available"),
    ("trx-04", "Transceiver", "400G ZR QSFP-DD", "available"),
    ("trx-05", "Transceiver", "100G CFP2-DCO", "available"),
    ("trx-06", "Transceiver", "100G CFP2-DCO", "maintenance"),
)

# Servers without a management address in the lab's inventory yet.
# (name, model, notes)
OTHER = (
    ("gpu-01", "Supermicro SYS-420GP-TNR", "4x A100, for traffic analysis"),
    ("gpu-02", "Supermicro SYS-420GP-TNR", "4x A100, for traffic analysis"),
    ("traffic-gen-01", "Dell PowerEdge R650", "TRex traffic generator"),
)

TAGS = (
    ("core", "#1d4ed8", "Core and provider-edge routers"),
    ("dc", "#0f766e", "Data-centre fabric"),
    ("compute", "#7c3aed", "Servers"),
    ("optical", "#b45309", "Optical line system and pluggables"),
    (MANAGED_TAG, "#15803d", "Reached over SSH for configuration backups (set by a rule)"),
    (SWITCH_TAG, "#be123c", "Optical switches driven over NETCONF"),
)

# Reached over SSH on the loopback, and not the optical switch (that one speaks NETCONF).
MANAGED_RULE = {
    "op": "and",
    "rules": [
        {"field": "mgmt_address", "operator": "in_subnet", "value": "127.0.0.0/8"},
        {"field": "platform", "operator": "equals", "value": "polatis", "negate": True},
    ],
}


@dataclass
class Report:
    """What one `load` created (counts by kind) and what it left alone, with why."""

    created: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    users_created: bool = False

    def add(self, kind: str, n: int = 1) -> None:
        self.created[kind] = self.created.get(kind, 0) + n

    @property
    def changed(self) -> bool:
        return any(self.created.values())

    def summary(self) -> str:
        if not self.changed:
            return "the demo lab is loaded already: nothing to add"
        return "added " + ", ".join(f"{n} {kind}" for kind, n in self.created.items() if n)


def principal_of(user_id: int, username: str, role: str) -> Principal:
    """A service-side principal for a demo account (as if it had signed in)."""
    return Principal(
        user_id=user_id, username=username, role=role, permissions=ROLE_PERMISSIONS[role]
    )


# -- loading -----------------------------------------------------------------------------------


def _inventory(
    session: Session, report: Report, *, ssh_ports: Sequence[int], polatis_port: int
) -> None:
    from labkeeper.inventory import repository as inv
    from labkeeper.inventory import service as inventory
    from labkeeper.inventory.schemas import (
        DeviceCreate,
        DeviceTypeCreate,
        SiteCreate,
        TagCreate,
        TagRuleCreate,
    )

    for name, description, address in SITES:
        if inv.site_by_name(session, name) is None:
            site_data = SiteCreate(name=name, description=description, address=address)
            inventory.create_site(session, data=site_data, actor=DEMO_ACTOR)
            report.add("sites")
    for name, color, description in TAGS:
        if inv.tag_by_name(session, name) is None:
            tag = TagCreate(name=name, color=color, description=description)
            inventory.create_tag(session, data=tag, actor=DEMO_ACTOR)
            report.add("tags")
    for name, category, platform, schedulable, ports, description in DEVICE_TYPES:
        if inv.device_type_by_name(session, name) is None:
            type_data = DeviceTypeCreate(
                name=name,
                category=category,
                platform=platform,
                is_schedulable=schedulable,
                has_ports=ports,
                description=description,
            )
            inventory.create_device_type(session, data=type_data, actor=DEMO_ACTOR)
            report.add("device types")
    # The rule first, so every device it matches is tagged as it is created.
    if not _rule_exists(session, MANAGED_TAG):
        rule = TagRuleCreate(tag=MANAGED_TAG, name="SSH devices on the loopback", rule=MANAGED_RULE)
        inventory.create_rule(session, data=rule, actor=DEMO_ACTOR)
        report.add("tag rules")

    devices: list[DeviceCreate] = []
    for i, (name, kind, platform, model, site, rack, tags) in enumerate(SIMULATED):
        devices.append(
            DeviceCreate(
                name=name,
                device_type=kind,
                platform=platform,
                mgmt_address=LOOPBACK,
                ssh_port=ssh_ports[i],
                hostname=name,
                model=model,
                serial=f"DEMO{1000 + i}",
                site=site,
                rack=rack,
                tags=list(tags),
                notes="Simulated by labkeeper (log in as admin/admin).",
            )
        )
    devices.append(
        DeviceCreate(
            name=SWITCH_NAME,
            device_type="Optical switch",
            platform="polatis",
            mgmt_address=LOOPBACK,
            ssh_port=polatis_port,
            model="Polatis Series 7000 (64 ports)",
            serial="DEMO2000",
            site="Optical annex",
            rack="O1",
            tags=[SWITCH_TAG, "optical"],
            notes="Simulated Polatis switch (NETCONF over SSH); patches follow active bookings.",
        )
    )
    for k, (name, kind, model, status) in enumerate(OPTICAL, start=1):
        devices.append(
            DeviceCreate(
                name=name,
                device_type=kind,
                model=model,
                serial=f"DEMO{3000 + k}",
                site="Optical annex",
                rack="O2" if kind == "ROADM" else "O3",
                switch_name=SWITCH_NAME,
                switch_in_port=k,
                switch_out_port=SWITCH_PORTS // 2 + k,
                tags=["optical"],
                status=status,
            )
        )
    for name, model, notes in OTHER:
        devices.append(
            DeviceCreate(
                name=name,
                device_type="Compute",
                model=model,
                site="Main lab",
                rack="A4",
                tags=["compute"],
                notes=notes,
            )
        )
    for data in devices:
        if inv.device_by_name(session, data.name) is None:
            inventory.create_device(session, data=data, actor=DEMO_ACTOR)
            report.add("devices")


def _rule_exists(session: Session, tag_name: str) -> bool:
    from labkeeper.inventory.models import Tag, TagRule

    stmt = select(func.count()).select_from(TagRule).join(Tag, Tag.id == TagRule.tag_id)
    return bool(session.scalar(stmt.where(Tag.name == tag_name)))


def _configuration_keeping(session: Session, report: Report) -> None:
    from labkeeper.backups import repository as backups_repo
    from labkeeper.backups import service as backups
    from labkeeper.backups.schemas import CredentialCreate, ScheduledJobCreate

    if backups_repo.credential_by_name(session, CREDENTIAL_NAME) is None:
        data = CredentialCreate(
            name=CREDENTIAL_NAME,
            username="admin",
            password="admin",  # noqa: S106 (the simulators' login)
            description="The simulated devices' and switch's login",
            tags=[{"tag": MANAGED_TAG, "priority": 100}, {"tag": SWITCH_TAG, "priority": 100}],
        )
        backups.create_credential(session, data=data, actor=DEMO_ACTOR)
        report.add("credentials")
    if backups_repo.scheduled_job_by_name(session, BACKUP_JOB_NAME) is None:
        job = ScheduledJobCreate(
            name=BACKUP_JOB_NAME,
            job_type="backup",
            target_type="tags",
            tags=[MANAGED_TAG],
            schedule_type="daily",
            time_of_day="02:00",
        )
        backups.create_scheduled_job(session, data=job, actor=DEMO_ACTOR)
        report.add("scheduled jobs")


def _users(session: Session, report: Report) -> dict[str, Principal]:
    """The demo accounts by username (created when nobody has an account yet)."""
    from labkeeper.auth import service as auth
    from labkeeper.auth.models import RoleAssignment, User
    from labkeeper.auth.schemas import UserCreate

    if session.scalar(select(func.count()).select_from(User)) == 0:
        for username, role, full_name in USERS:
            auth.create_user(
                session,
                data=UserCreate(
                    username=username,
                    password=DEMO_PASSWORD,
                    role=role,
                    full_name=full_name,
                    email=f"{username}@lab.example",
                ),
                actor=DEMO_ACTOR,
                check_grant=False,
            )
        report.add("users", len(USERS))
        report.users_created = True
    rows = session.execute(
        select(User.id, User.username, RoleAssignment.role)
        .join(RoleAssignment, RoleAssignment.user_id == User.id)
        .where(User.username.in_([u for u, _, _ in USERS]))
    )
    found = {r.username: principal_of(r.id, r.username, r.role) for r in rows}
    wanted = {u: role for u, role, _ in USERS}
    # Only accounts the demo made (same names and roles) book things in the demo.
    return {u: p for u, p in found.items() if p.role == wanted[u]}


def _device_ids(session: Session, names: list[str]) -> dict[str, int]:
    from labkeeper.inventory.models import Device

    rows = session.execute(select(Device.id, Device.name).where(Device.name.in_(names)))
    return {r.name: r.id for r in rows}


def _scheduling(session: Session, report: Report, people: dict[str, Principal]) -> None:
    from labkeeper.booking import maintenance
    from labkeeper.booking import service as bookings
    from labkeeper.booking.models import Booking
    from labkeeper.booking.schemas import BookingCreate, BookingItem, MaintenanceCreate
    from labkeeper.inventory.models import MaintenanceWindow
    from labkeeper.topology import service as topologies
    from labkeeper.topology.models import Topology
    from labkeeper.topology.schemas import Edge, Node, TopologyBook, TopologyCreate

    if not {"alice", "bob", "admin"} <= people.keys():
        report.notes.append(
            "bookings, maintenance and the topology need the demo accounts, and accounts "
            "existed already: left out"
        )
        return
    alice, bob, admin = people["alice"], people["bob"], people["admin"]
    ids = _device_ids(
        session, [d[0] for d in SIMULATED] + [d[0] for d in OPTICAL] + [d[0] for d in OTHER]
    )
    now = utcnow().replace(second=0, microsecond=0)
    hour = now.replace(minute=0)

    topology = session.scalar(select(Topology).where(Topology.name == TOPOLOGY_NAME))
    if topology is None:
        chain = ["trx-01", "roadm-01", "roadm-02", "trx-02"]
        data = TopologyCreate(
            name=TOPOLOGY_NAME,
            description="Two 400G ZR+ pluggables over two ROADMs, patched by the optical switch.",
            nodes=[
                Node(id=name, device_id=ids[name], x=160.0 * i, y=80.0 * (i % 2))
                for i, name in enumerate(chain)
            ],
            edges=[Edge(id=f"{a}-{b}", source=a, target=b) for a, b in pairwise(chain)],
        )
        topology = topologies.create_topology(session, data=data, actor=alice)
        report.add("topologies")

    demo_bookings = session.scalar(
        select(func.count()).select_from(Booking).where(Booking.comment.like(COMMENT_PREFIX + "%"))
    )
    if not demo_bookings:
        # A finished booking: history cannot be booked through the rules (they refuse the past),
        # so this one row is written as the lifecycle would have left it.
        past = now - timedelta(days=2)
        gid = str(uuid.uuid4())
        for name in ("core-rtr-01", "pe-rtr-01"):
            session.add(
                Booking(
                    grouped_booking_id=gid,
                    device_id=ids[name],
                    user_id=bob.user_id,
                    start_time=past,
                    end_time=past + timedelta(hours=6),
                    status="COMPLETED",
                    comment=COMMENT_PREFIX + "BGP convergence measurements",
                )
            )
        report.add("bookings")
        # Active now: the topology, so the switch patches it (when the server runs).
        topologies.book(
            session,
            topology_id=topology.id,
            data=TopologyBook(
                start=now,
                end=hour + timedelta(hours=5),
                comment=COMMENT_PREFIX + "400G ZR+ BER test over two ROADMs",
                collaborators=["bob"],
            ),
            actor=alice,
        )
        bookings.create(
            session,
            data=BookingCreate(
                items=[
                    BookingItem(device_id=ids[n], start=now, end=hour + timedelta(hours=3))
                    for n in ("tor-sw-01", "dc-spine-01", "compute-01")
                ],
                comment=COMMENT_PREFIX + "EVPN fabric bring-up",
            ),
            actor=bob,
        )
        bookings.start_due(session, now=now + timedelta(seconds=1))
        report.add("bookings", 2)
        # Upcoming, confirmed.
        tomorrow = hour + timedelta(days=1)
        bookings.create(
            session,
            data=BookingCreate(
                items=[
                    BookingItem(device_id=ids[n], start=tomorrow, end=tomorrow + timedelta(hours=8))
                    for n in ("edge-rtr-01", "core-rtr-02")
                ],
                comment=COMMENT_PREFIX + "Segment routing migration rehearsal",
                collaborators=["alice"],
            ),
            actor=bob,
        )
        # Upcoming and too large to be confirmed without an approver.
        later = hour + timedelta(days=3)
        bookings.create(
            session,
            data=BookingCreate(
                items=[
                    BookingItem(device_id=ids[n], start=later, end=later + timedelta(hours=48))
                    for n in ("pe-rtr-01", "pe-rtr-02", "roadm-03", "roadm-04", "trx-03", "trx-04")
                ],
                comment=COMMENT_PREFIX + "48-hour soak test of the metro ring",
            ),
            actor=alice,
        )
        report.add("bookings", 2)

    exists = session.scalar(
        select(func.count())
        .select_from(MaintenanceWindow)
        .where(MaintenanceWindow.reason == MAINTENANCE_REASON)
    )
    if not exists:
        start = hour + timedelta(days=2, hours=2)
        maintenance.create(
            session,
            data=MaintenanceCreate(
                device_ids=[ids["agg-sw-01"]],
                start=start,
                end=start + timedelta(hours=4),
                reason=MAINTENANCE_REASON,
            ),
            actor=admin,
        )
        report.add("maintenance windows")


def load(
    session: Session,
    *,
    ssh_port_base: int = 2201,
    polatis_port: int = 8830,
    ssh_ports: Sequence[int] | None = None,
) -> Report:
    """Load the demo lab in the caller's transaction; whatever exists already is left alone.

    Simulated device i is reached on `ssh_ports[i]` when given, else on ssh_port_base + i.
    """
    if ssh_ports is None:
        ssh_ports = [ssh_port_base + i for i in range(len(SIMULATED))]
    if len(ssh_ports) != len(SIMULATED):
        raise ValueError(f"the demo has {len(SIMULATED)} simulated devices")
    from labkeeper.jobs import registry

    registry.load_all()  # bookings and topologies queue work (patches, notices)
    report = Report()
    _inventory(session, report, ssh_ports=ssh_ports, polatis_port=polatis_port)
    _configuration_keeping(session, report)
    people = _users(session, report)
    _scheduling(session, report, people)
    return report


def queue_backup(session: Session) -> int | None:
    """Queue a backup run of the demo's SSH devices; the run's id (None without the tag)."""
    from labkeeper.backups import service as backups
    from labkeeper.inventory import repository as inv

    tag = inv.tag_by_name(session, MANAGED_TAG)
    if tag is None:
        return None
    return backups.start_backup(session, actor=DEMO_ACTOR, tag_ids=[tag.id]).id


def accounts_text() -> str:
    """The demo accounts, one a line, for the terminal."""
    lines = [f"  {u:<9} {role:<9} password: {DEMO_PASSWORD}" for u, role, _ in USERS]
    return "\n".join(lines)


# -- the simulators ----------------------------------------------------------------------------


class DemoSimulators:
    """The demo's simulated SSH devices and Polatis switch, on an event loop in a thread.

    Ports come from the settings (0 picks free ports: the tests). A port that is taken is
    reported and the simulators that could start keep running.
    """

    def __init__(self, *, ssh_port_base: int = 2201, polatis_port: int = 8830) -> None:
        self.ssh_port_base = ssh_port_base
        self.polatis_port = polatis_port
        self.farm: DeviceFarm | None = None
        self.switch: PolatisSimulator | None = None
        self.problems: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def device_ports(self) -> list[int]:
        return self.farm.ports if self.farm is not None else []

    def _call(self, coro: Any, timeout: float = 30.0) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> DemoSimulators:
        """Start both simulators; returns self."""
        from labkeeper.simulators.devices import DeviceFarm
        from labkeeper.simulators.polatis import PolatisSimulator

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="demo-simulators", daemon=True
        )
        self._thread.start()
        farm = DeviceFarm(len(SIMULATED), "mixed", port_base=self.ssh_port_base)
        try:
            self._call(farm.start())
        except OSError as exc:
            self.problems.append(
                f"simulated devices on 127.0.0.1:{self.ssh_port_base}.. did not start: {exc}"
            )
        else:
            self.farm = farm

            async def rename() -> None:
                for i, row in enumerate(SIMULATED):
                    farm.set_hostname(i, row[0])

            self._call(rename())
        switch = PolatisSimulator(port=self.polatis_port, ports=SWITCH_PORTS)
        try:
            self._call(switch.start())
        except OSError as exc:
            self.problems.append(
                f"simulated switch on 127.0.0.1:{self.polatis_port} did not start: {exc}"
            )
        else:
            self.switch = switch
        for problem in self.problems:
            log.warning("%s", problem)
        return self

    def stop(self) -> None:
        """Stop the simulators and their thread (idempotent)."""
        if self._loop is None:
            return
        for sim in (self.farm, self.switch):
            if sim is not None:
                with contextlib.suppress(Exception):
                    self._call(sim.stop(), timeout=10)
        self.farm = self.switch = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
        self._loop = None


# -- the first run -----------------------------------------------------------------------------


def _has_users(session: Session) -> bool:
    from labkeeper.auth.models import User

    return bool(session.scalar(select(func.count()).select_from(User)))


def _has_demo_accounts(session: Session) -> bool:
    from labkeeper.auth.models import User

    names = [u for u, _, _ in USERS]
    return bool(
        session.scalar(select(func.count()).select_from(User).where(User.username.in_(names)))
    )


def first_run(db: Database, settings: Settings, *, echo: Any = print) -> DemoSimulators:
    """Start the simulators; on a database without users, load the demo and queue a backup.

    The database setting `general.load_demo_on_first_run` (on by default) turns loading off;
    the simulators run anyway, so a demo loaded earlier keeps working.
    """
    from labkeeper.admin import service as admin_settings

    # Both ends of every simulated session log each step at INFO: too much for a terminal.
    for noisy in ("asyncssh", "ncclient"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger(noisy).level))
    sims = DemoSimulators(
        ssh_port_base=settings.demo_ssh_port_base, polatis_port=settings.demo_polatis_port
    ).start()
    ports = sims.device_ports
    if ports:
        echo(
            f"demo: {len(ports)} simulated SSH devices on 127.0.0.1:{ports[0]}..{ports[-1]}, "
            f"a Polatis switch on 127.0.0.1:{sims.polatis_port} (login admin/admin)"
        )
    for problem in sims.problems:
        echo(f"demo: {problem}")
    loaded = demo_accounts = False
    try:
        with db.scope() as session:
            demo_accounts = _has_demo_accounts(session)
            wanted = not _has_users(session) and bool(
                admin_settings.get(session, "general.load_demo_on_first_run")
            )
            if wanted:
                # Ports as bound (equal to the settings unless those say 0).
                switch_port = sims.switch.port if sims.switch else settings.demo_polatis_port
                report = load(
                    session,
                    ssh_port_base=settings.demo_ssh_port_base,
                    ssh_ports=ports or None,
                    polatis_port=switch_port,
                )
                queue_backup(session)
                loaded = True
                echo(f"demo: the database was empty; demo lab loaded ({report.summary()})")
    except AppError as exc:
        echo(f"demo: the demo lab could not be loaded: {exc.message}")
    url = f"http://{settings.host}:{settings.port}"
    if loaded:
        echo(f"demo: sign in at {url} with one of these accounts:\n{accounts_text()}")
    elif demo_accounts:
        echo(f"demo: labkeeper at {url}; the demo accounts (if unchanged):\n{accounts_text()}")
    else:
        echo(f"demo: labkeeper at {url}")
    return sims
