"""Simulated SSH network devices on 127.0.0.1, for the demo, the tests and the benchmarks.

Each device is an asyncssh server with its own port that behaves like one of the profiled
platforms: cisco_ios, cisco_nxos, cisco_xr, arista_eos, juniper_junos, huawei_vrp, linux (or
`mixed`, which cycles through them). It shows the platform's prompt, echoes what is typed, asks
for the enable secret on IOS and EOS (three tries, then `% Bad secrets`), accepts the platform's
paging-off command and pages its output (`--More--`, `---(more)---`, `---- More ----`) until
then, and answers the configuration command (`show running-config`, `show configuration`,
`display current-configuration`, `cat /etc/...`) with a generated configuration full of noise
lines (timestamps, `ntp clock-period`, byte counts) and secrets (enable secrets, SNMP
communities, keys).

In-process API: `DeviceFarm` (async `start()` / `stop()`, or `async with`), then
`farm.ports[i]`, `set_config(i, text)`, `append_config_line(i, line)`, `set_hostname(i, name)`,
`delete_config_lines(i, text)`, `touch(i)` (only the noise changes), `set_hang(i, True)`
(the next configuration stops halfway and the device never answers again), `refuse(i, user)`.
Logins are `username`/`password` plus `extra_accounts`, and public keys in `authorized_keys`;
the enable secret is the password unless `enable_secret` is given. On linux devices the
configuration that changes is /etc/frr/frr.conf. `port_base=0` (the default) binds every
device to a free ephemeral port, which is what the tests use so parallel runs never collide.

Changing a running device from another process: log in as the farm's user (admin by default)
and run `labkeeper-sim VERB ...`, either as an SSH exec command or typed at the prompt:

    ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -p 10022 admin@127.0.0.1 \
        'labkeeper-sim append ntp server 10.9.9.9'

    labkeeper-sim set-hostname NAME          rename (prompt and configuration)
    labkeeper-sim append LINE...             add a line before `end` / `return`
    labkeeper-sim delete TEXT...             remove every line containing TEXT
    labkeeper-sim set-config-b64 BASE64      replace the whole configuration (UTF-8, base64)
    labkeeper-sim touch                      change only the noise (timestamps)
    labkeeper-sim hang on|off                stop output midway from the next command on
    labkeeper-sim refuse USER | allow USER   make logins as USER fail / work again
    labkeeper-sim show                       print the stored configuration

From Python, `await send_control(port, "append ntp server 10.9.9.9")` does the same.
Changes live in memory only: a restarted simulator starts from the generated configuration.

`serve_devices(...)` (behind `labkeeper simulate devices`) shards the devices over OS processes
and blocks until Ctrl-C or SIGTERM; `DeviceProcesses` does the same without blocking
(benchmarks). Shards are started with the `spawn` method, so a script that uses them needs the
usual `if __name__ == "__main__":` guard; they exit by themselves if their parent dies.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import multiprocessing
import os
import queue as queue_module
import random
import re
import shlex
import signal
import string
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncssh

__all__ = [
    "PLATFORMS",
    "DeviceFarm",
    "DeviceProcesses",
    "SimDevice",
    "send_control",
    "serve_devices",
]

PLATFORMS = (
    "cisco_ios",
    "cisco_nxos",
    "cisco_xr",
    "arista_eos",
    "juniper_junos",
    "huawei_vrp",
    "linux",
)
LOOPBACK = "127.0.0.1"
PAGE_LINES = 23
CONTROL_VERB = "labkeeper-sim"
LINUX_CONFIG_FILE = "/etc/frr/frr.conf"


@functools.cache
def _host_key() -> asyncssh.SSHKey:
    # One key per process, generated once: key generation per device would make start-up of a
    # thousand devices slow, and nothing here needs distinct host keys.
    return asyncssh.generate_private_key("ssh-ed25519")


# --------------------------------------------------------------------------------------------
# Platform behaviour
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Personality:
    """How one platform's CLI looks from the outside."""

    platform: str
    hostname_prefix: str
    user_prompt: str
    priv_prompt: str
    needs_enable: bool
    paging_off: dict[str, str]
    config_commands: frozenset[str]
    canned: dict[str, str]
    pager: str
    pager_erase: str
    invalid: str
    exit_commands: frozenset[str] = frozenset({"exit", "quit", "logout"})
    blank_before_prompt: bool = False


_CISCO_ERASE = "\b" * 10 + " " * 10 + "\b" * 10
_CISCO_CANNED = {
    "terminal width 511": "",
    "terminal width 512": "",
    "show clock": "*10:15:00.000 UTC Mon Mar 4 2024\n",
}

