"""Fallback driver: any Netmiko SSH device type, run in a thread pool.

Used for platforms labkeeper has no profile for, or on request with a `netmiko:` prefix
(`netmiko:linux`). Netmiko is blocking, so each attempt occupies one worker thread; the asyncio
side stops waiting at the deadline even if the thread is still inside Netmiko.
"""

from __future__ import annotations

import asyncio
import functools
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from labkeeper.drivers.base import (
    AuthFailed,
    CommandFailed,
    Credential,
    DriverError,
    Timeout,
    Unreachable,
)
from labkeeper.drivers.cli.profiles import PlatformProfile, get_profile, netmiko_profile

__all__ = ["NETMIKO_WORKERS", "NetmikoDriver", "netmiko_ssh_platforms"]

NETMIKO_WORKERS = 32
DEFAULT_COMMAND = "show running-config"

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=NETMIKO_WORKERS, thread_name_prefix="netmiko"
            )
        return _executor


@functools.cache
def netmiko_ssh_platforms() -> frozenset[str]:
    """Netmiko device types that speak SSH (telnet, serial and autodetect excluded)."""
    from netmiko.ssh_dispatcher import CLASS_MAPPER

    excluded = {"autodetect", "terminal_server"}
    return frozenset(
        name
        for name in CLASS_MAPPER
        if not name.endswith(("_telnet", "_serial")) and name not in excluded
    )


def _load_pkey(credential: Credential) -> Any:
    import paramiko

    assert credential.ssh_key is not None
    classes: tuple[Any, ...] = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)
    for cls in classes:
        for passphrase in (None, credential.password):
            try:
                return cls.from_private_key(io.StringIO(credential.ssh_key), password=passphrase)
            except (paramiko.SSHException, ValueError):
                continue
    raise AuthFailed(f"credential {credential.id}: unusable private key")


class NetmikoDriver:
    """Collect with netmiko.ConnectHandler(device_type=...) in a worker thread."""

    def __init__(self, device_type: str, profile: PlatformProfile | None = None) -> None:
        self.device_type = device_type
        self.profile = profile if profile is not None else netmiko_profile(device_type)
        self.name = f"netmiko:{device_type}"

    def __repr__(self) -> str:
        return f"NetmikoDriver({self.device_type!r})"

    async def fetch_config(
        self,
        host: str,
        port: int,
        credential: Credential,
        *,
        command: str | None = None,
        timeout: float = 20.0,
    ) -> str:
        """Return the raw configuration; give up waiting after `timeout` s."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self._fetch_blocking, host, port, credential, command, timeout)
        future = loop.run_in_executor(_get_executor(), call)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise Timeout(f"netmiko did not finish within {timeout:g} s") from None

    def _commands(self, command: str | None) -> tuple[str, ...]:
        if command:
            return (command,)
        if self.profile is not None:
            return self.profile.config_commands
        return (DEFAULT_COMMAND,)

    def _fetch_blocking(
        self, host: str, port: int, credential: Credential, command: str | None, timeout: float
    ) -> str:
        from netmiko import ConnectHandler
        from netmiko.exceptions import (
            NetmikoAuthenticationException,
            NetmikoTimeoutException,
            ReadTimeout,
        )

        params: dict[str, Any] = {
            "device_type": self.device_type,
            "host": host,
            "port": port,
            "username": credential.username,
            "password": credential.password,
            "secret": credential.enable_secret or credential.password,
            "conn_timeout": timeout,
            "auth_timeout": timeout,
            "banner_timeout": timeout,
            "use_keys": False,
            "allow_agent": False,
            "ssh_config_file": None,
        }
        if credential.ssh_key:
            params["pkey"] = _load_pkey(credential)
            params["use_keys"] = True
        try:
            with ConnectHandler(**params) as conn:
                self._maybe_enable(conn, credential)
                outputs = [
                    conn.send_command(cmd, read_timeout=timeout) for cmd in self._commands(command)
                ]
        except DriverError:
            raise
        except NetmikoAuthenticationException as exc:
            raise AuthFailed(f"login refused for user {credential.username!r}") from exc
        except ReadTimeout as exc:
            raise Timeout(f"netmiko read timed out: {str(exc).strip()[:200]}") from exc
        except NetmikoTimeoutException as exc:
            if str(exc).startswith(("TCP connection", "DNS failure")) and not isinstance(
                exc.__context__, TimeoutError
            ):
                raise Unreachable(f"cannot connect to {host}:{port}") from exc
            raise Timeout(f"netmiko timed out: {str(exc).strip()[:200]}") from exc
        except OSError as exc:
            raise Unreachable(f"cannot connect to {host}:{port}: {exc}") from exc
        except Exception as exc:
            raise CommandFailed(f"netmiko: {type(exc).__name__}: {str(exc).strip()[:200]}") from exc
        text = "\n".join(str(out) for out in outputs)
        self._check_errors(text)
        return text

    def _maybe_enable(self, conn: Any, credential: Credential) -> None:
        if self.profile is not None:
            wanted = self.profile.needs_enable
        else:
            # Unknown device type: only try when the operator gave an enable secret.
            wanted = bool(credential.enable_secret)
        if not wanted:
            return
        try:
            if not conn.check_enable_mode():
                conn.enable()
        except ValueError as exc:
            raise AuthFailed("enable secret refused") from exc

    def _check_errors(self, text: str) -> None:
        profile = self.profile or get_profile("generic")
        if profile is None or profile.error_re is None:
            return
        for line in [ln for ln in text.splitlines() if ln.strip()][:5]:
            if profile.error_re.search(line):
                raise CommandFailed(f"command rejected by the device: {line.strip()}")
