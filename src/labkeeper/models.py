"""Import every domain's models so the one metadata knows all tables (Alembic, tests)."""

from labkeeper.admin import models as admin_models
from labkeeper.auth import models as auth_models
from labkeeper.backups import models as backups_models
from labkeeper.booking import models as booking_models
from labkeeper.core.db import Base
from labkeeper.inventory import models as inventory_models
from labkeeper.jobs import models as jobs_models
from labkeeper.topology import models as topology_models

metadata = Base.metadata

__all__ = [
    "Base",
    "admin_models",
    "auth_models",
    "backups_models",
    "booking_models",
    "inventory_models",
    "jobs_models",
    "metadata",
    "topology_models",
]