PERSONALITIES: dict[str, Personality] = {
    "cisco_ios": Personality(
        platform="cisco_ios",
        hostname_prefix="R",
        user_prompt="{host}>",
        priv_prompt="{host}#",
        needs_enable=True,
        paging_off={"terminal length 0": "", "term len 0": ""},
        config_commands=frozenset({"show running-config", "show run", "sh run"}),
        canned=_CISCO_CANNED,
        pager=" --More-- ",
        pager_erase=_CISCO_ERASE,
        invalid="{caret}\n% Invalid input detected at '^' marker.\n",
    ),
    "cisco_nxos": Personality(
        platform="cisco_nxos",
        hostname_prefix="N",
        user_prompt="{host}#",
        priv_prompt="{host}#",
        needs_enable=False,
        paging_off={"terminal length 0": ""},
        config_commands=frozenset({"show running-config", "show run"}),
        canned=_CISCO_CANNED,
        pager=" --More-- ",
        pager_erase=_CISCO_ERASE,
        invalid="{caret}\n% Invalid command at '^' marker.\n",
    ),
    "cisco_xr": Personality(
        platform="cisco_xr",
        hostname_prefix="XR",
        user_prompt="RP/0/RP0/CPU0:{host}#",
        priv_prompt="RP/0/RP0/CPU0:{host}#",
        needs_enable=False,
        paging_off={"terminal length 0": ""},
        config_commands=frozenset({"show running-config", "show run"}),
        canned=_CISCO_CANNED,
        pager=" --More-- ",
        pager_erase=_CISCO_ERASE,
        invalid="{caret}\n% Invalid input detected at '^' marker.\n",
    ),
    "arista_eos": Personality(
        platform="arista_eos",
        hostname_prefix="eos",
        user_prompt="{host}>",
        priv_prompt="{host}#",
        needs_enable=True,
        paging_off={"terminal length 0": "Pagination disabled.\n"},
        config_commands=frozenset({"show running-config", "show run"}),
        canned={**_CISCO_CANNED, "terminal width 511": "Width set to 511 columns.\n"},
        pager=" --More-- ",
        pager_erase=_CISCO_ERASE,
        invalid="% Invalid input\n",
    ),
    "juniper_junos": Personality(
        platform="juniper_junos",
        hostname_prefix="j",
        user_prompt="{user}@{host}> ",
        priv_prompt="{user}@{host}> ",
        needs_enable=False,
        paging_off={"set cli screen-length 0": "Screen length set to 0\n"},
        config_commands=frozenset({"show configuration", "show configuration | no-more"}),
        canned={
            "set cli screen-width 0": "Screen width set to 0\n",
            "set cli screen-width 511": "Screen width set to 511\n",
            "set cli complete-on-space off": "Disabling complete-on-space\n",
        },
        pager="---(more)---",
        pager_erase="\r" + " " * 40 + "\r",
        invalid="{caret}\nunknown command.\n",
        blank_before_prompt=True,
    ),
    "huawei_vrp": Personality(
        platform="huawei_vrp",
        hostname_prefix="HW",
        user_prompt="<{host}>",
        priv_prompt="<{host}>",
        needs_enable=False,
        paging_off={
            "screen-length 0 temporary": "Info: The configuration takes effect on the current "
            "user terminal interface only.\n"
        },
        config_commands=frozenset({"display current-configuration", "dis cur"}),
        canned={},
        pager="  ---- More ----",
        pager_erase="\x1b[42D" + " " * 42 + "\x1b[42D",
        invalid="{caret}\nError: Unrecognized command found at '^' position.\n",
        exit_commands=frozenset({"quit", "exit"}),
    ),
    "linux": Personality(
        platform="linux",
        hostname_prefix="l",
        user_prompt="{user}@{host}:~$ ",
        priv_prompt="{user}@{host}:~$ ",
        needs_enable=False,
        paging_off={},
        config_commands=frozenset(),
        canned={},
        pager="",
        pager_erase="",
        invalid="-bash: {word}: command not found\n",
    ),
}


# --------------------------------------------------------------------------------------------
# Generated configurations
# --------------------------------------------------------------------------------------------


def _word(rng: random.Random, n: int = 10) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def _hex(rng: random.Random, n: int = 16) -> str:
    return "".join(rng.choice("0123456789ABCDEF") for _ in range(n))


def _crypt(rng: random.Random, prefix: str) -> str:
    return f"{prefix}{_word(rng, 8)}${_word(rng, 22)}"


def _ios_time(ts: datetime) -> str:
    return ts.strftime("%H:%M:%S UTC %a %b %-d %Y")


def _ctime(ts: datetime) -> str:
    return ts.strftime("%a %b %e %H:%M:%S %Y")


@dataclass
class _Gen:
    rng: random.Random
    hostname: str
    index: int
    interfaces: int
    secrets: list[str] = field(default_factory=list)

    def secret(self, value: str) -> str:
        self.secrets.append(value)
        return value

    def peer(self, i: int) -> str:
        return f"10.{(self.index // 250) % 250}.{self.index % 250}.{i * 4 + 1}"


def _gen_ios(g: _Gen, ts: datetime) -> str:
    rng = g.rng
    out = [
        "Building configuration...",
        "",
        "Current configuration : 0 bytes",
        "!",
        f"! Last configuration change at {_ios_time(ts)} by admin",
        f"! NVRAM config last updated at {_ios_time(ts)} by admin",
        "!",
        "version 15.9",
        "service timestamps debug datetime msec",
        "service timestamps log datetime msec",
        "service password-encryption",
        "!",
        f"hostname {g.hostname}",
        "!",
        "boot-start-marker",
        "boot-end-marker",
        "!",
        f"enable secret 9 {g.secret(_crypt(rng, '$9$'))}",
        "!",
        "aaa new-model",
        "aaa authentication login default local",
        "aaa authorization exec default local",
        "!",
        "ip domain name lab.example",
        "ip cef",
        "no ipv6 cef",
        "!",
        f"username admin privilege 15 secret 9 {g.secret(_crypt(rng, '$9$'))}",
        f"username backup privilege 15 password 7 {g.secret(_hex(rng, 14))}",
        "!",
        "key chain OSPF-KEYS",
        " key 1",
        f"  key-string 7 {g.secret(_hex(rng, 18))}",
        "!",
        "interface Loopback0",
        f" ip address 10.255.{g.index % 250}.{g.index % 200 + 1} 255.255.255.255",
        "!",
    ]
    ospf_key = g.secret(_hex(rng, 16))
    for i in range(g.interfaces):
        out += [
            f"interface GigabitEthernet0/{i}",
            f" description link to lab-sw{rng.randint(1, 40):02d} port {rng.randint(1, 48)}",
        ]
        if rng.random() < 0.2:
            out += [" no ip address", " shutdown"]
        else:
            out += [
                f" ip address {g.peer(i)} 255.255.255.252",
                " ip ospf authentication message-digest",
                f" ip ospf message-digest-key 1 md5 7 {ospf_key}",
            ]
        out += [" negotiation auto", "!"]
    out += [
        "router ospf 1",
        f" router-id 10.255.{g.index % 250}.{g.index % 200 + 1}",
        " area 0 authentication message-digest",
        " network 10.0.0.0 0.255.255.255 area 0",
        "!",
        f"router bgp {65000 + g.index % 500}",
        " bgp log-neighbor-changes",
        " neighbor 10.0.0.2 remote-as 65535",
        f" neighbor 10.0.0.2 password 7 {g.secret(_hex(rng, 20))}",
        "!",
        "ip forward-protocol nd",
        "ip ssh version 2",
        "!",
        "ip access-list standard MGMT",
        " permit 10.0.0.0 0.255.255.255",
        "!",
        f"snmp-server community {g.secret(_word(rng))} RO",
        f"snmp-server community {g.secret(_word(rng))} RW",
        f"snmp-server location Lab rack {rng.randint(1, 20)}",
        f"tacacs-server host 10.0.0.10 key 7 {g.secret(_hex(rng, 18))}",
        "!",
        "line con 0",
        " logging synchronous",
        "line vty 0 4",
        f" password 7 {g.secret(_hex(rng, 12))}",
        " transport input ssh",
        "!",
        "ntp clock-period 17179869",
        "ntp server 10.0.0.1",
        "!",
        "end",
    ]
    return "\n".join(out) + "\n"


