"""Small databases in the two seed schemas, written from the seed documents.

`../shared/seeds/000_*.txt` (the scheduler: 13 tables, every column as documented) and
`003_*.txt` (NetRaven: each table's primary key and "important columns", its foreign keys, plus
the few extra columns NetRaven's models had that the importer reads when present: times,
schedule parameters, job run times). The DDL runs unchanged on SQLite and MariaDB.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from tests.conftest import MY_ADMIN, need_service

SCHEDULER_DDL = """
CREATE TABLE user_table (
    id INTEGER NOT NULL PRIMARY KEY,
    discord_id VARCHAR(20) UNIQUE,
    username VARCHAR(50) NOT NULL UNIQUE,
    email VARCHAR(100) UNIQUE,
    password VARCHAR(100) NOT NULL,
    is_admin BOOLEAN DEFAULT FALSE
);
CREATE TABLE device_table (
    id INTEGER NOT NULL PRIMARY KEY,
    polatis_name VARCHAR(100),
    deviceType VARCHAR(50),
    deviceName VARCHAR(50),
    ip_address VARCHAR(50),
    status VARCHAR(50),
    maintenance_start VARCHAR(100),
    maintenance_end VARCHAR(100),
    Out_Port INTEGER NOT NULL,
    In_Port INTEGER NOT NULL
);
CREATE TABLE booking_table (
    booking_id INTEGER NOT NULL PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES device_table(id),
    user_id INTEGER NOT NULL REFERENCES user_table(id),
    is_collaborator BOOLEAN NOT NULL DEFAULT FALSE,
    grouped_booking_id VARCHAR(64) NOT NULL,
    start_time DATETIME NOT NULL,
    end_time DATETIME NOT NULL,
    status VARCHAR(50),
    comment TEXT,
    collaborators JSON,
    created_at DATETIME NOT NULL
);
CREATE TABLE booking_favorite (
    id INTEGER NOT NULL PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES user_table(id),
    name VARCHAR(200) NOT NULL,
    grouped_booking_id VARCHAR(64) NOT NULL,
    device_snapshot JSON NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);
CREATE TABLE topology_table (
    id INTEGER NOT NULL PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES user_table(id),
    name VARCHAR(200) NOT NULL,
    nodes JSON NOT NULL,
    edges JSON NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);
CREATE TABLE admin_roles (
    id INTEGER NOT NULL PRIMARY KEY,
    user_id INTEGER NOT NULL UNIQUE REFERENCES user_table(id),
    role VARCHAR(50) NOT NULL DEFAULT 'Viewer',
    status VARCHAR(20) NOT NULL DEFAULT 'active',
    permissions JSON,
    approval_limits JSON,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);
CREATE TABLE admin_audit_log (
    id INTEGER NOT NULL PRIMARY KEY,
    actor_id INTEGER REFERENCES user_table(id),
    actor_role VARCHAR(50),
    action VARCHAR(100) NOT NULL,
    entity_type VARCHAR(50) NOT NULL,
    entity_id VARCHAR(64),
    payload JSON,
    outcome VARCHAR(20) NOT NULL DEFAULT 'success',
    message TEXT,
    created_at DATETIME NOT NULL
);
CREATE TABLE device_ownership (
    id INTEGER NOT NULL PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES device_table(id),
    owner_id INTEGER NOT NULL REFERENCES user_table(id),
    assigned_by INTEGER REFERENCES user_table(id),
    assigned_at DATETIME NOT NULL,
    revoked_at DATETIME
);
CREATE TABLE device_tags (
    id INTEGER NOT NULL PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES device_table(id),
    tag VARCHAR(50) NOT NULL,
    created_at DATETIME NOT NULL
);
CREATE TABLE device_health_snapshot (
    id INTEGER NOT NULL PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES device_table(id),
    status VARCHAR(50) NOT NULL,
    heartbeat_at DATETIME,
    metrics JSON,
    updated_at DATETIME NOT NULL
);
CREATE TABLE topology_review (
    id INTEGER NOT NULL PRIMARY KEY,
    topology_id INTEGER NOT NULL UNIQUE REFERENCES topology_table(id),
    status VARCHAR(20) NOT NULL DEFAULT 'submitted',
    conflict_count INTEGER NOT NULL DEFAULT 0,
    last_checked_at DATETIME,
    resolved_at DATETIME,
    resolved_by INTEGER REFERENCES user_table(id),
    notes TEXT,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);
