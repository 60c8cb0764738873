"""The SSH device simulator, driven by a plain asyncssh client over real SSH on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import inspect
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncssh
import pytest

from labkeeper.drivers.base import Credential, Target
from labkeeper.drivers.cli import collect_many
from labkeeper.simulators.devices import (
    PLATFORMS,
    DeviceFarm,
    DeviceProcesses,
    send_control,
    serve_devices,
)


def run(scenario: Callable[..., Awaitable[Any]], *args: Any, limit: float = 20.0) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(scenario(*args), limit)

    return asyncio.run(main())


async def connect(port: int, username: str = "admin", password: str = "admin") -> Any:
    return await asyncssh.connect(
        "127.0.0.1",
        port,
        username=username,
        password=password,
        known_hosts=None,
        client_keys=None,
        agent_path=None,
        config=[],
    )


class Shell:
    """A minimal interactive client: write text, read until a regex matches the output."""

    def __init__(self, conn: Any, process: Any) -> None:
        self.conn, self.process, self.buffer = conn, process, ""

    @classmethod
    async def open(cls, port: int, **kw: Any) -> Shell:
        conn = await connect(port, **kw)
        return cls(conn, await conn.create_process(term_type="vt100"))

    def send(self, text: str) -> None:
        self.process.stdin.write(text)

    async def until(self, pattern: str, timeout: float = 3.0) -> str:
        async with asyncio.timeout(timeout):
            while not re.search(pattern, self.buffer):
                chunk = await self.process.stdout.read(65536)
                if not chunk:
                    raise EOFError(self.buffer)
                self.buffer += chunk
        out, self.buffer = self.buffer, ""
        return out

    async def command(self, line: str, prompt: str) -> str:
        self.send(line + "\n")
        return await self.until(re.escape(prompt) + r"\s*$")

    def close(self) -> None:
        self.conn.close()


PROMPTS = {
    "cisco_ios": ("R0001>", "R0001#"),
    "cisco_nxos": ("N0001#", "N0001#"),
    "cisco_xr": ("RP/0/RP0/CPU0:XR0001#", "RP/0/RP0/CPU0:XR0001#"),
    "arista_eos": ("eos0001>", "eos0001#"),
    "juniper_junos": ("admin@j0001> ", "admin@j0001> "),
    "huawei_vrp": ("<HW0001>", "<HW0001>"),
    "linux": ("admin@l0001:~$ ", "admin@l0001:~$ "),
}
PAGING = {
    "cisco_ios": ("terminal length 0", "show running-config", "--More--"),
    "cisco_nxos": ("terminal length 0", "show running-config", "--More--"),
    "cisco_xr": ("terminal length 0", "show running-config", "--More--"),
    "arista_eos": ("terminal length 0", "show running-config", "--More--"),
    "juniper_junos": ("set cli screen-length 0", "show configuration", "---(more)---"),
    "huawei_vrp": ("screen-length 0 temporary", "display current-configuration", "---- More ----"),
}


@pytest.mark.parametrize("platform", sorted(PAGING))
def test_prompt_pager_and_paging_off(platform: str) -> None:
    user_prompt, prompt = PROMPTS[platform]
    paging_off, show, pager = PAGING[platform]

    async def scenario() -> tuple[str, str, str]:
        async with DeviceFarm(1, platform, interfaces=20, enable_secret="en") as farm:
            shell = await Shell.open(farm.ports[0])
            await shell.until(re.escape(user_prompt) + r"\s*$")
            if user_prompt != prompt:
                shell.send("enable\n")
                await shell.until(r"Password: $")
                await shell.command("en", prompt)
            shell.send(show + "\n")
            paged = await shell.until(re.escape(pager) + r"\s*$")
            rest = ""
            while True:
                shell.send(" ")
                chunk = await shell.until(rf"(?:{re.escape(pager)}|{re.escape(prompt)})\s*$")
                rest += chunk
                if not chunk.rstrip().endswith(pager):
                    break
            await shell.command(paging_off, prompt)
            unpaged = await shell.command(show, prompt)
            shell.close()
            return paged, rest, unpaged

    paged, rest, unpaged = run(scenario)
    assert paged.count("\r\n") < 30  # one page, then the pager prompt
    assert pager not in unpaged
    assert "\r\n" in unpaged and "\n" not in unpaged.replace("\r\n", "")
    # The last page ends with the configuration's last line and the prompt.
    assert unpaged.rstrip().endswith(prompt.strip()) and rest.rstrip().endswith(prompt.strip())


@pytest.mark.parametrize("platform", PLATFORMS)
def test_prompt_of_every_platform(platform: str) -> None:
    user_prompt, _ = PROMPTS[platform]

    async def scenario() -> str:
        async with DeviceFarm(1, platform) as farm:
            shell = await Shell.open(farm.ports[0])
            banner = await shell.until(re.escape(user_prompt) + "$")
            out = await shell.command("no-such-command", user_prompt)
            shell.close()
            return banner + out

    text = run(scenario)
    assert text.endswith(user_prompt)
    assert "no-such-command\r\n" in text  # echoed like a terminal
    assert re.search(r"Invalid|unknown command|Unrecognized|command not found", text)


def test_enable_asks_three_times_then_bad_secrets() -> None:
    async def scenario() -> list[str]:
        async with DeviceFarm(1, "cisco_ios", enable_secret="s3cret") as farm:
            shell = await Shell.open(farm.ports[0])
            await shell.until(r"R0001>$")
            out = [await shell.command("show running-config", "R0001>")]
            shell.send("enable\n")
            out.append(await shell.until(r"Password: $"))
            for _ in range(2):
                shell.send("wrong\n")
                out.append(await shell.until(r"Password: $"))
            shell.send("wrong-again\n")
            out.append(await shell.until(r"R0001>$"))
            shell.send("enable\n")
            await shell.until(r"Password: $")
            out.append(await shell.command("s3cret", "R0001#"))
            shell.close()
            return out

    user_show, first, second, third, bad, good = run(scenario)
    assert "% Invalid input detected" in user_show
    assert first.startswith("enable")
    assert second == third == "\r\nPassword: "  # the Enter, then the question again
    assert "% Bad secrets" in bad and "wrong" not in "".join([second, third, bad])
    assert good.endswith("R0001#") and "s3cret" not in good


def test_line_editing_backspace_and_ctrl_c() -> None:
    async def scenario() -> tuple[str, str]:
        async with DeviceFarm(1, "cisco_nxos") as farm:
            shell = await Shell.open(farm.ports[0])
            await shell.until(r"N0001#$")
            edited = await shell.command("show clxx\x7f\x7fock", "N0001#")
            shell.send("show garbage\x03")
            cancelled = await shell.until(r"N0001#$")
            shell.close()
            return edited, cancelled

    edited, cancelled = run(scenario)
    assert "\b \b\b \b" in edited and "10:15:00.000 UTC" in edited
    assert cancelled.endswith("^C\r\nN0001#") and "Invalid" not in cancelled


def test_exec_requests_run_one_command() -> None:
    async def scenario() -> tuple[Any, Any]:
        async with DeviceFarm(1, "cisco_xr") as farm:
            async with await connect(farm.ports[0]) as conn:
                show = await conn.run("show running-config")
                bad = await conn.run("show bogus")
            return show, bad

    show, bad = run(scenario)
    assert show.exit_status == 0 and "hostname XR0001" in show.stdout
    assert not show.stdout.rstrip().endswith("#")
    assert bad.exit_status == 1 and "Invalid input" in bad.stdout


def test_linux_cat_and_hostname() -> None:
    async def scenario() -> tuple[str, str]:
        async with DeviceFarm(1, "linux") as farm:
            shell = await Shell.open(farm.ports[0])
            prompt = "admin@l0001:~$ "
            await shell.until(re.escape(prompt) + "$")
            missing = await shell.command("cat /etc/hostname /etc/nope", prompt)
            quiet = await shell.command("cat /etc/nope /etc/hostname 2>/dev/null", prompt)
            shell.close()
            return missing, quiet

    missing, quiet = run(scenario)
    assert "l0001\r\n" in missing and "cat: /etc/nope: No such file or directory" in missing
    assert "No such file" not in quiet and "l0001\r\n" in quiet


# --- changing a running device ----------------------------------------------------------------


def test_control_from_another_process_via_ssh() -> None:
    async def scenario() -> dict[str, Any]:
        async with DeviceFarm(1, "cisco_ios", extra_accounts={"viewer": "v"}) as farm:
            port, device = farm.ports[0], farm.device(0)
            out: dict[str, Any] = {}
            stamp = re.compile(r"^! Last configuration change at .*$", re.M)
            before = stamp.findall(device.config)
            await send_control(port, "append ntp server 10.9.9.9")
            out["appended"] = device.config.splitlines()[-2:]
            await send_control(port, "set-hostname core-1")
            out["hostname"] = device.hostname
            out["stamp_changed"] = stamp.findall(device.config) != before
            body = device.config
            await send_control(port, "touch")
            out["touch_only_noise"] = [
                a
                for a, b in zip(body.splitlines(), device.config.splitlines(), strict=True)
                if a != b
            ]
            out["deleted"] = await send_control(port, "delete snmp-server community")
            text = "hostname core-2\nend\n"
            await send_control(port, "set-config-b64 " + base64.b64encode(text.encode()).decode())
            out["replaced"] = device.config
            out["shown"] = await send_control(port, "show")
            with pytest.raises(RuntimeError, match="Permission denied"):
                await send_control(port, "touch", username="viewer", password="v")
            with pytest.raises(RuntimeError, match="unknown or malformed"):
                await send_control(port, "explode")
            await send_control(port, "refuse viewer")
            with pytest.raises(asyncssh.PermissionDenied):
                await connect(port, "viewer", "v")
            await send_control(port, "allow viewer")
            (await connect(port, "viewer", "v")).close()
            await send_control(port, "hang on")
            out["hang"] = device.hang
            # Typed at the prompt of an interactive session works too.
            shell = await Shell.open(port)
            await shell.until(r"core-1>$")  # the prompt follows set-hostname
            out["typed"] = await shell.command("labkeeper-sim hang off", "core-1>")
            out["unhung"] = not device.hang
            shell.close()
            return out

    out = run(scenario)
    assert out["appended"] == ["ntp server 10.9.9.9", "end"]
    assert out["hostname"] == "core-1" and out["stamp_changed"]
    assert len(out["touch_only_noise"]) == 2
    assert all("Last configuration change" in ln or "NVRAM" in ln for ln in out["touch_only_noise"])
    assert out["deleted"] == "OK 2 lines removed\n"
    assert out["replaced"] == "hostname core-2\nend\n"
    assert out["shown"] == "hostname core-2\nend\n"
    assert out["hang"] and "OK" in out["typed"] and out["unhung"]


def test_set_hostname_changes_the_prompt() -> None:
    async def scenario() -> str:
        async with DeviceFarm(1, "huawei_vrp") as farm:
            farm.set_hostname(0, "PE-7")
            shell = await Shell.open(farm.ports[0])
            banner = await shell.until(r"<PE-7>$")
            await shell.command("screen-length 0 temporary", "<PE-7>")
            out = await shell.command("display current-configuration", "<PE-7>")
            shell.close()
            return banner + out

    assert "sysname PE-7" in run(scenario)


def test_hang_mode_stops_output_midway() -> None:
    async def scenario() -> str:
        async with DeviceFarm(1, "cisco_nxos", interfaces=20) as farm:
            farm.set_hang(0)
            shell = await Shell.open(farm.ports[0])
            await shell.until(r"N0001#$")
            await shell.command("terminal length 0", "N0001#")
            shell.send("show running-config\n")
            with pytest.raises(TimeoutError):
                await shell.until(r"N0001#\s*$", timeout=0.5)
            partial = shell.buffer
            shell.send("\n\n")
            with pytest.raises(TimeoutError):
                await shell.until(r"N0001#\s*$", timeout=0.3)
            shell.close()
            return partial

    partial = run(scenario)
    assert "hostname N0001" in partial and "router bgp" not in partial


def test_latency_delays_every_command() -> None:
    async def scenario() -> float:
        async with DeviceFarm(1, "cisco_nxos", latency_ms=150) as farm:
            shell = await Shell.open(farm.ports[0])
            await shell.until(r"N0001#$")
            started = time.monotonic()
            # Type-ahead: both commands are sent at once and answered in order.
            shell.send("show clock\nterminal length 0\n")
            await shell.until(r"terminal length 0\r\nN0001#$")
            shell.close()
            return time.monotonic() - started

    assert 0.3 <= run(scenario) < 1.0


def test_refused_users_and_extra_accounts() -> None:
    async def scenario() -> None:
        async with DeviceFarm(
            1, "linux", extra_accounts={"ops": "ops-pw"}, refused_users=["admin"]
        ) as farm:
            with pytest.raises(asyncssh.PermissionDenied):
                await connect(farm.ports[0])
            with pytest.raises(asyncssh.PermissionDenied):
                await connect(farm.ports[0], "ops", "wrong")
            async with await connect(farm.ports[0], "ops", "ops-pw") as conn:
                result = await conn.run("hostname")
            assert result.stdout == "l0001\n"  # no PTY, no CR
            farm.allow(0, "admin")
            (await connect(farm.ports[0])).close()
            assert farm.device(0).logins == 2

    run(scenario)


# --- farms ------------------------------------------------------------------------------------


def test_ports_ephemeral_or_from_port_base() -> None:
    async def scenario() -> tuple[list[int], list[int], int]:
        async with DeviceFarm(5, "mixed") as farm:
            ephemeral = farm.ports
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        base = probe.getsockname()[1]
        probe.close()
        async with DeviceFarm(1, "cisco_ios", port_base=base - 3, first_index=3) as farm:
            fixed = farm.ports
        return ephemeral, fixed, base

    ephemeral, fixed, base = run(scenario)
    assert len(set(ephemeral)) == 5 and all(p > 0 for p in ephemeral)
    assert fixed == [base]


def test_configs_are_realistic_and_distinct() -> None:
    farm = DeviceFarm(len(PLATFORMS) * 2, "mixed")
    hostnames = [d.hostname for d in farm.devices]
    assert len(set(hostnames)) == len(hostnames)
    assert [d.platform for d in farm.devices[: len(PLATFORMS)]] == list(PLATFORMS)
    for device in farm.devices:
        assert len(device.config) > 1500
        assert len(device.secrets) >= 3
        assert all(secret in device.config for secret in device.secrets)
    assert farm.devices[0].config != farm.devices[len(PLATFORMS)].config


def test_only_loopback_and_known_platforms() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        DeviceFarm(1, host="0.0.0.0")
    with pytest.raises(ValueError, match="unknown simulated platform"):
        DeviceFarm(1, "os2")


def test_start_of_many_devices_takes_well_under_a_second_per_hundred() -> None:
    async def scenario() -> tuple[float, int]:
        started = time.monotonic()
        farm = DeviceFarm(400, "mixed")
        await farm.start()
        elapsed = time.monotonic() - started
        ports = len(set(farm.ports))
        await farm.stop()
        return elapsed, ports

    elapsed, ports = run(scenario)
    assert ports == 400
    assert elapsed < 4.0


def test_device_processes_shard_and_serve() -> None:
    farm = DeviceProcesses(6, "mixed", processes=2, port_base=0)
    ports = farm.start(timeout=60)
    try:
        assert len(ports) == len(set(ports)) == 6
        targets = [
            Target(
                i,
                "127.0.0.1",
                port,
                PLATFORMS[i % len(PLATFORMS)],
                [Credential(1, "admin", "admin")],
            )
            for i, port in enumerate(ports)
        ]
        results = asyncio.run(collect_many(targets, timeout=5, retries=0))
        assert all(r.ok for r in results), [r.message for r in results]
        # Devices are numbered across shards, as if one process served them all.
        assert "hostname R0001" in results[0].output and "sysname HW0006" in results[5].output
    finally:
        farm.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", ports[0]), timeout=1):
        pass


def test_serve_devices_takes_the_cli_arguments() -> None:
    params = inspect.signature(serve_devices).parameters
    assert list(params) == [
        "count",
        "platform",
        "port_base",
        "username",
        "password",
        "latency_ms",
        "processes",
    ]