def _gen_nxos(g: _Gen, ts: datetime) -> str:
    rng = g.rng
    out = [
        "!Command: show running-config",
        f"!Running configuration last done at: {_ctime(ts)}",
        f"!Time: {_ctime(ts)}",
        "",
        "version 9.3(8) Bios:version 05.45",
        f"hostname {g.hostname}",
        f"vdc {g.hostname} id 1",
        "  limit-resource vlan minimum 16 maximum 4094",
        "",
        "feature ospf",
        "feature bgp",
        "feature interface-vlan",
        "feature lacp",
        "",
        f"username admin password 5 {g.secret(_crypt(rng, '$5$'))}  role network-admin",
        f"username backup password 5 {g.secret(_crypt(rng, '$5$'))}  role network-operator",
        "ip domain-lookup",
        f"snmp-server user admin network-admin auth md5 0x{g.secret(_hex(rng, 32).lower())}"
        f" priv 0x{g.secret(_hex(rng, 32).lower())} localizedkey",
        f"snmp-server community {g.secret(_word(rng))} group network-operator",
        f'tacacs-server key 7 "{g.secret(_word(rng, 12))}"',
        "ntp server 10.0.0.1 use-vrf management",
        "",
        "vlan 1,10,20",
        "",
    ]
    for i in range(g.interfaces):
        out += [
            f"interface Ethernet1/{i + 1}",
            f"  description to lab-sw{rng.randint(1, 40):02d}",
            "  no switchport",
            f"  ip address {g.peer(i)}/30",
            "  ip router ospf 1 area 0.0.0.0",
            "  no shutdown",
            "",
        ]
    out += [
        "interface mgmt0",
        "  vrf member management",
        f"  ip address 192.168.{g.index // 250 % 250}.{g.index % 250 + 1}/16",
        "line console",
        "line vty",
        "router ospf 1",
        f"  router-id 10.255.0.{g.index % 250 + 1}",
        f"router bgp {65000 + g.index % 500}",
        "  neighbor 10.0.0.2",
        "    remote-as 65535",
        f"    password 3 {g.secret(_hex(rng, 16).lower())}",
        "",
    ]
    return "\n".join(out) + "\n"


def _gen_xr(g: _Gen, ts: datetime) -> str:
    rng = g.rng
    out = [
        "Building configuration...",
        "!! IOS XR Configuration 7.3.2",
        f"!! Last configuration change at {_ctime(ts)} by admin",
        "!",
        f"hostname {g.hostname}",
        "clock timezone UTC 0",
        "username admin",
        " group root-lr",
        " group cisco-support",
        f" secret 10 {g.secret(_crypt(rng, '$6$'))}",
        "!",
        "key chain ISIS-KEYS",
        " key 1",
        f"  key-string password {g.secret(_hex(rng, 14))}",
        "  cryptographic-algorithm HMAC-MD5",
        " !",
        "!",
        "interface Loopback0",
        f" ipv4 address 10.255.{g.index % 250}.1 255.255.255.255",
        "!",
    ]
    for i in range(g.interfaces):
        out += [
            f"interface GigabitEthernet0/0/0/{i}",
            f" description to lab-sw{rng.randint(1, 40):02d}",
            f" ipv4 address {g.peer(i)} 255.255.255.252",
            "!",
        ]
    out += [
        "router isis CORE",
        " is-type level-2-only",
        f" net 49.0001.0000.0000.{g.index % 10000:04d}.00",
        f" lsp-password hmac-md5 encrypted {g.secret(_hex(rng, 16))}",
        " interface GigabitEthernet0/0/0/0",
        "  point-to-point",
        "  address-family ipv4 unicast",
        "  !",
        " !",
        "!",
        f"snmp-server community {g.secret(_word(rng))} RO",
        "ssh server v2",
        "end",
    ]
    return "\n".join(out) + "\n"


def _gen_eos(g: _Gen, ts: datetime) -> str:
    rng = g.rng
    out = [
        "! Command: show running-config",
        f"! device: {g.hostname} (vEOS-lab, EOS-4.28.3M)",
        "!",
        "! boot system flash:/vEOS-lab.swi",
        "!",
        "no aaa root",
        "!",
        "username admin privilege 15 role network-admin secret sha512"
        f" {g.secret(_crypt(rng, '$6$'))}",
        "!",
        f"hostname {g.hostname}",
        "ip name-server vrf default 10.0.0.53",
        "!",
        f"snmp-server community {g.secret(_word(rng))} ro",
        "!",
        "spanning-tree mode mstp",
        "!",
        f"enable password sha512 {g.secret(_crypt(rng, '$6$'))}",
        "!",
    ]
    for i in range(g.interfaces):
        out += [
            f"interface Ethernet{i + 1}",
            f"   description to lab-sw{rng.randint(1, 40):02d}",
            "   no switchport",
            f"   ip address {g.peer(i)}/30",
            "!",
        ]
    out += [
        "interface Management1",
        f"   ip address 192.168.{g.index // 250 % 250}.{g.index % 250 + 1}/16",
        "!",
        "ip routing",
        "!",
        f"router bgp {65000 + g.index % 500}",
        f"   router-id 10.255.0.{g.index % 250 + 1}",
        "   neighbor 10.0.0.2 remote-as 65535",
        f"   neighbor 10.0.0.2 password 7 {g.secret(_word(rng, 24))}==",
        "!",
        "management api http-commands",
        "   no shutdown",
        "!",
        "end",
    ]
    return "\n".join(out) + "\n"


def _gen_junos(g: _Gen, ts: datetime) -> str:
    rng = g.rng
    out = [
        f"## Last commit: {ts:%Y-%m-%d %H:%M:%S} UTC by admin",
        "version 20.4R3.8;",
        "system {",
        f"    host-name {g.hostname};",
        "    root-authentication {",
        f'        encrypted-password "{g.secret(_crypt(rng, "$6$"))}"; ## SECRET-DATA',
        "    }",
        "    login {",
        "        user admin {",
        "            uid 2000;",
        "            class super-user;",
        "            authentication {",
        f'                encrypted-password "{g.secret(_crypt(rng, "$6$"))}"; ## SECRET-DATA',
        "            }",
        "        }",
        "    }",
        "    services {",
        "        ssh;",
        "        netconf {",
        "            ssh;",
        "        }",
        "    }",
        "    ntp {",
        "        server 10.0.0.1;",
        "    }",
        "}",
        "interfaces {",
    ]
    for i in range(g.interfaces):
        out += [
            f"    ge-0/0/{i} {{",
            f'        description "to lab-sw{rng.randint(1, 40):02d}";',
            "        unit 0 {",
            "            family inet {",
            f"                address {g.peer(i)}/30;",
            "            }",
            "        }",
            "    }",
        ]
    out += [
        "}",
        "snmp {",
        f"    community {g.secret(_word(rng))} {{",
        "        authorization read-only;",
        "    }",
        "}",
        "protocols {",
        "    ospf {",
        "        area 0.0.0.0 {",
        "            interface ge-0/0/0.0 {",
        "                authentication {",
        f'                    md5 1 key "{g.secret("$9$" + _word(rng, 20))}"; ## SECRET-DATA',
        "                }",
        "            }",
        "        }",
        "    }",
        "    bgp {",
        "        group ebgp {",
        "            neighbor 10.0.0.2 {",
        f'                authentication-key "{g.secret("$9$" + _word(rng, 20))}"; ## SECRET-DATA',
        "                peer-as 65535;",
        "            }",
        "        }",
        "    }",
        "}",
    ]
    return "\n".join(out) + "\n"


