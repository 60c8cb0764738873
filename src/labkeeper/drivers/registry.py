"""Platform name -> driver.

Lookup order:
1. a driver factory registered with `register_driver(name, factory)`;
2. `netmiko:<device_type>`: Netmiko's driver of that device type, even if labkeeper has a profile
   of the same name (useful to compare, or to work around a profile problem on one device);
3. a labkeeper platform profile (`cisco_ios`, ..., `generic`, or one added with
   `register_profile`): the asyncssh CLI driver;
4. any other Netmiko SSH device type (`mikrotik_routeros`, ...): Netmiko in a thread pool;
5. otherwise `UnknownPlatform` (a DriverError with code `unknown_platform`).
"""

from __future__ import annotations

from collections.abc import Callable

from labkeeper.drivers.base import ConfigDriver, UnknownPlatform
from labkeeper.drivers.cli.driver import CliDriver
from labkeeper.drivers.cli.netmiko_driver import NetmikoDriver, netmiko_ssh_platforms
from labkeeper.drivers.cli.profiles import PROFILES, get_profile, register_profile

__all__ = [
    "NETMIKO_PREFIX",
    "get_driver",
    "known_platforms",
    "register_driver",
    "register_profile",
]

NETMIKO_PREFIX = "netmiko:"

_factories: dict[str, Callable[[], ConfigDriver]] = {}


def register_driver(name: str, factory: Callable[[], ConfigDriver]) -> None:
    """Serve platform `name` with drivers made by `factory` (overrides profiles)."""
    _factories[name] = factory


def known_platforms() -> list[str]:
    """Names with a labkeeper profile or a registered driver (Netmiko types not listed)."""
    return sorted({*PROFILES, *_factories})


def get_driver(platform: str) -> ConfigDriver:
    """The driver for `platform`; raises UnknownPlatform when nothing can serve it."""
    factory = _factories.get(platform)
    if factory is not None:
        return factory()
    if platform.startswith(NETMIKO_PREFIX):
        device_type = platform.removeprefix(NETMIKO_PREFIX)
        if device_type not in netmiko_ssh_platforms():
            raise UnknownPlatform(
                f"unknown platform {platform!r}: Netmiko has no SSH driver {device_type!r}"
            )
        return NetmikoDriver(device_type)
    profile = get_profile(platform)
    if profile is not None:
        return CliDriver(profile)
    if platform in netmiko_ssh_platforms():
        return NetmikoDriver(platform)
    raise UnknownPlatform(
        f"unknown platform {platform!r}: no labkeeper profile (known: "
        f"{', '.join(known_platforms())}) and no Netmiko SSH driver of that name; "
        f"use 'generic' with a command, or 'netmiko:<device_type>'"
    )
