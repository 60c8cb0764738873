"""SSH CLI collection against the device simulator, over real SSH on 127.0.0.1 ephemeral ports."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from labkeeper.drivers import registry
from labkeeper.drivers.base import (
    AuthFailed,
    Credential,
    DriverError,
    Result,
    Target,
    UnknownPlatform,
)
from labkeeper.drivers.cli import (
    MASK,
    PROFILES,
    collect,
    collect_many,
    config_hash,
    generic_profile,
    normalize,
    register_profile,
)
from labkeeper.drivers.cli.driver import CliDriver
from labkeeper.drivers.cli.netmiko_driver import NetmikoDriver
from labkeeper.simulators.devices import PLATFORMS, DeviceFarm, SimDevice

ADMIN = Credential(1, "admin", "admin")


def run(scenario: Callable[..., Awaitable[Any]], *args: Any, limit: float = 20.0) -> Any:
    """Run one async scenario with a hard limit, so a bug cannot hang the suite."""

    async def main() -> Any:
        return await asyncio.wait_for(scenario(*args), limit)

    return asyncio.run(main())


def target(device: SimDevice, *creds: Credential, **kw: Any) -> Target:
    return Target(
        key=device.index,
        host="127.0.0.1",
        port=device.port,
        platform=kw.pop("platform", device.platform),
        credentials=list(creds or [ADMIN]),
        **kw,
    )


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound (so nobody else takes it) but not listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


# --- every profiled platform -------------------------------------------------------------------


@pytest.mark.parametrize("platform", PLATFORMS)
def test_collects_every_profiled_platform(platform: str) -> None:
    async def scenario() -> None:
        async with DeviceFarm(1, platform) as farm:
            device = farm.device(0)
            first = await collect(target(device), timeout=5, retries=0)
            second = await collect(target(device), timeout=5, retries=0)
        for result in (first, second):
            assert result.ok, result.message
            assert result.code is None and result.error is None
            assert result.credential_id == 1 and result.attempts == 1
            assert result.key == device.index and result.platform == platform
            assert 0 < result.duration_s < 5
        raw = first.output
        # The configuration is complete: first and last significant lines, no CLI residue.
        assert device.hostname in raw
        stored = [ln for ln in device.config.splitlines() if ln.strip()]
        assert stored[-1] in raw.splitlines()
        assert not re.search(r"--More--|---\(more|\x08|\r|\x1b", raw)
        assert "show running-config" not in raw.splitlines()[:1]
        assert not raw.rstrip().endswith(("#", ">", "$"))
        # Every generated secret is present raw and absent once normalized.
        text = normalize(platform, raw)
        assert device.secrets and all(secret in raw for secret in device.secrets)
        assert not [secret for secret in device.secrets if secret in text]
        assert MASK in text
        # Two collections of an unchanged device hash the same, even where the raw text differs
        # (IOS ntp clock-period and the IOS XR timestamp change on every show).
        assert config_hash(text) == config_hash(second.output, platform)
        if platform in {"cisco_ios", "cisco_xr"}:
            assert first.output != second.output

    run(scenario)


# --- noise and secrets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "platform", ["cisco_ios", "cisco_nxos", "cisco_xr", "juniper_junos", "huawei_vrp", "linux"]
)
def test_hash_ignores_noise_but_not_real_changes(platform: str) -> None:
    async def scenario() -> None:
        async with DeviceFarm(1, platform) as farm:
            device = farm.device(0)
            before = await collect(target(device), timeout=5, retries=0)
            farm.touch(0)  # only timestamps move
            touched = await collect(target(device), timeout=5, retries=0)
            farm.append_config_line(0, "ntp server 10.9.9.9")
            changed = await collect(target(device), timeout=5, retries=0)
        assert before.ok and touched.ok and changed.ok
        noise = [ln for ln in before.output.splitlines() if ln not in touched.output.splitlines()]
        assert noise, "touch() must change some noise line"
        assert config_hash(before.output, platform) == config_hash(touched.output, platform)
        assert config_hash(touched.output, platform) != config_hash(changed.output, platform)
        assert "ntp server 10.9.9.9" in normalize(platform, changed.output)

    run(scenario)


IOS_SAMPLE = """\
Building configuration...