def _gen_vrp(g: _Gen, ts: datetime) -> str:
    rng = g.rng
    out = [
        "!Software Version V800R011C00SPC607B607",
        f"!Last configuration was updated at {ts:%Y-%m-%d %H:%M:%S}+00:00 by admin",
        f"!Last configuration was saved at {ts:%Y-%m-%d %H:%M:%S}+00:00 by admin",
        "#",
        f"sysname {g.hostname}",
        "#",
        "aaa",
        f" local-user admin password irreversible-cipher {g.secret('$1c$' + _word(rng, 30))}$",
        " local-user admin service-type ssh",
        " local-user admin level 3",
        "#",
        f"snmp-agent community read cipher %^%#{g.secret(_word(rng, 24))}%^%#",
        "snmp-agent sys-info version v2c v3",
        "#",
    ]
    ospf_key = g.secret(_word(rng, 20))
    for i in range(g.interfaces):
        out += [
            f"interface GigabitEthernet0/3/{i}",
            f" description to lab-sw{rng.randint(1, 40):02d}",
            " undo shutdown",
            f" ip address {g.peer(i)} 255.255.255.252",
            f" ospf authentication-mode md5 1 cipher %^%#{ospf_key}%^%#",
            "#",
        ]
    out += [
        "interface LoopBack0",
        f" ip address 10.255.{g.index % 250}.1 255.255.255.255",
        "#",
        f"ospf 1 router-id 10.255.{g.index % 250}.1",
        " area 0.0.0.0",
        "  network 10.0.0.0 0.255.255.255",
        "#",
        "stelnet server enable",
        "ssh user admin authentication-type password",
        "#",
        "user-interface vty 0 4",
        " authentication-mode aaa",
        " protocol inbound ssh",
        "#",
        "return",
    ]
    return "\n".join(out) + "\n"


def _gen_frr(g: _Gen, ts: datetime) -> str:
    rng = g.rng
    out = [
        "!",
        "! Zebra configuration saved from vty",
        f"!   {ts:%Y/%m/%d %H:%M:%S}",
        "!",
        "frr version 8.4.2",
        "frr defaults traditional",
        f"hostname {g.hostname}",
        "log syslog informational",
        f"password {g.secret(_word(rng))}",
        f"enable password {g.secret(_word(rng))}",
        "service integrated-vtysh-config",
        "!",
    ]
    ospf_key = g.secret(_word(rng, 12))
    for i in range(g.interfaces):
        out += [
            f"interface eth{i + 1}",
            f" description to lab-sw{rng.randint(1, 40):02d}",
            " ip ospf authentication message-digest",
            f" ip ospf message-digest-key 1 md5 {ospf_key}",
            "!",
        ]
    out += [
        f"router bgp {65000 + g.index % 500}",
        " neighbor 10.0.0.2 remote-as 65535",
        f" neighbor 10.0.0.2 password {g.secret(_word(rng))}",
        "!",
        "line vty",
        "!",
    ]
    return "\n".join(out) + "\n"


_GENERATORS: dict[str, Callable[[_Gen, datetime], str]] = {
    "cisco_ios": _gen_ios,
    "cisco_nxos": _gen_nxos,
    "cisco_xr": _gen_xr,
    "arista_eos": _gen_eos,
    "juniper_junos": _gen_junos,
    "huawei_vrp": _gen_vrp,
    "linux": _gen_frr,
}

# Lines that carry "when did the configuration change": rewritten on every change and on touch().
_STAMPS: dict[str, list[tuple[re.Pattern[str], Callable[[datetime], str]]]] = {
    "cisco_ios": [
        (
            re.compile(r"^! Last configuration change at .*$", re.M),
            lambda t: f"! Last configuration change at {_ios_time(t)} by admin",
        ),
        (
            re.compile(r"^! NVRAM config last updated at .*$", re.M),
            lambda t: f"! NVRAM config last updated at {_ios_time(t)} by admin",
        ),
    ],
    "cisco_nxos": [
        (
            re.compile(r"^!Running configuration last done at: .*$", re.M),
            lambda t: f"!Running configuration last done at: {_ctime(t)}",
        )
    ],
    "cisco_xr": [
        (
            re.compile(r"^!! Last configuration change at .*$", re.M),
            lambda t: f"!! Last configuration change at {_ctime(t)} by admin",
        )
    ],
    "arista_eos": [],
    "juniper_junos": [
        (
            re.compile(r"^## Last commit: .*$", re.M),
            lambda t: f"## Last commit: {t:%Y-%m-%d %H:%M:%S} UTC by admin",
        )
    ],
    "huawei_vrp": [
        (
            re.compile(r"^!Last configuration was updated at .*$", re.M),
            lambda t: f"!Last configuration was updated at {t:%Y-%m-%d %H:%M:%S}+00:00 by admin",
        )
    ],
    "linux": [
        (re.compile(r"^!   \d{4}/\d\d/\d\d .*$", re.M), lambda t: f"!   {t:%Y/%m/%d %H:%M:%S}")
    ],
}

_HOSTNAME_LINES: dict[str, tuple[re.Pattern[str], str]] = {
    "cisco_ios": (re.compile(r"^hostname \S+$", re.M), "hostname {}"),
    "cisco_nxos": (re.compile(r"^hostname \S+$", re.M), "hostname {}"),
    "cisco_xr": (re.compile(r"^hostname \S+$", re.M), "hostname {}"),
    "arista_eos": (re.compile(r"^hostname \S+$", re.M), "hostname {}"),
    "juniper_junos": (re.compile(r"^    host-name \S+;$", re.M), "    host-name {};"),
    "huawei_vrp": (re.compile(r"^sysname \S+$", re.M), "sysname {}"),
    "linux": (re.compile(r"^hostname \S+$", re.M), "hostname {}"),
}


