"""CLI session: find the prompt, enter privileged mode, turn paging off, run commands.

Everything platform-specific comes from a PlatformProfile; this layer only knows the shape of an
interactive CLI (echo, output, prompt) and enforces nothing about time: the driver wraps a whole
attempt in one deadline.
"""

from __future__ import annotations

import re

from labkeeper.drivers.base import AuthFailed, CommandFailed, Credential
from labkeeper.drivers.cli.profiles import PlatformProfile
from labkeeper.drivers.cli.transport import Matcher, ShellChannel

__all__ = ["WAITING_FOR_PROMPT", "CliSession", "ExactPrompt", "clean_output"]

WAITING_FOR_PROMPT = "waiting for the first prompt"
# Some devices show their prompt only after a keystroke (a banner needing Enter, a slow AAA).
NUDGE_AFTER_S = 1.5
# Error messages appear right after the echoed command; deeper lines are configuration.
ERROR_SCAN_LINES = 5

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>]")


class ExactPrompt:
    """Matches output that ends with this exact prompt at the start of a line.

    Cheaper than compiling a regex per session (every device has its own hostname, so the regex
    cache would not help).
    """

    __slots__ = ("prompt",)

    def __init__(self, prompt: str) -> None:
        self.prompt = prompt

    def search(self, text: str, /) -> bool:
        """True when `text` ends with the prompt, trailing whitespace allowed."""
        body = text.rstrip()
        if not body.endswith(self.prompt):
            return False
        start = len(body) - len(self.prompt)
        return start == 0 or body[start - 1] in "\r\n"


def clean_output(profile: PlatformProfile, raw: str, *, paged: bool = False) -> str:
    """Remove pager prompts, terminal escapes and carriage returns from raw shell output."""
    if paged:
        raw = profile.pager_strip_re.sub("", raw)
    if "\x08" in raw or "\x1b" in raw:
        raw = _ANSI.sub("", raw).replace("\x08", "")
    return raw.replace("\r\n", "\n").replace("\r", "")


class CliSession:
    """One interactive shell on one device, driven according to a platform profile."""

    def __init__(self, channel: ShellChannel, profile: PlatformProfile) -> None:
        self.channel = channel
        self.profile = profile
        self.stage = WAITING_FOR_PROMPT
        self.prompt_line = ""
        self._prompt_re: Matcher = profile.prompt_re

    async def start(self, credential: Credential) -> None:
        """Wait for the prompt, enter privileged mode if the profile wants it, stop paging."""
        profile = self.profile
        self.channel.set_pager(profile.pager_re)
        self.stage = WAITING_FOR_PROMPT
        await self.channel.expect(profile.prompt_re, nudge_after=NUDGE_AFTER_S)
        self._learn_prompt(self.channel.take())
        if profile.privileged_re is not None and not profile.privileged_re.search(self.prompt_line):
            await self._enable(credential)
        for command in profile.paging_commands:
            # A device that refuses the paging command still works: its pager is answered.
            await self.run(command, check=False)

    async def run(self, command: str, *, check: bool = True) -> str:
        """Send one command and return its output without the echo and the final prompt."""
        self.stage = f"running {command!r}"
        self.channel.take()
        pages = self.channel.pages
        self.channel.send(command + "\n")
        await self.channel.expect(self._prompt_re)
        raw = self.channel.take()
        text = clean_output(self.profile, raw, paged=self.channel.pages != pages)
        output = self._strip_echo_and_prompt(command, text)
        if check:
            self._check_errors(command, output)
        return output

    async def _enable(self, credential: Credential) -> None:
        profile = self.profile
        self.stage = "entering privileged mode"
        secret = credential.enable_secret
        if secret is None:
            # Many labs use the login password as the enable secret.
            secret = credential.password
        self.channel.take()
        self.channel.send(profile.enable_command + "\n")
        index = await self.channel.expect(profile.enable_password_re, profile.prompt_re)
        if index == 0:
            self.channel.take()
            self.channel.send(secret + "\n")
            # A second password prompt means the secret was wrong (IOS asks up to three times).
            index = await self.channel.expect(profile.enable_password_re, profile.prompt_re)
            if index == 0:
                raise AuthFailed("enable secret refused")
        text = clean_output(profile, self.channel.take())
        self._learn_prompt(text)
        assert profile.privileged_re is not None
        if not profile.privileged_re.search(self.prompt_line):
            # Some images answer a wrong secret with "% Access denied" and the user prompt.
            raise AuthFailed("enable secret refused")

    def _learn_prompt(self, text: str) -> None:
        # From now on wait for this exact prompt: a configuration line ending in '#' or '>'
        # must not end a command early.
        lines = [line for line in clean_output(self.profile, text).split("\n") if line.strip()]
        line = lines[-1].strip() if lines else ""
        self.prompt_line = line
        if line and "\x1b" not in text:
            self._prompt_re = ExactPrompt(line)
        else:
            self._prompt_re = self.profile.prompt_re

    def _strip_echo_and_prompt(self, command: str, text: str) -> str:
        lines = text.split("\n")
        if lines and (command.strip() in lines[0] or not lines[0].strip()):
            lines = lines[1:]
        if lines and (
            lines[-1].strip() == self.prompt_line or self.profile.prompt_re.search(lines[-1])
        ):
            lines = lines[:-1]
        return "\n".join(lines)

    def _check_errors(self, command: str, output: str) -> None:
        error_re = self.profile.error_re
        if error_re is None:
            return
        scanned = 0
        for line in output.split("\n", ERROR_SCAN_LINES * 2)[: ERROR_SCAN_LINES * 2]:
            if not line.strip():
                continue
            if error_re.search(line):
                raise CommandFailed(f"{command!r} rejected by the device: {line.strip()}")
            scanned += 1
            if scanned >= ERROR_SCAN_LINES:
                break
