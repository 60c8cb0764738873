"""SSH transport: open a connection and an interactive shell, map failures to DriverErrors.

The shell channel is an asyncssh session object fed by callbacks, not a stream: it keeps the
received chunks in a list and looks only at the last bytes for the expected pattern, so a
100 kB configuration costs one join instead of a rescan per chunk, and pager prompts are
answered from the callback without waking the reading coroutine.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Protocol

import asyncssh
from asyncssh.encryption import get_default_encryption_algs, get_encryption_algs
from asyncssh.kex import get_default_kex_algs, get_kex_algs

from labkeeper.drivers.base import AuthFailed, CommandFailed, Credential, Unreachable

__all__ = ["ShellChannel", "open_connection", "open_shell"]

# How much of the end of the output is searched for a prompt or a pager prompt.
TAIL_CHARS = 1024
TERM_TYPE = "vt100"
TERM_SIZE = (511, 0)


def _ordered(
    preferred: list[str], defaults: list[bytes], legacy: list[str], known: list[bytes]
) -> list[str]:
    # Our preferences first, then asyncssh's defaults, then legacy algorithms that old lab gear
    # still needs; only what this asyncssh/cryptography build actually supports.
    available = {alg.decode() for alg in known}
    names = [*preferred, *(alg.decode() for alg in defaults), *legacy]
    return [n for n in dict.fromkeys(names) if n in available and not n.startswith("gss-")]


# AES-GCM is one AES-NI call per packet; asyncssh's chacha20-poly1305 builds cipher objects per
# packet in Python and took a third of the collector's CPU in bench/backup_drivers.py.
# Classical curve25519 kex comes before the post-quantum hybrids: host keys of lab devices are
# not verified anyway, and few devices offer ML-KEM. Legacy kex and CBC ciphers come last, for
# old images only.
KEX_ALGS = _ordered(
    ["curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256"],
    get_default_kex_algs(),
    ["diffie-hellman-group-exchange-sha1", "diffie-hellman-group1-sha1"],
    get_kex_algs(),
)
ENCRYPTION_ALGS = _ordered(
    ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr"],
    get_default_encryption_algs(),
    ["aes128-cbc", "aes256-cbc", "aes192-cbc", "3des-cbc"],
    get_encryption_algs(),
)


class Matcher(Protocol):
    """A compiled regex, or anything else that can tell whether the output ends as expected."""

    def search(self, text: str, /) -> object:
        """Something truthy when `text` ends as expected."""
        ...


class ShellChannel(asyncssh.SSHClientSession[str]):
    """Collect shell output and resolve a waiter when one of the expected patterns shows up."""

    def __init__(self) -> None:
        self._chan: asyncssh.SSHClientChannel[str] | None = None
        self._chunks: list[str] = []
        self._tail = ""
        self._patterns: tuple[Matcher, ...] = ()
        self._waiter: asyncio.Future[int] | None = None
        self._pager: re.Pattern[str] | None = None
        self._closed = False
        self.received = 0
        self.pages = 0

    # asyncssh callbacks -------------------------------------------------------------------

    def connection_made(self, chan: asyncssh.SSHClientChannel[str]) -> None:
        self._chan = chan

    def data_received(self, data: str, datatype: asyncssh.DataType) -> None:
        self._chunks.append(data)
        self.received += len(data)
        tail = self._tail + data
        if len(tail) > TAIL_CHARS:
            tail = tail[-TAIL_CHARS:]
        if self._pager is not None:
            match = self._pager.search(tail)
            if match is not None and self._chan is not None:
                # Cut the pager prompt from the tail so the same prompt is not answered twice.
                self._chan.write(" ")
                self.pages += 1
                tail = tail[: match.start()]
        self._tail = tail
        self._check()

    def eof_received(self) -> bool:
        self._set_closed()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._set_closed()

    # API for the session layer ------------------------------------------------------------

    def set_pager(self, pager: re.Pattern[str] | None) -> None:
        """Answer this pager prompt with a space whenever it ends the output."""
        self._pager = pager

    def send(self, text: str) -> None:
        """Write text to the shell."""
        if self._chan is None or self._closed:
            raise Unreachable(f"connection closed by the device after {self.received} bytes")
        self._chan.write(text)

    def take(self) -> str:
        """Return everything received since the last take() and start a fresh buffer."""
        text = "".join(self._chunks)
        self._chunks.clear()
        self._tail = ""
        return text

    def peek_tail(self) -> str:
        """The last characters received (for error messages)."""
        return self._tail

    async def expect(self, *patterns: Matcher, nudge_after: float | None = None) -> int:
        """Wait until one of the patterns matches the end of the output; return its index.

        With `nudge_after`, send one newline if nothing matched by then: some devices print
        their prompt only after a keystroke.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[int] = loop.create_future()
        self._patterns, self._waiter = patterns, waiter
        try:
            self._check()
            if self._closed and not waiter.done():
                self._fail_waiter()
            if nudge_after is not None and not waiter.done():
                done, _ = await asyncio.wait({waiter}, timeout=nudge_after)
                if not done:
                    self.send("\n")
            return await waiter
        finally:
            self._patterns, self._waiter = (), None

    def close(self) -> None:
        """Close the channel without waiting."""
        if self._chan is not None:
            self._chan.close()

    # internals ------------------------------------------------------------------------------

    def _check(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        for index, pattern in enumerate(self._patterns):
            if pattern.search(self._tail):
                waiter.set_result(index)
                return

    def _set_closed(self) -> None:
        self._closed = True
        if self._waiter is not None and not self._waiter.done():
            self._fail_waiter()

    def _fail_waiter(self) -> None:
        assert self._waiter is not None
        self._waiter.set_exception(
            Unreachable(
                f"connection closed by the device after {self.received} bytes"
                f" (last output: {self._tail[-80:]!r})"
            )
        )


def _client_keys(credential: Credential) -> list[asyncssh.SSHKey] | None:
    if not credential.ssh_key:
        return None
    try:
        return [asyncssh.import_private_key(credential.ssh_key)]
    except asyncssh.KeyImportError:
        pass
    try:
        # An encrypted key: the credential's password doubles as its passphrase.
        return [asyncssh.import_private_key(credential.ssh_key, credential.password)]
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise AuthFailed(f"credential {credential.id}: unusable private key ({exc})") from exc


async def open_connection(
    host: str, port: int, credential: Credential, *, timeout: float
) -> asyncssh.SSHClientConnection:
    """Connect and authenticate, or raise AuthFailed / Unreachable (TimeoutError propagates)."""
    keys = _client_keys(credential)
    options: dict[str, Any] = {
        "username": credential.username,
        "password": credential.password,
        # Lab devices are re-imaged all the time; their host keys are not pinned.
        "known_hosts": None,
        "client_keys": keys,
        # Never consult the operator's agent, ~/.ssh/config or Kerberos: results must depend
        # only on the stored credential.
        "agent_path": None,
        "config": [],
        "gss_host": None,
        "preferred_auth": ("publickey," if keys else "") + "password,keyboard-interactive",
        "connect_timeout": timeout,
        "kex_algs": KEX_ALGS,
        "encryption_algs": ENCRYPTION_ALGS,
    }
    try:
        return await asyncssh.connect(host, port, **options)
    except asyncssh.PermissionDenied as exc:
        raise AuthFailed(f"login refused for user {credential.username!r}") from exc
    except asyncssh.DisconnectError as exc:
        raise Unreachable(f"SSH session to {host}:{port} failed: {exc.reason}") from exc
    except TimeoutError:
        raise
    except OSError as exc:
        raise Unreachable(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc


async def open_shell(conn: asyncssh.SSHClientConnection) -> ShellChannel:
    """Open an interactive shell with a PTY on an authenticated connection."""
    try:
        _, session = await conn.create_session(
            ShellChannel, term_type=TERM_TYPE, term_size=TERM_SIZE
        )
        assert isinstance(session, ShellChannel)
    except asyncssh.ChannelOpenError as exc:
        raise CommandFailed(f"the device refused an interactive shell: {exc.reason}") from exc
    except asyncssh.DisconnectError as exc:
        raise Unreachable(f"connection lost while opening a shell: {exc.reason}") from exc
    return session