# --------------------------------------------------------------------------------------------
# Device state
# --------------------------------------------------------------------------------------------


@dataclass
class SimDevice:
    """State of one simulated device; mutate it only through the farm or `labkeeper-sim`."""

    index: int
    platform: str
    hostname: str
    files: dict[str, str]
    accounts: dict[str, str]
    admin: str
    enable_secret: str
    latency: float = 0.0
    hang: bool = False
    refused: set[str] = field(default_factory=set)
    # username -> OpenSSH public keys ("ssh-ed25519 AAAA...") accepted for that user
    authorized_keys: dict[str, set[str]] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    changed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    port: int = 0
    logins: int = 0
    active: int = 0
    shows: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @property
    def personality(self) -> Personality:
        """The platform behaviour of this device."""
        return PERSONALITIES[self.platform]

    @property
    def main_file(self) -> str:
        """Key of `files` that holds the configuration that changes."""
        return LINUX_CONFIG_FILE if self.platform == "linux" else "running-config"

    @property
    def config(self) -> str:
        """The stored configuration (without the per-show noise)."""
        return self.files[self.main_file]

    def check_login(self, username: str, password: str) -> bool:
        """True when this username/password may log in."""
        return username not in self.refused and self.accounts.get(username) == password

    def check_key(self, username: str, public_key: str) -> bool:
        """True when this username may log in with this public key."""
        return username not in self.refused and public_key in self.authorized_keys.get(
            username, set()
        )

    def set_config(self, text: str) -> None:
        """Replace the stored configuration verbatim."""
        if text and not text.endswith("\n"):
            text += "\n"
        self.files[self.main_file] = text

    def _stamp(self) -> None:
        # Strictly increasing, so two changes within one second still differ in their noise.
        now = datetime.now(UTC).replace(microsecond=0)
        self.changed_at = max(now, self.changed_at.replace(microsecond=0) + timedelta(seconds=1))
        text = self.config
        for pattern, render in _STAMPS[self.platform]:
            text = pattern.sub(render(self.changed_at), text)
        self.files[self.main_file] = text

    def touch(self) -> None:
        """Change only the noise lines (as a `write memory` without changes would)."""
        self._stamp()

    def append_config_line(self, line: str) -> None:
        """Add a line before the closing `end`/`return` (or at the end)."""
        lines = self.config.rstrip("\n").split("\n")
        if lines and lines[-1].strip() in {"end", "return"}:
            lines.insert(len(lines) - 1, line)
        else:
            lines.append(line)
        self.files[self.main_file] = "\n".join(lines) + "\n"
        self._stamp()

    def delete_config_lines(self, text: str) -> int:
        """Remove every line containing `text`; return how many were removed."""
        lines = self.config.split("\n")
        kept = [line for line in lines if text not in line]
        self.files[self.main_file] = "\n".join(kept)
        self._stamp()
        return len(lines) - len(kept)

    def set_hostname(self, name: str) -> None:
        """Rename the device: prompt, configuration and (linux) /etc files."""
        old = self.hostname
        self.hostname = name
        pattern, template = _HOSTNAME_LINES[self.platform]
        self.files[self.main_file] = pattern.sub(template.format(name), self.config)
        if self.platform == "linux":
            self.files["/etc/hostname"] = name + "\n"
            self.files["/etc/hosts"] = self.files["/etc/hosts"].replace(old, name)
        self._stamp()

    def render_config(self) -> str:
        """The configuration as the device prints it now (fresh per-show noise included)."""
        self.shows += 1
        text = self.config
        if self.platform == "cisco_ios":
            text = re.sub(
                r"^ntp clock-period \d+$",
                f"ntp clock-period {17179000 + (self.shows * 37) % 1000}",
                text,
                flags=re.M,
            )
            text = re.sub(
                r"^Current configuration : \d+ bytes$",
                f"Current configuration : {len(text)} bytes",
                text,
                flags=re.M,
            )
        elif self.platform == "cisco_nxos":
            stamp = _ctime(datetime.now(UTC))
            text = re.sub(r"^!Time: .*$", f"!Time: {stamp}", text, flags=re.M)
        elif self.platform == "cisco_xr":
            now = datetime.now(UTC)
            text = f"{now:%a %b %e %H:%M:%S}.{now.microsecond // 1000:03d} UTC\n" + text
        return text


def _make_device(
    index: int,
    platform: str,
    *,
    username: str,
    password: str,
    enable_secret: str | None,
    latency: float,
    extra_accounts: dict[str, str],
    interfaces: int | None,
    seed: int,
) -> SimDevice:
    rng = random.Random(seed * 1_000_003 + index)
    personality = PERSONALITIES[platform]
    hostname = f"{personality.hostname_prefix}{index + 1:04d}"
    ts = datetime(2024, 3, 4, 10, 0, 0, tzinfo=UTC) + timedelta(minutes=index)
    gen = _Gen(rng, hostname, index, interfaces or rng.randint(12, 36))
    config = _GENERATORS[platform](gen, ts)
    files = {"running-config": config}
    if platform == "linux":
        files = {
            "/etc/hostname": hostname + "\n",
            "/etc/hosts": f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n"
            f"10.0.0.1\tntp.lab.example\n",
            "/etc/network/interfaces": "auto lo\niface lo inet loopback\n\nauto eth0\n"
            f"iface eth0 inet static\n    address 192.168.{index // 250 % 250}.{index % 250 + 1}"
            "/16\n    gateway 192.168.0.254\n",
            LINUX_CONFIG_FILE: config,
        }
    return SimDevice(
        index=index,
        platform=platform,
        hostname=hostname,
        files=files,
        accounts={username: password, **extra_accounts},
        admin=username,
        enable_secret=enable_secret if enable_secret is not None else password,
        latency=latency,
        secrets=gen.secrets,
        changed_at=ts,
        rng=rng,
    )


# --------------------------------------------------------------------------------------------
# SSH server side
# --------------------------------------------------------------------------------------------


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


