"""Platform profiles as data: how to find the prompt, leave paging, fetch and clean a config.

A profile says nothing about sockets or SSH; the session layer reads it. Regexes are plain
strings so profiles stay readable, can be listed in docs and registered at run time (e.g. a
`generic` profile per device type with its own command).

Conventions for the regex fields:
- `pager`: the text of a pager prompt (`--More--`), without anchors.
- `prompt`: searched (not matched) against the end of what the device sent; must match only when
  the device is waiting at a prompt.
- `noise`: each one matches from the start of a line; a matching line is dropped before hashing.
- `secrets`: each one has a named group `secret`; only that group is replaced by `<masked>`, so the
  line keeps its keyword, type digit and trailing options (`snmp-server community <masked> RO`).
- `errors`: a line of a command's first lines matching one of them means the command failed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

__all__ = [
    "GENERIC_PROMPT",
    "MASK",
    "NETMIKO_ALIASES",
    "PROFILES",
    "PlatformProfile",
    "generic_profile",
    "get_profile",
    "netmiko_profile",
    "register_profile",
]

MASK = "<masked>"
GENERIC_PROMPT = r"[>#$]\s*$"

# Pager prompts of the profiled platforms (unanchored); the session answers them with a space
# when paging could not be turned off (old images, a generic device, a failed paging command).
DEFAULT_PAGER = r"-- ?More ?--|---- More ----|---\(more[^)\n]*\)---|<--- More --->"

# Line anchors are `(?:^|[\r\n])` rather than `(?m)^` because the prompt is searched in a tail
# of the buffer whose first line may be partial.
IOS_PROMPT = r"(?:^|[\r\n])[\w.\-@/:()~]{1,80}[>#]\s*$"
JUNOS_PROMPT = r"(?:^|[\r\n])[\w.\-]+@[\w.\-]+[>#%]\s*$"
HUAWEI_PROMPT = r"(?:^|[\r\n])(?:<[^<>\n]{1,80}>|\[~?\*?[^\[\]\n]{1,80}\])\s*$"
LINUX_PROMPT = r"(?:^|[\r\n])[^\n]{0,160}[$#]\s*$"

_PRIVATE_KEY = (
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----\n(?P<secret>(?s:.*?))\n-----END (?:[A-Z0-9]+ )*"
    r"PRIVATE KEY-----"
)

# Cisco-like syntax is shared by IOS, NX-OS, IOS XR and EOS; the differences are in the
# keywords that take a type digit or an algorithm name before the value.
_CISCO_SECRETS: tuple[str, ...] = (
    r"^\s*enable (?:secret|password)(?: level \d+)?(?: \d+| sha512| md5)? (?P<secret>\S+)",
    r"^\s*username \S+ (?:.*? )?(?:secret|password)(?: \d+| sha512| sha256| md5)? (?P<secret>\S+)",
    r"^\s*snmp-server community (?P<secret>\S+)",
    r"^\s*snmp-server host \S+(?: informs| traps)?(?: version (?:1|2c|3 (?:auth|noauth|priv)))?"
    r" (?P<secret>\S+)",
    r"^\s*snmp-server user .*? auth (?:md5|sha\S*) (?P<secret>\S+)",
    r"^\s*snmp-server user .*? priv (?:aes-128 |aes \d+ |aes |3des |des )?(?P<secret>\S+)",
    r"^\s*(?:password|secret)(?!\s+(?:encryption|strength-check|policy|prompt)\b)(?: \d+)?"
    r" (?P<secret>\S+)",
    r"^\s*(?:tacacs-server|radius-server)(?: host \S+(?: .*?)?)? key(?: [0-7])? (?P<secret>\S+)",
    r"^\s+key [0-7] (?P<secret>\S+)",
    r"^\s*key-string(?: password)?(?: \d+)? (?P<secret>\S+)",
    r"^\s*(?:ip |ipv6 )?(?:ospf |rip |isis )?(?:message-digest-key \d+ md5|authentication-key)"
    r"(?: \d+)? (?P<secret>\S+)",
    r"^\s*neighbor \S+ password(?: \d+)? (?P<secret>\S+)",
    r"^\s*crypto isakmp key(?: \d+)? (?P<secret>\S+)",
    r"^\s*(?:pre-shared-key|ppp (?:chap|pap) password)(?: \d+)? (?P<secret>\S+)",
    r"^\s*(?:hello-password|lsp-password)(?: hmac-md5| text)?(?: encrypted| clear)?"
    r" (?P<secret>\S+)",
    _PRIVATE_KEY,
)

_CISCO_ERRORS: tuple[str, ...] = (
    r"% ?Invalid (?:input|command)",
    r"% ?Incomplete command",
    r"% ?Ambiguous command",
    r"% ?Unknown command",
    r"% ?Unrecognized command",
    r"% ?(?:Authorization failed|Permission denied|Access denied)",
    r"% ?This command is not authorized",
)

_JUNOS_SECRETS: tuple[str, ...] = (
    # Junos tags every secret with a trailing `## SECRET-DATA` comment, quoted or not.
    r'^[^\n]*?\s"(?P<secret>[^"\n]*)";\s*## SECRET-DATA',
    r"^[^\n]*?\s(?P<secret>[^\s\";]+);\s*## SECRET-DATA",
    r"^\s*(?:set snmp )?community (?P<secret>[^\s;{]+)",
    r"^\s*(?:set snmp v3 usm .*? )?authentication-password (?P<secret>\S+?);?$",
    _PRIVATE_KEY,
)

_HUAWEI_SECRETS: tuple[str, ...] = (
    r"\b(?:irreversible-cipher|cipher|simple) (?P<secret>\S+)",
    r"^\s*snmp-agent community (?:read|write) (?!cipher\b|simple\b)(?P<secret>\S+)",
    r"^\s*local-user \S+ password (?!cipher\b|simple\b|irreversible-cipher\b)(?P<secret>\S+)",
    _PRIVATE_KEY,
)

_LINUX_SECRETS: tuple[str, ...] = (
    r"^\s*(?:enable )?password (?P<secret>\S+)",
    r"^\s*neighbor \S+ password (?P<secret>\S+)",
    r"^\s*(?:ip ospf )?(?:message-digest-key \d+ md5|authentication-key) (?P<secret>\S+)",
    r"^\s*(?:wpa-psk|wpa-password|psk)\s+(?P<secret>\S+)",
    r"^\s*\w*(?:PASSWORD|PASSWD|SECRET|TOKEN|PSK)\w*\s*=\s*\"?(?P<secret>[^\"\s]+)",
    _PRIVATE_KEY,
)

_GENERIC_NOISE: tuple[str, ...] = (
    r"! Last configuration change at ",
    r"! NVRAM config last updated at ",
    r"!! Last configuration change at ",
    r"Current configuration\s*:\s*\d+ bytes",
    r"Building configuration\.\.\.",
    r"!Time: ",
    r"! Time: ",
    r"## Last commit: ",
    r"## Last changed: ",
    r"!Last configuration was (?:updated|saved) at ",
)

_XR_TIMESTAMP = (
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" +\d{1,2} \d{2}:\d{2}:\d{2}(?:\.\d+)? \S+\s*$"
)


@dataclass(frozen=True)
class PlatformProfile:
    """How one platform's CLI is driven and how its configuration is cleaned."""

    name: str
    prompt: str
    config_commands: tuple[str, ...]
    privileged_prompt: str | None = None
    enable_command: str = "enable"
    # A regex for the question, not a secret.
    enable_password_prompt: str = r"[Pp]ass(?:word|code|phrase)\s*:\s*$"  # noqa: S105
    paging_commands: tuple[str, ...] = ()
    pager: str = DEFAULT_PAGER
    noise: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    exit_command: str = "exit"
    description: str = ""
    # Compiled forms, built once per profile object; not part of equality or repr.
    prompt_re: re.Pattern[str] = field(init=False, repr=False, compare=False)
    privileged_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    enable_password_re: re.Pattern[str] = field(init=False, repr=False, compare=False)
    pager_re: re.Pattern[str] = field(init=False, repr=False, compare=False)
    pager_strip_re: re.Pattern[str] = field(init=False, repr=False, compare=False)
    noise_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    secret_res: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    error_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.config_commands:
            raise ValueError(f"profile {self.name!r} needs at least one config command")
        setter = object.__setattr__
        setter(self, "prompt_re", re.compile(self.prompt))
        setter(
            self,
            "privileged_re",
            re.compile(self.privileged_prompt) if self.privileged_prompt else None,
        )
        setter(self, "enable_password_re", re.compile(self.enable_password_prompt))
        setter(self, "pager_re", re.compile(rf"(?:{self.pager})[ \t]*$"))
        # Devices erase the pager prompt with backspaces (IOS), cursor moves (VRP) or carriage
        # returns (Junos) around spaces.
        setter(
            self,
            "pager_strip_re",
            re.compile(
                rf"[ \t]*(?:{self.pager})[ \t]*"
                r"(?:\x08+[ \t]*\x08+|\x1b\[\d*D[ \t]*\x1b\[\d*D|\x1b\[\d*[DK]|\r[ \t]+\r)?"
            ),
        )
        noise = (
            re.compile(r"(?m)^(?:" + "|".join(f"(?:{p})" for p in self.noise) + r")[^\n]*(?:\n|\Z)")
            if self.noise
            else None
        )
        setter(self, "noise_re", noise)
        for pattern in self.secrets:
            if "(?P<secret>" not in pattern:
                raise ValueError(f"secret rule without a (?P<secret>...) group: {pattern!r}")
        setter(self, "secret_res", tuple(re.compile(p, re.MULTILINE) for p in self.secrets))
        errors = (
            re.compile("|".join(f"(?:{p})" for p in self.errors), re.IGNORECASE)
            if self.errors
            else None
        )
        setter(self, "error_re", errors)

    @property
    def needs_enable(self) -> bool:
        """True when the profile raises privileges (`enable`) before reading the config."""
        return self.privileged_re is not None

    def with_command(self, command: str) -> PlatformProfile:
        """A copy of the profile that collects with one different command."""
        return replace(self, config_commands=(command,))