CREATE TABLE admin_settings (
    id INTEGER NOT NULL PRIMARY KEY,
    `key` VARCHAR(100) NOT NULL UNIQUE,
    value JSON NOT NULL,
    updated_at DATETIME NOT NULL,
    updated_by INTEGER REFERENCES user_table(id)
);
CREATE TABLE admin_invitations (
    id INTEGER NOT NULL PRIMARY KEY,
    email VARCHAR(200) NOT NULL,
    handle VARCHAR(100),
    role VARCHAR(50) NOT NULL DEFAULT 'Viewer',
    invited_by INTEGER REFERENCES user_table(id),
    token VARCHAR(64) NOT NULL UNIQUE,
    expires_at DATETIME NOT NULL,
    created_at DATETIME NOT NULL,
    accepted_at DATETIME
)
"""

NETRAVEN_DDL = """
CREATE TABLE users (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    username VARCHAR(255) NOT NULL UNIQUE,
    email VARCHAR(255),
    password_hash VARCHAR(255) NOT NULL,
    is_active BOOLEAN DEFAULT TRUE,
    is_admin BOOLEAN DEFAULT FALSE,
    created_at DATETIME
);
CREATE TABLE devices (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    hostname VARCHAR(255) NOT NULL,
    ip_address VARCHAR(45) NOT NULL,
    device_type VARCHAR(50) NOT NULL,
    port INTEGER,
    owner_id VARCHAR(36) REFERENCES users(id),
    created_at DATETIME
);
CREATE TABLE backups (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    device_id VARCHAR(36) NOT NULL REFERENCES devices(id),
    filename VARCHAR(512) NOT NULL,
    version VARCHAR(20) NOT NULL,
    status VARCHAR(20),
    created_at DATETIME
);
CREATE TABLE tags (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    name VARCHAR(50) NOT NULL UNIQUE,
    color VARCHAR(7),
    description TEXT
);
CREATE TABLE tag_rules (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    tag_id VARCHAR(36) NOT NULL REFERENCES tags(id),
    rule_type VARCHAR(50) NOT NULL,
    rule_value VARCHAR(255) NOT NULL
);
CREATE TABLE device_tags (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    device_id VARCHAR(36) NOT NULL REFERENCES devices(id),
    tag_id VARCHAR(36) NOT NULL REFERENCES tags(id)
);
CREATE TABLE job_logs (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    session_id VARCHAR(36) NOT NULL,
    job_type VARCHAR(50) NOT NULL,
    status VARCHAR(20) NOT NULL,
    start_time DATETIME,
    end_time DATETIME,
    result_message TEXT,
    device_id VARCHAR(36) REFERENCES devices(id),
    created_by VARCHAR(36) REFERENCES users(id)
);
CREATE TABLE job_log_entries (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    job_log_id VARCHAR(36) NOT NULL REFERENCES job_logs(id),
    timestamp DATETIME,
    level VARCHAR(20) NOT NULL,
    message TEXT NOT NULL
);
CREATE TABLE scheduled_jobs (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    device_id VARCHAR(36) REFERENCES devices(id),
    schedule_type VARCHAR(50) NOT NULL,
    schedule_time VARCHAR(5),
    schedule_interval INTEGER,
    schedule_day VARCHAR(10),
    enabled BOOLEAN DEFAULT TRUE,
    created_by VARCHAR(36) REFERENCES users(id)
);
CREATE TABLE admin_settings (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    `key` VARCHAR(255) NOT NULL UNIQUE,
    value JSON,
    category VARCHAR(50)
);
CREATE TABLE audit_logs (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    event_type VARCHAR(50) NOT NULL,
    event_name VARCHAR(100) NOT NULL,
    actor_id VARCHAR(36),
    target_id VARCHAR(36),
    created_at DATETIME
);
CREATE TABLE credentials (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    username VARCHAR(255) NOT NULL,
    password TEXT
);
CREATE TABLE credential_tags (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    credential_id VARCHAR(36) NOT NULL REFERENCES credentials(id),
    tag_id VARCHAR(36) NOT NULL,
    priority INTEGER
)
"""


def legacy_hash(password: str) -> str:
    """The scheduler's hash: bcrypt of the SHA-256 hex digest of the password."""
    digest = hashlib.sha256(password.encode()).hexdigest().encode()
    return bcrypt.hashpw(digest, bcrypt.gensalt(rounds=4)).decode()