class _DeviceServer(asyncssh.SSHServer):
    def __init__(self, farm: DeviceFarm, device: SimDevice) -> None:
        self.farm = farm
        self.device = device
        self.username = ""
        self.authenticated = False
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.farm._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.farm._connections.discard(self.conn)
        if self.authenticated:
            self.device.active -= 1
            self.farm.active -= 1

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return bool(self.device.authorized_keys)

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        public = key.export_public_key("openssh").decode().split()[:2]
        if not self.device.check_key(username, " ".join(public)):
            return False
        self.username = username
        return True

    def validate_password(self, username: str, password: str) -> bool:
        if not self.device.check_login(username, password):
            return False
        self.username = username
        return True

    def auth_completed(self) -> None:
        # Counted here, not in validate_*: asyncssh also validates keys a client only offers.
        self.authenticated = True
        self.device.logins += 1
        self.device.active += 1
        self.farm.active += 1
        self.farm.peak_active = max(self.farm.peak_active, self.farm.active)

    def session_requested(self) -> _DeviceSession:
        return _DeviceSession(self.device, self.username)


class _DeviceSession(asyncssh.SSHServerSession[str]):
    """One shell or exec request: a tiny line-oriented CLI with echo, enable and a pager."""

    def __init__(self, device: SimDevice, username: str) -> None:
        self.device = device
        self.username = username
        self.p = device.personality
        self.privileged = not self.p.needs_enable
        self.paging = bool(self.p.pager)
        self.mode = "line"  # line | password | pager | busy | hung | closed
        self.line: list[str] = []
        self.pending = ""
        self.last_cr = False
        self.enable_tries = 0
        self.pages: list[str] = []
        self.exec_command: str | None = None
        self.pty = False
        self.chan: asyncssh.SSHServerChannel[str] | None = None

    # asyncssh callbacks ---------------------------------------------------------------------

    def connection_made(self, chan: asyncssh.SSHServerChannel[str]) -> None:
        self.chan = chan

    def pty_requested(self, term_type: str, term_size: Any, term_modes: Any) -> bool:
        self.pty = True
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self.exec_command = command
        return True

    def session_started(self) -> None:
        if self.exec_command is not None:
            self.privileged = True
            self.paging = False
            status, output = self._execute(self.exec_command, exec_mode=True)
            self._write(output)
            self._exit(status)
        else:
            self._write("\n" + self._prompt())

    def data_received(self, data: str, datatype: asyncssh.DataType) -> None:
        if self.mode == "busy":
            self.pending += data
            return
        if self.mode in {"hung", "closed"}:
            return
        echo: list[str] = []
        for pos, char in enumerate(data):
            if self.mode == "pager":
                self._flush(echo)
                self._pager_key(char)
                continue
            if self.mode not in {"line", "password"}:
                # A command started (latency) or hung: keep the rest as type-ahead.
                if self.mode == "busy":
                    self.pending += data[pos:]
                self._flush(echo)
                return
            if char in "\r\n":
                if char == "\n" and self.last_cr:
                    self.last_cr = False
                    continue
                self.last_cr = char == "\r"
                line = "".join(self.line)
                self.line.clear()
                echo.append("\r\n")
                self._flush(echo)
                self._submit(line)
                continue
            self.last_cr = False
            if char in "\x7f\x08":
                if self.line:
                    self.line.pop()
                    if self.mode == "line":
                        echo.append("\b \b")
            elif char == "\x03":
                self.line.clear()
                echo.append("^C\r\n" + self._prompt())
                self.mode = "line"
            elif char >= " " or char == "\t":
                self.line.append(char)
                if self.mode == "line":
                    echo.append(char)
        self._flush(echo)

    def eof_received(self) -> bool:
        self.mode = "closed"
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.mode = "closed"

    # helpers ----------------------------------------------------------------------------------

    def _flush(self, echo: list[str]) -> None:
        if echo:
            self._write("".join(echo))
            echo.clear()

    def _write(self, text: str) -> None:
        if self.chan is not None and self.mode != "closed" and text:
            # A terminal turns newlines into CR LF; a plain exec channel does not.
            self.chan.write(_crlf(text) if self.pty and "\n" in text else text)

    def _exit(self, status: int) -> None:
        self.mode = "closed"
        if self.chan is not None:
            self.chan.exit(status)

    def _prompt(self) -> str:
        template = self.p.priv_prompt if self.privileged else self.p.user_prompt
        prompt = template.format(host=self.device.hostname, user=self.username)
        return ("\n" if self.p.blank_before_prompt else "") + prompt

    def _submit(self, line: str) -> None:
        if self.mode == "password":
            self._check_enable(line)
            return
        if self.device.latency > 0 and line.strip():
            self.mode = "busy"
            asyncio.get_running_loop().call_later(self.device.latency, self._run, line)
        else:
            self._run(line)

    def _resume(self) -> None:
        # Replay what the client typed while the previous command ran.
        if self.mode in {"line", "password"} and self.pending:
            data, self.pending = self.pending, ""
            self.data_received(data, None)

    def _run(self, line: str) -> None:
        if self.mode == "closed":
            return
        self.mode = "line"
        command = " ".join(line.split())
        if self.p.needs_enable and not self.privileged and command in {"enable", "en"}:
            self.mode = "password"
            self.enable_tries = 0
            self._write("Password: ")
            self._resume()
            return
        if command in self.p.exit_commands:
            self._exit(0)
            return
        if command in self.p.config_commands or (
            self.p.platform == "linux" and command.startswith("cat ")
        ):
            if self.p.needs_enable and not self.privileged:
                self._write(self._invalid(command) + self._prompt())
            else:
                self._show(self._config_output(command))
            self._resume()
            return
        _, output = self._execute(command, exec_mode=False)
        self._write(output + self._prompt())
        self._resume()

    def _check_enable(self, secret: str) -> None:
        # The Enter that ended the secret was already echoed as a newline.
        if secret == self.device.enable_secret:
            self.privileged = True
            self.mode = "line"
            self._write(self._prompt())
        else:
            self.enable_tries += 1
            if self.enable_tries < 3:
                self._write("Password: ")
            else:
                self.mode = "line"
                self._write("% Bad secrets\n\n" + self._prompt())
        self._resume()

    def _invalid(self, command: str) -> str:
        prompt_len = len(self._prompt().lstrip("\n"))
        word = command.split()[0] if command.split() else command
        return self.p.invalid.format(caret=" " * prompt_len + "^", word=word)

    def _config_output(self, command: str) -> str:
        if self.p.platform != "linux":
            return self.device.render_config()
        args = shlex.split(command)[1:]
        quiet = "2>/dev/null" in args
        chunks = []
        for path in (a for a in args if a != "2>/dev/null"):
            if path in self.device.files:
                chunks.append(self.device.files[path])
            elif not quiet:
                chunks.append(f"cat: {path}: No such file or directory\n")
        return "".join(chunks)

    def _show(self, text: str) -> None:
        if self.device.hang:
            # Stop halfway and never answer again: the collector must give up on its own.
            self._write(text[: len(text) // 2])
            self.mode = "hung"
            return
        if not text.endswith("\n"):
            text += "\n"
        lines = text.split("\n")[:-1]
        if not self.paging or len(lines) <= PAGE_LINES:
            self._write(text + self._prompt())
            return
        self.pages = [
            "\n".join(lines[i : i + PAGE_LINES]) + "\n" for i in range(0, len(lines), PAGE_LINES)
        ]
        self._next_page()

    def _next_page(self) -> None:
        page = self.pages.pop(0)
        if self.pages:
            self.mode = "pager"
            self._write(page + self.p.pager)
        else:
            self.mode = "line"
            self._write(page + self._prompt())

    def _pager_key(self, char: str) -> None:
        if self.mode != "pager":
            return
        self._write(self.p.pager_erase)
        if char in "qQ\x03":
            self.pages = []
            self.mode = "line"
            self._write("\n" + self._prompt())
            return
        self._next_page()

    def _execute(self, command: str, *, exec_mode: bool) -> tuple[int, str]:
        """Run a command that is not enable/exit/config; return (status, output)."""
        command = " ".join(command.split())
        if not command:
            return 0, ""
        if command.split()[0] == CONTROL_VERB:
            return self._control(command)
        if command in self.p.paging_off:
            self.paging = False
            return 0, self.p.paging_off[command]
        if command in self.p.canned:
            return 0, self.p.canned[command]
        if exec_mode and (
            command in self.p.config_commands
            or (self.p.platform == "linux" and command.startswith("cat "))
        ):
            return 0, self._config_output(command)
        if self.p.platform == "linux" and command == "hostname":
            return 0, self.device.hostname + "\n"
        return 1, self._invalid(command)

    def _control(self, command: str) -> tuple[int, str]:
        if self.username != self.device.admin:
            return 1, "% Permission denied: labkeeper-sim needs the admin login\n"
        try:
            args = shlex.split(command)[1:]
        except ValueError as exc:
            return 1, f"% {exc}\n"
        if not args:
            return 1, f"usage: {CONTROL_VERB} VERB ARGS (see labkeeper.simulators.devices)\n"
        verb, rest = args[0], args[1:]
        device = self.device
        if verb == "set-hostname" and len(rest) == 1:
            device.set_hostname(rest[0])
        elif verb == "append" and rest:
            device.append_config_line(" ".join(rest))
        elif verb == "delete" and rest:
            return 0, f"OK {device.delete_config_lines(' '.join(rest))} lines removed\n"
        elif verb == "set-config-b64" and len(rest) == 1:
            try:
                device.set_config(base64.b64decode(rest[0], validate=True).decode("utf-8"))
            except (binascii.Error, UnicodeDecodeError) as exc:
                return 1, f"% bad base64: {exc}\n"
        elif verb == "touch" and not rest:
            device.touch()
        elif verb == "hang" and rest in (["on"], ["off"]):
            device.hang = rest == ["on"]
        elif verb == "refuse" and len(rest) == 1:
            device.refused.add(rest[0])
        elif verb == "allow" and len(rest) == 1:
            device.refused.discard(rest[0])
        elif verb == "show" and not rest:
            return 0, device.config
        else:
            return 1, f"% unknown or malformed {CONTROL_VERB} command: {' '.join(args)}\n"
        return 0, "OK\n"


# --------------------------------------------------------------------------------------------
# Farms
# --------------------------------------------------------------------------------------------


class DeviceFarm:
    """A set of simulated devices in this process, each on its own 127.0.0.1 port."""

    def __init__(
        self,
        count: int = 1,
        platform: str = "cisco_ios",
        *,
        port_base: int = 0,
        first_index: int = 0,
        username: str = "admin",
        password: str = "admin",
        enable_secret: str | None = None,
        latency_ms: float = 0.0,
        extra_accounts: dict[str, str] | None = None,
        refused_users: Iterable[str] = (),
        authorized_keys: dict[str, list[str]] | None = None,
        interfaces: int | None = None,
        seed: int = 0,
        host: str = LOOPBACK,
    ) -> None:
        if host not in {LOOPBACK, "localhost"}:
            raise ValueError("the simulator only listens on 127.0.0.1")
        if platform != "mixed" and platform not in PERSONALITIES:
            known = ", ".join((*PLATFORMS, "mixed"))
            raise ValueError(f"unknown simulated platform {platform!r} (known: {known})")
        self.host = LOOPBACK
        self.port_base = port_base
        self.active = 0
        self.peak_active = 0
        self._servers: list[asyncssh.SSHAcceptor] = []
        self._connections: set[asyncssh.SSHServerConnection] = set()
        refused = set(refused_users)
        self.devices: list[SimDevice] = []
        for index in range(first_index, first_index + count):
            device_platform = PLATFORMS[index % len(PLATFORMS)] if platform == "mixed" else platform
            device = _make_device(
                index,
                device_platform,
                username=username,
                password=password,
                enable_secret=enable_secret,
                latency=latency_ms / 1000.0,
                extra_accounts=dict(extra_accounts or {}),
                interfaces=interfaces,
                seed=seed,
            )
            device.refused |= refused
            for user, keys in (authorized_keys or {}).items():
                device.authorized_keys[user] = {" ".join(k.split()[:2]) for k in keys}
            self.devices.append(device)

    async def __aenter__(self) -> DeviceFarm:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def ports(self) -> list[int]:
        """Listening port of each device, in order."""
        return [device.port for device in self.devices]

    async def _listen(self, device: SimDevice) -> asyncssh.SSHAcceptor:
        port = self.port_base + device.index if self.port_base else 0
        server = await asyncssh.create_server(
            functools.partial(_DeviceServer, self, device),
            self.host,
            port,
            server_host_keys=[_host_key()],
            line_editor=False,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            login_timeout=30,
            reuse_address=True,
            backlog=256,
        )
        device.port = server.get_port()
        return server

    async def start(self) -> None:
        """Start listening (all devices concurrently); fails as a whole if one port is taken."""
        results = await asyncio.gather(
            *(self._listen(device) for device in self.devices), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        self._servers = [r for r in results if isinstance(r, asyncssh.SSHAcceptor)]
        if errors:
            await self.stop()
            raise errors[0]

    async def stop(self) -> None:
        """Stop listening and drop every open session."""
        for server in self._servers:
            server.close()
        for conn in list(self._connections):
            conn.abort()
        await asyncio.gather(*(s.wait_closed() for s in self._servers), return_exceptions=True)
        self._servers = []

    def device(self, i: int) -> SimDevice:
        """The i-th device of this farm."""
        return self.devices[i]

    def set_config(self, i: int, text: str) -> None:
        """Replace device i's configuration verbatim."""
        self.devices[i].set_config(text)

    def append_config_line(self, i: int, line: str) -> None:
        """Add a configuration line to device i (and update its change timestamps)."""
        self.devices[i].append_config_line(line)

    def delete_config_lines(self, i: int, text: str) -> int:
        """Remove device i's lines containing `text`."""
        return self.devices[i].delete_config_lines(text)

    def set_hostname(self, i: int, name: str) -> None:
        """Rename device i."""
        self.devices[i].set_hostname(name)

    def touch(self, i: int) -> None:
        """Change only device i's noise lines."""
        self.devices[i].touch()

    def set_hang(self, i: int, hang: bool = True) -> None:
        """Make device i stop halfway through its next configuration output."""
        self.devices[i].hang = hang

    def set_latency(self, i: int, latency_ms: float) -> None:
        """Delay every command of device i."""
        self.devices[i].latency = latency_ms / 1000.0

    def refuse(self, i: int, username: str) -> None:
        """Refuse logins as `username` on device i."""
        self.devices[i].refused.add(username)

    def allow(self, i: int, username: str) -> None:
        """Accept logins as `username` on device i again."""
        self.devices[i].refused.discard(username)


async def send_control(
    port: int,
    command: str,
    *,
    username: str = "admin",
    password: str = "admin",
    timeout: float = 10.0,
) -> str:
    """Run `labkeeper-sim COMMAND` on the simulated device at 127.0.0.1:port; return its output."""
    async with asyncssh.connect(
        LOOPBACK,
        port,
        username=username,
        password=password,
        known_hosts=None,
        client_keys=None,
        agent_path=None,
        config=[],
        connect_timeout=timeout,
    ) as conn:
        result = await conn.run(f"{CONTROL_VERB} {command}", check=False, timeout=timeout)
    output = result.stdout if isinstance(result.stdout, str) else ""
    if result.exit_status != 0:
        raise RuntimeError(output.strip() or f"{CONTROL_VERB} failed")
    return output


# --------------------------------------------------------------------------------------------
# Several processes
# --------------------------------------------------------------------------------------------


def _shard_main(spec: dict[str, Any], reports: Any, parent: int) -> None:
    # The parent handles Ctrl-C and terminates the shards; a traceback per shard is noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_shard_async(spec, reports, parent))


async def _shard_async(spec: dict[str, Any], reports: Any, parent: int) -> None:
    farm = DeviceFarm(**spec)
    try:
        await farm.start()
    except Exception as exc:
        reports.put(("error", spec["first_index"], f"{type(exc).__name__}: {exc}"))
        return
    reports.put(("ready", spec["first_index"], farm.ports))
    # Exit with the parent even when it dies without cleaning up (kill -9, a crashed
    # benchmark): orphaned shards would keep their ports busy.
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    await farm.stop()


class DeviceProcesses:
    """Devices sharded over OS processes (contiguous index blocks); `start()` waits until ready."""

    def __init__(
        self,
        count: int = 1,
        platform: str = "cisco_ios",
        *,
        port_base: int = 0,
        username: str = "admin",
        password: str = "admin",
        latency_ms: float = 0.0,
        processes: int = 1,
        **farm_options: Any,
    ) -> None:
        self.count = count
        self.processes = max(1, min(processes, count))
        self.ports: list[int] = []
        self._specs: list[dict[str, Any]] = []
        per_shard, extra = divmod(count, self.processes)
        first = 0
        for shard in range(self.processes):
            size = per_shard + (1 if shard < extra else 0)
            self._specs.append(
                {
                    "count": size,
                    "platform": platform,
                    "port_base": port_base,
                    "first_index": first,
                    "username": username,
                    "password": password,
                    "latency_ms": latency_ms,
                    **farm_options,
                }
            )
            first += size
        self._procs: list[Any] = []

    def start(self, timeout: float = 120.0) -> list[int]:
        """Spawn the shards and wait for all of them to listen; return every device's port."""
        ctx = multiprocessing.get_context("spawn")
        reports = ctx.Queue()
        for spec in self._specs:
            proc = ctx.Process(target=_shard_main, args=(spec, reports, os.getpid()), daemon=True)
            proc.start()
            self._procs.append(proc)
        by_shard: dict[int, list[int]] = {}
        deadline = time.monotonic() + timeout
        try:
            while len(by_shard) < len(self._specs):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("simulator processes did not start in time")
                try:
                    kind, first, payload = reports.get(timeout=min(remaining, 1.0))
                except queue_module.Empty:
                    dead = [p for p in self._procs if not p.is_alive()]
                    if dead:
                        raise RuntimeError("a simulator process exited during start-up") from None
                    continue
                if kind == "error":
                    raise RuntimeError(f"simulator shard starting at device {first}: {payload}")
                by_shard[first] = payload
        except BaseException:
            self.stop()
            raise
        self.ports = [port for first in sorted(by_shard) for port in by_shard[first]]
        return self.ports

    def stop(self) -> None:
        """Terminate the shard processes."""
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(1)
        self._procs = []

    def __enter__(self) -> DeviceProcesses:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_devices(
    count: int = 1,
    platform: str = "cisco_ios",
    port_base: int = 10022,
    username: str = "admin",
    password: str = "admin",
    latency_ms: float = 0.0,
    processes: int = 1,
) -> None:
    """Run simulated devices on 127.0.0.1 (device i on port_base + i) until Ctrl-C."""
    if platform != "mixed" and platform not in PERSONALITIES:
        raise SystemExit(f"unknown platform {platform!r}; choose one of {', '.join(PLATFORMS)}")
    farm = DeviceProcesses(
        count,
        platform,
        port_base=port_base,
        username=username,
        password=password,
        latency_ms=latency_ms,
        processes=processes,
    )
    started = time.monotonic()
    ports = farm.start()
    # `kill PID` must stop the shards too, not only Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        print(
            f"{count} simulated {platform} device(s) on {LOOPBACK}:{ports[0]}..{ports[-1]}"
            f" ({farm.processes} process(es), started in {time.monotonic() - started:.1f} s);"
            f" login {username}/<password>. Ctrl-C to stop.",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        farm.stop()
