"""The asyncssh CLI driver: one attempt with one credential, bounded by one deadline."""

from __future__ import annotations

import asyncio

import asyncssh

from labkeeper.drivers.base import (
    CommandFailed,
    Credential,
    DriverError,
    PromptNotFound,
    Timeout,
    Unreachable,
)
from labkeeper.drivers.cli.profiles import PlatformProfile
from labkeeper.drivers.cli.session import WAITING_FOR_PROMPT, CliSession
from labkeeper.drivers.cli.transport import ShellChannel, open_connection, open_shell

__all__ = ["CliDriver"]


class CliDriver:
    """Collect a configuration over an interactive SSH shell, as a PlatformProfile says."""

    def __init__(self, profile: PlatformProfile) -> None:
        self.profile = profile
        self.name = profile.name

    def __repr__(self) -> str:
        return f"CliDriver({self.profile.name!r})"

    async def fetch_config(
        self,
        host: str,
        port: int,
        credential: Credential,
        *,
        command: str | None = None,
        timeout: float = 20.0,
    ) -> str:
        """Return the raw configuration; the whole attempt must finish within `timeout` s."""
        profile = self.profile
        commands = (command,) if command else profile.config_commands
        conn: asyncssh.SSHClientConnection | None = None
        channel: ShellChannel | None = None
        session: CliSession | None = None
        stage = "connecting"
        ok = False
        try:
            # One deadline for the whole attempt, so a device that trickles output or hangs
            # midway cannot hold a worker longer than `timeout`.
            async with asyncio.timeout(timeout):
                conn = await open_connection(host, port, credential, timeout=timeout)
                stage = "opening a shell"
                channel = await open_shell(conn)
                session = CliSession(channel, profile)
                await session.start(credential)
                outputs = [await session.run(cmd) for cmd in commands]
            text = "\n".join(outputs)
            if not text.strip():
                raise CommandFailed(f"{' / '.join(commands)!r} returned no output")
            ok = True
            return text
        except TimeoutError:
            if session is not None:
                stage = session.stage
            received = channel.received if channel is not None else 0
            if stage == WAITING_FOR_PROMPT and channel is not None and received:
                raise PromptNotFound(
                    f"no {profile.name} prompt within {timeout:g} s; last output:"
                    f" {channel.peek_tail()[-80:]!r}"
                ) from None
            raise Timeout(
                f"no answer within {timeout:g} s while {stage} ({received} bytes received)"
            ) from None
        except DriverError:
            raise
        except asyncssh.Error as exc:
            raise Unreachable(f"SSH error while {stage}: {exc}") from exc
        finally:
            if conn is not None:
                if ok:
                    # Leave politely: vty lines are few on some devices.
                    if channel is not None:
                        channel.close()
                    conn.close()
                else:
                    conn.abort()
