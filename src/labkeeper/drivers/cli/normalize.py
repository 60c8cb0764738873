"""Turn a raw configuration into its significant content: noise dropped, secrets masked."""

from __future__ import annotations

import hashlib
import re

from labkeeper.drivers.cli.profiles import MASK, PlatformProfile, get_profile, netmiko_profile

__all__ = ["canonical_text", "config_hash", "mask_secrets", "normalize", "profile_for"]

_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_NETMIKO_PREFIX = "netmiko:"


def profile_for(platform: str) -> PlatformProfile:
    """The profile whose cleaning rules apply to `platform` (generic rules when none)."""
    name = platform.removeprefix(_NETMIKO_PREFIX)
    profile = netmiko_profile(name) or get_profile("generic")
    assert profile is not None  # the generic profile is always registered
    return profile


def canonical_text(text: str) -> str:
    """Unify line endings and whitespace that differ between sessions but mean nothing."""
    text = text.replace("\r\n", "\n").replace("\r", "")
    text = _TRAILING_SPACE.sub("", text)
    text = text.strip("\n")
    return text + "\n" if text else ""


def _mask_match(match: re.Match[str]) -> str:
    # Rebuild the match with only the `secret` group replaced, so keywords, type digits and
    # trailing options stay in place and the line can still be read (and restored by hand).
    start, end = match.span("secret")
    if start < 0 or match.group("secret") == MASK:
        return match.group(0)
    whole_start = match.start()
    return (
        match.string[whole_start:start] + MASK + match.string[end : match.end()]
        if start < end
        else match.group(0)
    )


def mask_secrets(profile: PlatformProfile, text: str) -> str:
    """Replace the value of every secret the profile knows with `<masked>`."""
    for rule in profile.secret_res:
        text = rule.sub(_mask_match, text)
    return text


def normalize(platform: str, text: str) -> str:
    """Strip noise lines and mask secret values according to the platform's profile."""
    profile = profile_for(platform)
    text = text.replace("\r\n", "\n").replace("\r", "")
    if profile.noise_re is not None:
        text = profile.noise_re.sub("", text)
    text = mask_secrets(profile, text)
    return canonical_text(text)


def config_hash(text: str, platform: str | None = None) -> str:
    """SHA-256 hex of the significant content (normalized first when `platform` is given)."""
    text = normalize(platform, text) if platform is not None else canonical_text(text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
