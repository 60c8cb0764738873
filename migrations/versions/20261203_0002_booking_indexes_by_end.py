"""bookings: a device's rows indexed by end, the quota count covered

A device's conflict check, "free now" and "what comes next" ask for rows ending after a time:
(device_id, end_time, start_time) makes that a short range however long the device's history
(SQLite walked every past booking of the device through (device_id, start_time, end_time)).
(user_id, start_time, status) answers the quota count from the index alone.

The new indexes are made before the old ones go: MariaDB needs an index leading with each
foreign key's column at all times.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 16:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_bookings_device_end", ["device_id", "end_time", "start_time"], unique=False
        )
        batch_op.create_index(
            "ix_bookings_user_start_status", ["user_id", "start_time", "status"], unique=False
        )
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_index("ix_bookings_device_time")
        batch_op.drop_index("ix_bookings_user_start")


def downgrade() -> None:
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_bookings_device_time", ["device_id", "start_time", "end_time"], unique=False
        )
        batch_op.create_index("ix_bookings_user_start", ["user_id", "start_time"], unique=False)
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_index("ix_bookings_device_end")
        batch_op.drop_index("ix_bookings_user_start_status")