def netraven_secret(clear: str, passphrase: str, key_id: str = "default") -> str:
    """A password as NetRaven's credential store wrote it."""
    key = base64.urlsafe_b64encode(hashlib.sha256(passphrase.encode()).digest())
    token = Fernet(key).encrypt(clear.encode())
    return json.dumps(
        {"key_id": key_id, "encrypted_data": base64.b64encode(token).decode(), "version": "1.0"}
    )


SCHEDULER_ROWS: dict[str, list[dict[str, Any]]] = {
    "user_table": [
        dict(id=1, discord_id="111", username="alice", email="alice@lab.example",
             password=legacy_hash("alice-pass-1"), is_admin=True),
        dict(id=2, discord_id=None, username="bob", email="bob@lab.example",
             password=legacy_hash("bob-pass-12"), is_admin=False),
        dict(id=3, discord_id=None, username="carol", email=None,
             password=hashlib.sha256(b"carol-pass-1").hexdigest(), is_admin=False),
        dict(id=4, discord_id=None, username="dave", email=None, password="plaintext?",
             is_admin=False),
    ],
    "device_table": [
        dict(id=1, polatis_name="sw1", deviceType="ROADM", deviceName="roadm-1",
             ip_address="10.0.0.1", status="available", maintenance_start="2030-01-01 08:00:00",
             maintenance_end="2030-01-01T12:00:00", Out_Port=1, In_Port=2),
        dict(id=2, polatis_name="sw1", deviceType="Server", deviceName="server-1",
             ip_address="10.0.0.2", status="Maintenance", maintenance_start=None,
             maintenance_end=None, Out_Port=3, In_Port=4),
        dict(id=3, polatis_name="sw1", deviceType=None, deviceName=None, ip_address=None,
             status="weird", maintenance_start="soon", maintenance_end="later", Out_Port=3,
             In_Port=4),
    ],
    "booking_table": [
        dict(booking_id=10, device_id=1, user_id=1, is_collaborator=False,
             grouped_booking_id="g-1", start_time="2030-02-01 09:00:00",
             end_time="2030-02-01 17:00:00", status="approved", comment="pair",
             collaborators="[2]", created_at="2029-12-01 10:00:00"),
        dict(booking_id=11, device_id=2, user_id=1, is_collaborator=False,
             grouped_booking_id="g-1", start_time="2030-02-01 09:00:00",
             end_time="2030-02-01 17:00:00", status="approved", comment="pair",
             collaborators="[2]", created_at="2029-12-01 10:00:00"),
        dict(booking_id=12, device_id=1, user_id=2, is_collaborator=True,
             grouped_booking_id="g-1", start_time="2030-02-01 09:00:00",
             end_time="2030-02-01 17:00:00", status="approved", comment="pair",
             collaborators="[]", created_at="2029-12-01 10:00:00"),
        dict(booking_id=13, device_id=1, user_id=2, is_collaborator=False,
             grouped_booking_id="g-2", start_time="2030-02-01 12:00:00",
             end_time="2030-02-01 14:00:00", status="pending", comment=None,
             collaborators=None, created_at="2029-12-02 10:00:00"),
        dict(booking_id=14, device_id=2, user_id=3, is_collaborator=False,
             grouped_booking_id="g-3", start_time="2024-01-01 09:00:00",
             end_time="2024-01-01 10:00:00", status="completed", comment="old",
             collaborators="[1, 99]", created_at="2023-12-01 10:00:00"),
        dict(booking_id=15, device_id=2, user_id=3, is_collaborator=True,
             grouped_booking_id="g-4", start_time="2030-03-01 09:00:00",
             end_time="2030-03-01 10:00:00", status="approved", comment=None,
             collaborators=None, created_at="2029-12-03 10:00:00"),
        dict(booking_id=16, device_id=2, user_id=3, is_collaborator=False,
             grouped_booking_id="g-5", start_time="2030-03-02 10:00:00",
             end_time="2030-03-02 09:00:00", status="approved", comment=None,
             collaborators=None, created_at="2029-12-03 10:00:00"),
        # Inside roadm-1's maintenance (2030-01-01 08:00 to 12:00).
        dict(booking_id=17, device_id=1, user_id=3, is_collaborator=False,
             grouped_booking_id="g-6", start_time="2030-01-01 11:00:00",
             end_time="2030-01-01 13:00:00", status="approved", comment=None,
             collaborators=None, created_at="2029-12-04 10:00:00"),
    ],
    "booking_favorite": [
        dict(id=1, user_id=1, name="my pair", grouped_booking_id="g-1",
             device_snapshot='[{"id": 1}, {"id": 2}]', created_at="2029-12-01 11:00:00",
             updated_at="2029-12-05 11:00:00"),
    ],
    "topology_table": [
        dict(id=1, user_id=1, name="ring", nodes='[{"id": "n1", "device_id": 1, "kind": "roadm"}]',
             edges='[{"id": "e1", "source": "n1", "target": "n1"}]',
             created_at="2029-11-01 10:00:00", updated_at="2029-11-02 10:00:00"),
        dict(id=2, user_id=1, name="broken", nodes='{"not": "a list"}', edges="[]",
             created_at="2029-11-01 10:00:00", updated_at="2029-11-02 10:00:00"),
    ],
    "admin_roles": [
        dict(id=1, user_id=2, role="Approver", status="active",
             permissions='{"bookings:export": true}', approval_limits='{"max_hours": 8}',
             created_at="2029-01-01 00:00:00", updated_at="2029-01-02 00:00:00"),
    ],
    "admin_audit_log": [
        dict(id=1, actor_id=1, actor_role="Admin", action="approve_booking",
             entity_type="booking", entity_id="10", payload='{"note": "ok"}', outcome="success",
             message="approved", created_at="2029-12-01 12:00:00"),
        dict(id=2, actor_id=None, actor_role=None, action="login", entity_type="user",
             entity_id=None, payload=None, outcome="failure", message=None,
             created_at="2029-12-01 12:30:00.250000"),
    ],
    "device_ownership": [
        dict(id=1, device_id=1, owner_id=2, assigned_by=1, assigned_at="2029-05-01 00:00:00",
             revoked_at=None),
    ],
    "device_tags": [
        dict(id=1, device_id=1, tag="optical", created_at="2029-05-01 00:00:00"),
        dict(id=2, device_id=2, tag="compute", created_at="2029-05-01 00:00:00"),
        dict(id=3, device_id=99, tag="ghost", created_at="2029-05-01 00:00:00"),
    ],
    "device_health_snapshot": [
        dict(id=1, device_id=1, status="up", heartbeat_at="2029-12-01 00:00:00",
             metrics='{"latency_ms": 1.5}', updated_at="2029-12-01 00:00:05"),
    ],
    "topology_review": [
        dict(id=1, topology_id=1, status="approved", conflict_count=0,
             last_checked_at="2029-11-03 00:00:00", resolved_at="2029-11-03 00:00:00",
             resolved_by=1, notes="fine", created_at="2029-11-02 00:00:00",
             updated_at="2029-11-03 00:00:00"),
    ],
    "admin_settings": [
        dict(id=1, key="general.lab_name", value='"Open Lab"', updated_at="2029-01-01 00:00:00",
             updated_by=1),
        dict(id=2, key="booking.max_duration_hours", value="72",
             updated_at="2029-01-01 00:00:00", updated_by=None),
        dict(id=3, key="ui.theme", value='"dark"', updated_at="2029-01-01 00:00:00",
             updated_by=None),
    ],
    "admin_invitations": [
        dict(id=1, email="erin@lab.example", handle="erin", role="Viewer", invited_by=1,
             token="invite-token-1", expires_at="2030-06-01 00:00:00",
             created_at="2029-12-01 00:00:00", accepted_at=None),
    ],
}  # fmt: skip