def generic_profile(
    name: str = "generic",
    *,
    command: str = "show running-config",
    prompt: str = GENERIC_PROMPT,
    paging_command: str | None = None,
    privileged_prompt: str | None = None,
    noise: tuple[str, ...] = _GENERIC_NOISE,
    secrets: tuple[str, ...] = _CISCO_SECRETS + _JUNOS_SECRETS[:2],
) -> PlatformProfile:
    """Build a profile for a device type that only needs a prompt and one command."""
    return PlatformProfile(
        name=name,
        prompt=prompt,
        config_commands=(command,),
        privileged_prompt=privileged_prompt,
        paging_commands=(paging_command,) if paging_command else (),
        noise=noise,
        secrets=secrets,
        errors=(*_CISCO_ERRORS, r"syntax error", r"Error: Unrecognized", r"command not found"),
        description="any CLI with a >, # or $ prompt; command set per device type",
    )


PROFILES: dict[str, PlatformProfile] = {}

# Netmiko device types that speak the CLI of a labkeeper profile: the Netmiko fallback uses that
# profile's commands, and normalize() its cleaning rules.
NETMIKO_ALIASES: dict[str, str] = {
    "cisco_xe": "cisco_ios",
    "juniper": "juniper_junos",
    "huawei": "huawei_vrp",
    "huawei_vrpv8": "huawei_vrp",
}


