"""Process configuration: one Settings class read from the environment (prefix LABKEEPER_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A fixed development key so `make run` works out of the box; production refuses it.
DEV_SECRET_KEY = "labkeeper-development-key-do-not-use-in-production"  # noqa: S105


class Settings(BaseSettings):
    """Everything a process needs to know before it can reach the database."""

    model_config = SettingsConfigDict(env_prefix="LABKEEPER_", env_file=".env", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///var/labkeeper.db"
    redis_url: str | None = None
    # Comma-separated; the first key encrypts, all keys decrypt (MultiFernet rotation).
    secret_keys: str = ""
    secret_key_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    worker_threads: int = Field(default=4, ge=1, le=64)
    run_scheduler: bool = True
    scheduler_tick_seconds: float = Field(default=1.0, gt=0)
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "text"
    cookie_secure: bool = False
    db_pool_size: int = Field(default=20, ge=1)
    # Requests inside the app at once; the rest wait their turn on the event loop. Kept below
    # the connection pool (pool size + overflow) and the thread pool (40), so a request that
    # holds a connection can always get a thread and the other way round.
    max_inflight_requests: int = Field(default=32, ge=1, le=1000)
    login_rate_per_minute: int = Field(default=30, ge=1)
    # `make run`: run the built-in simulators and load the demo lab into an empty database.
    demo: bool = False
    demo_ssh_port_base: int = Field(default=2201, ge=0, le=65000)
    demo_polatis_port: int = Field(default=8830, ge=0, le=65535)

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, value: str) -> str:
        # Accept the short driver-less forms operators type and pick our drivers.
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        if value.startswith("mysql://") or value.startswith("mariadb://"):
            return "mysql+pymysql://" + value.split("://", 1)[1]
        return value

    def key_list(self) -> list[str]:
        """The configured secret keys, newest first; the development key when none is set."""
        keys = [k.strip() for k in self.secret_keys.split(",") if k.strip()]
        if self.secret_key_file and self.secret_key_file.exists():
            keys += [
                line.strip()
                for line in self.secret_key_file.read_text().splitlines()
                if line.strip() and not line.startswith("#")
            ]
        return keys or [DEV_SECRET_KEY]

    def check_production(self) -> None:
        """Refuse to run in production with a missing or default secret."""
        if self.env != "production":
            return
        keys = self.key_list()
        if keys == [DEV_SECRET_KEY] or any(len(k) < 32 for k in keys):
            raise RuntimeError(
                "LABKEEPER_ENV=production needs LABKEEPER_SECRET_KEYS (or "
                "LABKEEPER_SECRET_KEY_FILE) with keys of at least 32 characters; "
                "refusing to start with a default secret."
            )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
