"""Types shared by every device driver: targets, credentials, results and the error tree.

Nothing here touches the network, the database or the web layer, so any part of labkeeper (and the
simulators, tests and benchmarks) can import it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "ERROR_CODES",
    "AuthFailed",
    "CommandFailed",
    "ConfigDriver",
    "Credential",
    "DriverError",
    "PromptNotFound",
    "Result",
    "Target",
    "Timeout",
    "UnknownPlatform",
    "Unreachable",
]


class DriverError(Exception):
    """A failure talking to one device; `code` is stable, `transient` says whether to retry."""

    code: str = "driver_error"
    transient: bool = False

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message or self.__class__.__name__

    def __str__(self) -> str:
        return self.message


class AuthFailed(DriverError):
    """The device refused the login or the enable secret; the next credential may work."""

    code = "auth"


class Unreachable(DriverError):
    """No SSH session could be set up (refused, no route, closed by the peer)."""

    code = "unreachable"
    transient = True


class Timeout(DriverError):
    """The device did not answer within the time allowed."""

    code = "timeout"
    transient = True


class PromptNotFound(DriverError):
    """The device answered, but nothing it sent looked like the platform's prompt."""

    code = "prompt_not_found"


class CommandFailed(DriverError):
    """A command was rejected by the device or produced unusable output."""

    code = "command_failed"


class UnknownPlatform(DriverError, LookupError):
    """No profile and no Netmiko driver exist for a platform name."""

    code = "unknown_platform"


ERROR_CODES: dict[str, type[DriverError]] = {
    cls.code: cls
    for cls in (AuthFailed, Unreachable, Timeout, PromptNotFound, CommandFailed, UnknownPlatform)
}


@dataclass(slots=True)
class Credential:
    """One login to try: username/password, an optional enable secret and private key."""

    id: int | None
    username: str
    password: str
    enable_secret: str | None = None
    ssh_key: str | None = None

    def __repr__(self) -> str:
        # Secrets must never reach logs, tracebacks or job output.
        return f"Credential(id={self.id!r}, username={self.username!r})"


@dataclass(slots=True)
class Target:
    """A device to collect from; `credentials` are tried in order, `command` overrides the
    profile's configuration command(s)."""

    key: Any
    host: str
    port: int
    platform: str
    credentials: list[Credential]
    command: str | None = None


@dataclass(slots=True)
class Result:
    """Outcome of one collection: the raw configuration or the failure, never an exception."""

    ok: bool
    output: str = ""
    duration_s: float = 0.0
    error: str | None = None
    code: str | None = None
    message: str = ""
    credential_id: int | None = None
    attempts: int = 0
    transient: bool = False
    key: Any = None
    host: str = ""
    port: int = 0
    platform: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> str:
        """The raw configuration text (alias of `output`)."""
        return self.output

    @classmethod
    def failure(
        cls,
        exc: BaseException,
        *,
        target: Target | None = None,
        duration_s: float = 0.0,
        attempts: int = 0,
        credential_id: int | None = None,
    ) -> Result:
        """Build a failed Result from an exception (DriverError or unexpected)."""
        if isinstance(exc, DriverError):
            code, message, transient = exc.code, exc.message, exc.transient
        else:
            # A bug or an unforeseen library error: report it, do not crash the whole run.
            code, message, transient = "internal", f"{type(exc).__name__}: {exc}", False
        result = cls(
            ok=False,
            duration_s=duration_s,
            error=type(exc).__name__,
            code=code,
            message=message,
            credential_id=credential_id,
            attempts=attempts,
            transient=transient,
        )
        if target is not None:
            result.key, result.host, result.port = target.key, target.host, target.port
            result.platform = target.platform
        return result


@runtime_checkable
class ConfigDriver(Protocol):
    """Something that fetches a configuration with one credential, in one attempt."""

    name: str

    async def fetch_config(
        self,
        host: str,
        port: int,
        credential: Credential,
        *,
        command: str | None = None,
        timeout: float = 20.0,
    ) -> str:
        """Return the device's raw configuration text or raise a DriverError."""
        ...