PASSPHRASE = "netraven-passphrase"


def netraven_rows() -> dict[str, list[dict[str, Any]]]:
    """Rows of the NetRaven seed (credentials encrypted as NetRaven did)."""
    return {
        "users": [
            dict(id="u-1", username="nina", email="nina@lab.example",
                 password_hash=bcrypt.hashpw(b"nina-pass-12", bcrypt.gensalt(rounds=4)).decode(),
                 is_active=True, is_admin=True, created_at="2028-01-01 00:00:00"),
            dict(id="u-2", username="oscar", email=None, password_hash=legacy_hash("oscar-pw-1"),
                 is_active=True, is_admin=False, created_at="2028-01-02 00:00:00"),
        ],
        "tags": [
            dict(id="t-1", name="core", color="#ff0000", description="core routers"),
            dict(id="t-2", name="edge", color="red", description=None),
        ],
        "tag_rules": [
            dict(id="r-1", tag_id="t-2", rule_type="hostname_pattern", rule_value="^edge"),
            dict(id="r-2", tag_id="t-1", rule_type="phase_of_moon", rule_value="full"),
        ],
        "devices": [
            dict(id="d-1", hostname="core-sw1", ip_address="10.1.0.1", device_type="cisco_ios",
                 port=22, owner_id="u-1", created_at="2028-02-01 00:00:00"),
            dict(id="d-2", hostname="edge-r1", ip_address="10.1.0.2",
                 device_type="juniper_junos", port=2222, owner_id=None,
                 created_at="2028-02-01 00:00:00"),
        ],
        "device_tags": [dict(id="dt-1", device_id="d-1", tag_id="t-1")],
        "credentials": [
            dict(id="c-1", name="lab-admin", username="admin",
                 password=netraven_secret("s3cret-admin", PASSPHRASE)),
            dict(id="c-2", name="legacy", username="ops", password="plain-pw"),
            dict(id="c-3", name="lost", username="x",
                 password=netraven_secret("unknowable", "another-key")),
        ],
        "credential_tags": [
            dict(id="ct-1", credential_id="c-1", tag_id="t-1", priority=10),
            dict(id="ct-2", credential_id="c-2", tag_id="t-deleted", priority=20),
        ],
        "backups": [
            dict(id="b-1", device_id="d-1", filename="core-sw1_1.cfg", version="1",
                 status="complete", created_at="2028-03-01 00:00:00"),
            dict(id="b-2", device_id="d-1", filename="core-sw1_2.cfg", version="2",
                 status="complete", created_at="2028-03-02 00:00:00"),
            dict(id="b-3", device_id="d-2", filename="gone.cfg", version="1",
                 status="complete", created_at="2028-03-02 00:00:00"),
        ],
        "scheduled_jobs": [
            dict(id="s-1", name="nightly", device_id="d-1", schedule_type="daily",
                 schedule_time="02:30", schedule_interval=None, schedule_day=None,
                 enabled=True, created_by="u-1"),
            dict(id="s-2", name="hourly", device_id="d-2", schedule_type="interval",
                 schedule_time=None, schedule_interval=60, schedule_day=None, enabled=False,
                 created_by="u-1"),
            dict(id="s-3", name="nightly", device_id="d-2", schedule_type="weekly",
                 schedule_time="03:00", schedule_interval=None, schedule_day="sunday",
                 enabled=True, created_by="u-2"),
            dict(id="s-4", name="odd", device_id="d-2", schedule_type="fortnightly",
                 schedule_time=None, schedule_interval=None, schedule_day=None, enabled=True,
                 created_by="u-2"),
        ],
        "job_logs": [
            dict(id="j-1", session_id="sess-1", job_type="backup", status="completed",
                 start_time="2028-03-01 00:00:00", end_time="2028-03-01 00:00:09",
                 result_message="1 device backed up", device_id="d-1", created_by="u-1"),
            dict(id="j-2", session_id="sess-2", job_type="backup", status="running",
                 start_time="2028-03-02 00:00:00", end_time=None, result_message=None,
                 device_id="d-2", created_by="u-2"),
        ],
        "job_log_entries": [
            dict(id="e-1", job_log_id="j-1", timestamp="2028-03-01 00:00:01", level="INFO",
                 message="connected to core-sw1"),
            dict(id="e-2", job_log_id="j-1", timestamp="2028-03-01 00:00:08", level="INFO",
                 message="configuration saved"),
            dict(id="e-3", job_log_id="j-2", timestamp="2028-03-02 00:00:05", level="ERROR",
                 message="timeout"),
        ],
        "admin_settings": [
            dict(id="a-1", key="security.lockout_threshold", value="7", category="security"),
            dict(id="a-2", key="backup.retention_days", value='"forever"', category="backup"),
        ],
        "audit_logs": [
            dict(id="au-1", event_type="auth", event_name="login", actor_id="u-1",
                 target_id=None, created_at="2028-03-01 08:00:00"),
            dict(id="au-2", event_type="device", event_name="create", actor_id="u-9",
                 target_id="d-2", created_at="2028-03-01 09:00:00"),
        ],
    }  # fmt: skip


