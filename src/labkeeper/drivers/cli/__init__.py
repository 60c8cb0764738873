"""SSH command-line collection: transport (asyncssh) -> session -> platform profiles as data.

Public API used by the backups service:

    from labkeeper.drivers.cli import Credential, Target, collect, collect_many, normalize

    target = Target(key=42, host="10.0.0.1", port=22, platform="cisco_ios",
                    credentials=[Credential(1, "backup", "pw", enable_secret="en")])
    result = await collect(target)             # Result(ok, output, credential_id, code, ...)
    text = normalize(target.platform, result.output)
    digest = config_hash(text)

`timeout` bounds one attempt (connect, login, enable, paging, every command); only transient
failures (unreachable, timeout) are retried, with exponential backoff; AuthFailed (login or
enable refused) moves on to the next credential; other failures stop.
"""

from labkeeper.drivers.base import (
    AuthFailed,
    CommandFailed,
    Credential,
    DriverError,
    PromptNotFound,
    Result,
    Target,
    Timeout,
    UnknownPlatform,
    Unreachable,
)
from labkeeper.drivers.cli.collect import collect, collect_many
from labkeeper.drivers.cli.normalize import config_hash, normalize
from labkeeper.drivers.cli.profiles import (
    MASK,
    PROFILES,
    PlatformProfile,
    generic_profile,
    get_profile,
    register_profile,
)

__all__ = [
    "MASK",
    "PROFILES",
    "AuthFailed",
    "CommandFailed",
    "Credential",
    "DriverError",
    "PlatformProfile",
    "PromptNotFound",
    "Result",
    "Target",
    "Timeout",
    "UnknownPlatform",
    "Unreachable",
    "collect",
    "collect_many",
    "config_hash",
    "generic_profile",
    "get_profile",
    "normalize",
    "register_profile",
]