def register_profile(profile: PlatformProfile, *, replace: bool = False) -> PlatformProfile:
    """Make a profile available under its name (refuses to shadow one unless replace=True)."""
    if profile.name in PROFILES and not replace:
        raise ValueError(f"a profile named {profile.name!r} already exists")
    PROFILES[profile.name] = profile
    return profile


def get_profile(name: str) -> PlatformProfile | None:
    """The profile registered under `name`, or None."""
    return PROFILES.get(name)


def netmiko_profile(device_type: str) -> PlatformProfile | None:
    """The profile whose CLI a Netmiko device type speaks, or None."""
    return get_profile(device_type) or get_profile(NETMIKO_ALIASES.get(device_type, ""))


for _profile in (
    PlatformProfile(
        name="cisco_ios",
        description="Cisco IOS / IOS XE",
        prompt=IOS_PROMPT,
        privileged_prompt=r"#\s*$",
        paging_commands=("terminal length 0",),
        config_commands=("show running-config",),
        noise=(
            r"! Last configuration change at ",
            r"! NVRAM config last updated at ",
            r"! No configuration change since last restart",
            r"ntp clock-period \d+",
            r"Current configuration\s*:\s*\d+ bytes",
            r"Building configuration\.\.\.",
            r"Load for five secs: ",
            r"Time source is ",
        ),
        secrets=_CISCO_SECRETS,
        errors=_CISCO_ERRORS,
    ),
    PlatformProfile(
        name="cisco_nxos",
        description="Cisco NX-OS",
        prompt=IOS_PROMPT,
        paging_commands=("terminal length 0",),
        config_commands=("show running-config",),
        noise=(
            r"!Command: show running-config",
            r"!Running configuration last done at:",
            r"!Time:",
            r"!NVRAM config last updated at",
        ),
        secrets=_CISCO_SECRETS,
        errors=_CISCO_ERRORS,
    ),
    PlatformProfile(
        name="cisco_xr",
        description="Cisco IOS XR",
        prompt=IOS_PROMPT,
        paging_commands=("terminal length 0",),
        config_commands=("show running-config",),
        noise=(
            r"Building configuration\.\.\.",
            r"!! Last configuration change at ",
            _XR_TIMESTAMP,
        ),
        secrets=_CISCO_SECRETS,
        errors=_CISCO_ERRORS,
    ),
    PlatformProfile(
        name="arista_eos",
        description="Arista EOS",
        prompt=IOS_PROMPT,
        privileged_prompt=r"#\s*$",
        paging_commands=("terminal length 0",),
        config_commands=("show running-config",),
        noise=(
            r"! Command: show running-config",
            r"! Time: ",
            r"! Startup-config last modified at ",
        ),
        secrets=_CISCO_SECRETS,
        errors=_CISCO_ERRORS,
    ),
    PlatformProfile(
        name="juniper_junos",
        description="Juniper Junos (operational mode)",
        prompt=JUNOS_PROMPT,
        paging_commands=("set cli screen-length 0",),
        config_commands=("show configuration",),
        noise=(
            r"## Last commit: ",
            r"## Last changed: ",
            r"\{(?:master|backup|primary|secondary|linecard)(?::\d+)?\}\s*$",
        ),
        secrets=_JUNOS_SECRETS,
        errors=(r"syntax error", r"unknown command", r"^error: "),
    ),
    PlatformProfile(
        name="huawei_vrp",
        description="Huawei VRP",
        prompt=HUAWEI_PROMPT,
        paging_commands=("screen-length 0 temporary",),
        config_commands=("display current-configuration",),
        noise=(
            r"!Last configuration was (?:updated|saved) at ",
            r"!Time:",
        ),
        secrets=_HUAWEI_SECRETS,
        errors=(r"Error: ?Unrecognized command", r"Error: ?Incomplete command", r"Error: ?Wrong"),
        exit_command="quit",
    ),
    PlatformProfile(
        name="linux",
        description="Linux host (hostname, hosts, interfaces and FRR configuration files)",
        prompt=LINUX_PROMPT,
        config_commands=(
            "cat /etc/hostname /etc/hosts /etc/network/interfaces /etc/frr/frr.conf 2>/dev/null",
        ),
        noise=(
            r"! Zebra configuration saved from vty",
            r"!\s+\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}",
            r"# Last (?:modified|updated|changed)\b",
        ),
        secrets=_LINUX_SECRETS,
        errors=(r": command not found$", r"^-?\w*sh: .*: not found$"),
    ),
    generic_profile(),
):
    register_profile(_profile)