BACKUP_FILES = {
    "core-sw1_1.cfg": "hostname core-sw1\ninterface Gi0/1\n description uplink\n",
    "core-sw1_2.cfg": "hostname core-sw1\ninterface Gi0/1\n description core uplink\n",
}


def _fill(url: str, ddl: str, rows: dict[str, list[dict[str, Any]]]) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "mysql":
                # The scheduler's SQLite never enforced foreign keys: dangling rows happen.
                conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
            for statement in ddl.split(";"):
                conn.execute(text(statement))
            for table, items in rows.items():
                for row in items:
                    columns = ", ".join(f"`{c}`" for c in row)
                    values = ", ".join(f":{c}" for c in row)
                    conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({values})"), row)
    finally:
        engine.dispose()


@contextlib.contextmanager
def seed_database(
    kind: str, backend: str, tmp_path: Path, rows: dict[str, list[dict[str, Any]]] | None = None
) -> Iterator[str]:
    """A scratch database in a seed schema ('scheduler' or 'netraven'); yields its URL."""
    ddl = SCHEDULER_DDL if kind == "scheduler" else NETRAVEN_DDL
    data = rows if rows is not None else SCHEDULER_ROWS if kind == "scheduler" else netraven_rows()
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / f'{kind}-{uuid.uuid4().hex[:8]}.db'}"
        _fill(url, ddl, data)
        yield url
        return
    need_service("mariadb")
    name = f"lk_seed_{kind}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(MY_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    url = MY_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        _fill(url, ddl, data)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()