Current configuration : 2345 bytes
!
! Last configuration change at 10:12:01 UTC Mon Mar 4 2024 by admin
! NVRAM config last updated at 10:12:05 UTC Mon Mar 4 2024 by admin
!
version 15.9
hostname R1
enable secret 5 $1$mERr$hx5rVt7rPNoS4wqbXKX7m0
username admin privilege 15 secret 9 $9$abc$def
password encryption aes
snmp-server community s3cr3t RO
snmp-server community wr1te RW 10
snmp-server user u1 g1 v3 auth sha AUTHKEY priv aes 128 PRIVKEY
tacacs-server host 10.0.0.10 key 7 0822455D0A16
key chain OSPF
 key 1
  key-string 7 104D000A0618
line vty 0 4
 password 7 0822455D0A16
ntp clock-period 17179869
end
"""


def test_normalize_masks_only_the_value_and_drops_noise() -> None:
    text = normalize("cisco_ios", IOS_SAMPLE)
    lines = text.splitlines()
    assert lines[0] == "!"  # leading blank line and byte count are gone
    for expected in (
        "enable secret 5 <masked>",
        "username admin privilege 15 secret 9 <masked>",
        "password encryption aes",  # a keyword, not a secret
        "snmp-server community <masked> RO",
        "snmp-server community <masked> RW 10",
        "snmp-server user u1 g1 v3 auth sha <masked> priv aes 128 <masked>",
        "tacacs-server host 10.0.0.10 key 7 <masked>",
        "key chain OSPF",
        " key 1",
        "  key-string 7 <masked>",
        " password 7 <masked>",
    ):
        assert expected in lines
    for gone in ("Last configuration change", "NVRAM config", "clock-period", "Current config"):
        assert gone not in text
    assert "0822455D0A16" not in text and "s3cr3t" not in text
    # Idempotent: normalizing normalized text changes nothing.
    assert normalize("cisco_ios", text) == text
    assert config_hash(IOS_SAMPLE, "cisco_ios") == config_hash(text)


@pytest.mark.parametrize(
    ("platform", "raw", "expected"),
    [
        (
            "juniper_junos",
            "## Last commit: 2024-03-04 10:00:00 UTC by admin\nsystem {\n"
            '    encrypted-password "$6$abc$def"; ## SECRET-DATA\n}\n'
            "snmp {\n    community public {\n        authorization read-only;\n    }\n}\n",
            'system {\n    encrypted-password "<masked>"; ## SECRET-DATA\n}\n'
            "snmp {\n    community <masked> {\n        authorization read-only;\n    }\n}\n",
        ),
        (
            "huawei_vrp",
            "!Last configuration was updated at 2024-03-04 10:00:00+00:00 by admin\n#\n"
            "snmp-agent community read cipher %^%#abc%^%#\n"
            " local-user admin password irreversible-cipher $1c$xyz$\n",
            "#\nsnmp-agent community read cipher <masked>\n"
            " local-user admin password irreversible-cipher <masked>\n",
        ),
        (
            "cisco_nxos",
            "!Command: show running-config\n!Time: Mon Mar  4 10:15:00 2024\n\n"
            "username admin password 5 $5$abc  role network-admin\n",
            "username admin password 5 <masked>  role network-admin\n",
        ),
        (
            "cisco_xr",
            "Mon Mar  4 10:15:00.123 UTC\nBuilding configuration...\n"
            "!! IOS XR Configuration 7.3.2\nusername admin\n secret 10 $6$abc\n",
            "!! IOS XR Configuration 7.3.2\nusername admin\n secret 10 <masked>\n",
        ),
        (
            "arista_eos",
            "! Command: show running-config\n! device: sw1 (vEOS-lab, EOS-4.28.3M)\n"
            "enable password sha512 $6$abc\n",
            "! device: sw1 (vEOS-lab, EOS-4.28.3M)\nenable password sha512 <masked>\n",
        ),
        (
            "linux",
            "!\n! Zebra configuration saved from vty\n!   2024/03/04 10:00:00\n!\n"
            "password zebra\n neighbor 10.0.0.2 password s3cr3t\nDB_PASSWORD=hunter2\n",
            "!\n!\npassword <masked>\n neighbor 10.0.0.2 password <masked>\nDB_PASSWORD=<masked>\n",
        ),
    ],
)
def test_normalize_per_platform(platform: str, raw: str, expected: str) -> None:
    assert normalize(platform, raw) == expected


def test_private_keys_are_masked_everywhere() -> None:
    raw = (
        "key\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA\nAAAAB\n"
        "-----END OPENSSH PRIVATE KEY-----\n"
    )
    text = normalize("linux", raw)
    assert "b3BlbnNzaA" not in text and "BEGIN OPENSSH PRIVATE KEY-----\n<masked>\n-----END" in text


# --- credentials ------------------------------------------------------------------------------


def test_credential_fallback_reports_the_one_that_worked() -> None:
    async def scenario() -> tuple[Result, SimDevice]:
        async with DeviceFarm(1, "cisco_ios", extra_accounts={"backup": "b4ckup"}) as farm:
            farm.refuse(0, "admin")
            creds = [
                Credential(11, "nobody", "x"),
                Credential(12, "admin", "admin"),  # right password, but refused
                Credential(13, "backup", "b4ckup", enable_secret="admin"),
            ]
            return await collect(target(farm.device(0), *creds), timeout=5), farm.device(0)

    result, device = run(scenario)
    assert result.ok, result.message
    assert result.credential_id == 13
    assert result.attempts == 3
    assert result.details["tried_credentials"] == [11, 12, 13]
    assert device.hostname in result.output


def test_all_credentials_refused_is_auth_and_not_retried() -> None:
    async def scenario() -> Result:
        async with DeviceFarm(1, "juniper_junos") as farm:
            creds = [Credential(1, "admin", "wrong"), Credential(2, "root", "wrong")]
            return await collect(target(farm.device(0), *creds), timeout=5, retries=3)

    result = run(scenario)
    assert not result.ok
    assert (result.code, result.error, result.transient) == ("auth", "AuthFailed", False)
    assert result.attempts == 2  # one per credential, no retries
    assert result.credential_id is None
    assert "all 2 credentials refused" in result.message


def test_wrong_enable_secret_is_auth_failed_and_next_credential_is_tried() -> None:
    async def scenario() -> tuple[Result, Result]:
        async with DeviceFarm(1, "cisco_ios", enable_secret="en-secret") as farm:
            device = farm.device(0)
            wrong = Credential(1, "admin", "admin", enable_secret="nope")
            right = Credential(2, "admin", "admin", enable_secret="en-secret")
            only_wrong = await collect(target(device, wrong), timeout=5)
            fallback = await collect(target(device, wrong, right), timeout=5)
            return only_wrong, fallback

    only_wrong, fallback = run(scenario)
    assert (only_wrong.ok, only_wrong.code, only_wrong.error) == (False, "auth", "AuthFailed")
    assert only_wrong.message == "enable secret refused"
    assert only_wrong.attempts == 1
    assert fallback.ok and fallback.credential_id == 2
    assert "enable secret 9 " in fallback.output


def test_enable_secret_defaults_to_the_login_password() -> None:
    async def scenario() -> Result:
        async with DeviceFarm(1, "arista_eos", password="pw1", enable_secret="pw1") as farm:
            return await collect(target(farm.device(0), Credential(5, "admin", "pw1")), timeout=5)

    result = run(scenario)
    assert result.ok and result.credential_id == 5
    assert "enable password sha512" in result.output


# --- failures ---------------------------------------------------------------------------------


def test_closed_port_is_unreachable_after_retries(closed_port: int) -> None:
    tgt = Target("x", "127.0.0.1", closed_port, "cisco_ios", [ADMIN])
    started = time.monotonic()
    result = asyncio.run(collect(tgt, timeout=2, retries=2, backoff=0.05))
    assert time.monotonic() - started < 2
    assert (result.ok, result.code, result.error) == (False, "unreachable", "Unreachable")
    assert result.transient and result.attempts == 3
    assert str(closed_port) in result.message


def test_hanging_device_times_out_within_the_timeout() -> None:
    async def scenario() -> tuple[Result, float]:
        async with DeviceFarm(1, "cisco_ios", interfaces=40) as farm:
            farm.set_hang(0)
            started = time.monotonic()
            result = await collect(target(farm.device(0)), timeout=1.0, retries=0)
            return result, time.monotonic() - started

    result, elapsed = run(scenario)
    assert (result.ok, result.code, result.error) == (False, "timeout", "Timeout")
    assert result.transient
    assert "show running-config" in result.message
    assert 0.9 <= elapsed < 1.5


def test_hanging_device_is_retried_then_reported() -> None:
    async def scenario() -> Result:
        async with DeviceFarm(1, "huawei_vrp") as farm:
            farm.set_hang(0)
            return await collect(target(farm.device(0)), timeout=0.4, retries=1, backoff=0.01)

    result = run(scenario)
    assert result.code == "timeout" and result.attempts == 2
    assert 0.8 <= result.duration_s < 1.5


def test_wrong_platform_is_prompt_not_found() -> None:
    async def scenario() -> Result:
        async with DeviceFarm(1, "cisco_ios") as farm:
            device = farm.device(0)
            return await collect(target(device, platform="huawei_vrp"), timeout=1.0, retries=2)

    result = run(scenario)
    assert (result.code, result.error) == ("prompt_not_found", "PromptNotFound")
    assert not result.transient and result.attempts == 1
    assert "R0001>" in result.message


def test_rejected_command_is_command_failed() -> None:
    async def scenario() -> Result:
        async with DeviceFarm(1, "cisco_nxos") as farm:
            return await collect(target(farm.device(0), command="show bogus"), timeout=5)

    result = run(scenario)
    assert (result.code, result.error) == ("command_failed", "CommandFailed")
    assert "Invalid command" in result.message and result.attempts == 1


def test_unknown_platform_is_a_clear_error() -> None:
    with pytest.raises(UnknownPlatform, match=r"'nokia_foo'.*cisco_ios") as info:
        registry.get_driver("nokia_foo")
    assert isinstance(info.value, DriverError) and info.value.code == "unknown_platform"
    with pytest.raises(UnknownPlatform, match="Netmiko has no SSH driver"):
        registry.get_driver("netmiko:cisco_ios_telnet")
    result = asyncio.run(collect(Target(1, "127.0.0.1", 1, "nokia_foo", [ADMIN])))
    assert (result.ok, result.code) == (False, "unknown_platform")


def test_registry_lookup_order() -> None:
    assert isinstance(registry.get_driver("cisco_ios"), CliDriver)
    forced = registry.get_driver("netmiko:cisco_ios")
    assert isinstance(forced, NetmikoDriver) and forced.device_type == "cisco_ios"
    fallback = registry.get_driver("mikrotik_routeros")  # Netmiko has it, labkeeper does not
    assert isinstance(fallback, NetmikoDriver) and fallback.profile is None
    assert set(PLATFORMS) | {"generic"} <= set(registry.known_platforms())


# --- command override, generic profile, pager -------------------------------------------------


def test_generic_profile_answers_the_pager() -> None:
    async def scenario() -> tuple[Result, SimDevice]:
        # `generic` sends no paging command, so the NX-OS simulator pages with --More--.
        async with DeviceFarm(1, "cisco_nxos", interfaces=30) as farm:
            device = farm.device(0)
            return await collect(target(device, platform="generic"), timeout=5), device

    result, device = run(scenario)
    assert result.ok, result.message
    assert "--More--" not in result.output and "\x08" not in result.output
    # Byte-for-byte the stored configuration, apart from the per-show !Time line.
    assert result.output.rstrip("\n").split("\n")[3:] == device.config.rstrip("\n").split("\n")[3:]


@pytest.mark.parametrize("platform", ["cisco_ios", "juniper_junos", "huawei_vrp", "cisco_xr"])
def test_pager_residue_is_removed_on_every_platform(platform: str) -> None:
    # The same profile without its paging command: the device pages, the session answers.
    paged = replace(PROFILES[platform], name=f"{platform}_paged", paging_commands=())
    register_profile(paged, replace=True)
    try:

        async def scenario() -> tuple[Result, Result]:
            async with DeviceFarm(1, platform, interfaces=30) as farm:
                device = farm.device(0)
                plain = await collect(target(device), timeout=5, retries=0)
                with_pager = await collect(target(device, platform=paged.name), timeout=5)
                return plain, with_pager

        plain, with_pager = run(scenario)
    finally:
        PROFILES.pop(paged.name, None)
    assert plain.ok and with_pager.ok, with_pager.message
    assert not re.search(r"More|more\)|\x08|\x1b|\r", with_pager.output)
    assert normalize(platform, with_pager.output) == normalize(platform, plain.output)


def test_generic_profile_per_device_type_and_command_override() -> None:
    register_profile(generic_profile("lab_server", command="cat /etc/hostname"), replace=True)
    try:

        async def scenario() -> tuple[Result, Result, SimDevice]:
            async with DeviceFarm(1, "linux") as servers, DeviceFarm(1, "cisco_ios") as routers:
                server = servers.device(0)
                by_type = await collect(target(server, platform="lab_server"), timeout=5)
                clock = await collect(target(routers.device(0), command="show clock"), timeout=5)
                return by_type, clock, server

        by_type, clock, server = run(scenario)
    finally:
        PROFILES.pop("lab_server", None)
    assert by_type.ok and by_type.output.strip() == server.hostname
    assert clock.ok and clock.output.strip() == "*10:15:00.000 UTC Mon Mar 4 2024"


# --- many devices -----------------------------------------------------------------------------


def test_collect_many_bounds_concurrency_and_keeps_order() -> None:
    seen: list[Any] = []

    async def on_result(tgt: Target, result: Result) -> None:
        await asyncio.sleep(0)
        seen.append(tgt.key)
        if tgt.key == 3:
            raise RuntimeError("a failing callback must not stop the run")

    async def scenario() -> tuple[list[Result], DeviceFarm]:
        async with DeviceFarm(12, "mixed", latency_ms=40) as farm:
            targets = [target(d) for d in farm.devices]
            results = await collect_many(targets, concurrency=3, timeout=5, on_result=on_result)
            return results, farm

    results, farm = run(scenario)
    assert [r.key for r in results] == list(range(12))
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    assert sorted(seen) == list(range(12))
    assert farm.peak_active == 3
    assert {d.logins for d in farm.devices} == {1}


def test_collect_many_run_timeout_reports_unfinished_devices() -> None:
    reported: dict[Any, str | None] = {}

    def on_result(tgt: Target, result: Result) -> None:
        reported[tgt.key] = result.code

    async def scenario() -> tuple[list[Result], float]:
        async with DeviceFarm(8, "cisco_ios", latency_ms=10) as farm:
            farm.set_hang(1)
            farm.set_hang(5)
            targets = [target(d) for d in farm.devices]
            started = time.monotonic()
            results = await collect_many(
                targets, concurrency=100, timeout=10, run_timeout=1.0, on_result=on_result
            )
            return results, time.monotonic() - started

    results, elapsed = run(scenario)
    assert 1.0 <= elapsed < 2.0
    codes = [r.code for r in results]
    assert codes == [None, "timeout", None, None, None, "timeout", None, None]
    assert "run time limit of 1 s" in results[1].message and results[1].key == 1
    assert reported == dict(enumerate(codes))


def test_collect_many_mixes_failures_without_raising(closed_port: int) -> None:
    async def scenario() -> list[Result]:
        async with DeviceFarm(2, "linux") as farm:
            targets = [
                target(farm.device(0)),
                Target("closed", "127.0.0.1", closed_port, "linux", [ADMIN]),
                target(farm.device(1), Credential(9, "admin", "bad")),
                Target("unknown", "127.0.0.1", closed_port, "no_such_os", [ADMIN]),
                Target("nocreds", "127.0.0.1", farm.device(0).port, "linux", []),
            ]
            return await collect_many(targets, concurrency=2, timeout=3, backoff=0.01)

    results = run(scenario)
    assert [r.code for r in results] == [
        None,
        "unreachable",
        "auth",
        "unknown_platform",
        "auth",
    ]
    assert results[4].message == "no credentials to try"
    assert asyncio.run(collect_many([])) == []


# --- Netmiko fallback -------------------------------------------------------------------------


NETMIKO_TYPES = {
    "cisco_ios": "cisco_ios",
    "cisco_nxos": "cisco_nxos",
    "cisco_xr": "cisco_xr",
    "arista_eos": "arista_eos",
    "juniper_junos": "juniper_junos",
    "huawei_vrp": "huawei",
    "linux": "linux",
}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("platform", PLATFORMS)
def test_netmiko_prefix_collects_the_same_configuration(platform: str) -> None:
    # Netmiko's own drivers accept the simulator and agree with the native driver, which checks
    # both the simulator's realism and the `netmiko:` path of the registry and of normalize().
    netmiko_platform = "netmiko:" + NETMIKO_TYPES[platform]

    async def scenario() -> tuple[Result, Result]:
        async with DeviceFarm(1, platform) as farm:
            device = farm.device(0)
            native = await collect(target(device), timeout=10, retries=0)
            via_netmiko = await collect(
                target(device, platform=netmiko_platform), timeout=10, retries=0
            )
            return native, via_netmiko

    native, via_netmiko = run(scenario, limit=30)
    assert native.ok and via_netmiko.ok, via_netmiko.message
    assert via_netmiko.credential_id == 1
    assert config_hash(via_netmiko.output, netmiko_platform) == config_hash(native.output, platform)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_platform_without_profile_falls_back_to_netmiko() -> None:
    async def scenario() -> tuple[Result, Result]:
        # `cisco_xe` has no labkeeper profile; Netmiko's driver of that name talks IOS.
        async with DeviceFarm(1, "cisco_ios", enable_secret="en") as farm:
            device = farm.device(0)
            cred = Credential(3, "admin", "admin", enable_secret="en")
            ok = await collect(target(device, cred, platform="cisco_xe"), timeout=10, retries=0)
            refused = await collect(
                target(device, Credential(4, "admin", "nope"), platform="cisco_xe"),
                timeout=10,
                retries=0,
            )
            return ok, refused

    ok, refused = run(scenario, limit=30)
    assert ok.ok, ok.message
    assert ok.credential_id == 3 and "hostname R0001" in ok.output
    assert (refused.code, refused.error) == ("auth", "AuthFailed")


def test_driver_error_codes_are_stable() -> None:
    from labkeeper.drivers import base

    expected = {
        "AuthFailed": ("auth", False),
        "Unreachable": ("unreachable", True),
        "Timeout": ("timeout", True),
        "PromptNotFound": ("prompt_not_found", False),
        "CommandFailed": ("command_failed", False),
    }
    for name, (code, transient) in expected.items():
        cls = getattr(base, name)
        assert issubclass(cls, base.DriverError)
        assert (cls.code, cls.transient) == (code, transient)
        assert base.ERROR_CODES[code] is cls
    assert "pw" not in repr(Credential(1, "u", "pw", enable_secret="pw"))
    assert isinstance(AuthFailed("x"), DriverError)


def test_ssh_key_credential() -> None:
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519")
    private = key.export_private_key().decode()
    public = key.export_public_key().decode()
    other = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()

    async def scenario() -> tuple[Result, Result, Result]:
        async with DeviceFarm(1, "cisco_xr", authorized_keys={"backup": [public]}) as farm:
            device = farm.device(0)
            by_key = await collect(target(device, Credential(7, "backup", "", ssh_key=private)))
            wrong_key = await collect(target(device, Credential(8, "backup", "", ssh_key=other)))
            garbage = await collect(target(device, Credential(9, "backup", "", ssh_key="junk")))
            return by_key, wrong_key, garbage

    by_key, wrong_key, garbage = run(scenario)
    assert by_key.ok and by_key.credential_id == 7, by_key.message
    assert wrong_key.code == "auth"
    assert garbage.code == "auth" and "unusable private key" in garbage.message
