"""The Polatis driver (ncclient) against the NETCONF simulator over real SSH on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import asyncssh
import pytest

from labkeeper.drivers.base import AuthFailed, CommandFailed, DriverError, Timeout, Unreachable
from labkeeper.drivers.optical import Plan, PolatisClient, SwitchRefused, plan
from labkeeper.simulators.polatis import (
    BASE_10,
    BASE_11,
    DARK_DBM,
    EOM,
    PolatisSimulator,
    simulated_power,
)


@pytest.fixture
def sim() -> Iterator[PolatisSimulator]:
    simulator = PolatisSimulator(ports=64)
    with simulator.run_in_thread():
        yield simulator


def client(sim: PolatisSimulator, **kw: object) -> PolatisClient:
    args: dict = {"username": "admin", "password": "admin", "timeout": 5} | kw
    return PolatisClient("127.0.0.1", sim.port, **args)


# --- session -------------------------------------------------------------------------------


def test_hello_negotiates_base_11_with_ncclient(sim: PolatisSimulator) -> None:
    with client(sim) as c:
        caps = c.server_capabilities
        assert BASE_10 in caps and BASE_11 in caps
        assert "urn:ietf:params:netconf:capability:writable-running:1.0" in caps
        assert c.netconf_version == "1.1"
        assert c.get_cross_connects() == {}
    assert sim.rpc_counts["close-session"] == 1


def test_base_10_eom_framing_with_a_raw_client(sim: PolatisSimulator) -> None:
    """A client that only speaks base:1.0 gets ]]>]]> framing and sees what ncclient wrote."""
    with client(sim) as c:
        c.apply(add=[(3, 40)], remove=[])

    async def raw() -> bytes:
        async with asyncssh.connect(
            "127.0.0.1",
            sim.port,
            username="admin",
            password="admin",
            known_hosts=None,
            client_keys=[],
            agent_path=None,
        ) as conn:
            writer, reader, _ = await conn.open_session(subsystem="netconf", encoding=None)
            await reader.readuntil(EOM)
            writer.write(
                b'<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities>'
                b"<capability>urn:ietf:params:netconf:base:1.0</capability></capabilities>"
                b"</hello>" + EOM
            )
            writer.write(
                b'<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1">'
                b"<get-config><source><running/></source></get-config></rpc>" + EOM
            )
            return await asyncio.wait_for(reader.readuntil(EOM), 5)

    reply = asyncio.run(raw())
    assert not reply.startswith(b"\n#")
    assert b"<ingress>3</ingress><egress>40</egress>" in reply


# --- cross-connects ------------------------------------------------------------------------


def test_apply_sends_one_batched_edit_and_reads_back(sim: PolatisSimulator) -> None:
    sim.set_cross_connects({1: 33, 2: 34, 3: 35})
    with client(sim) as c:
        assert c.get_cross_connects() == {1: 33, 2: 34, 3: 35}
        # Re-route 1 (delete + create of the same ingress), drop 2 and 3, add two more.
        c.apply(add=[(1, 34), (4, 36), (5, 37)], remove=[1, (2, 34), 3])
        assert sim.rpc_counts["edit-config"] == 1
        assert sim.cross_connects == {1: 34, 4: 36, 5: 37}
        assert c.get_cross_connects() == {1: 34, 4: 36, 5: 37}
        assert c.verify({1: 34, 4: 36, 5: 37}, absent=[2, 3]) == []
        # Nothing to do: no request at all.
        c.apply(add=[], remove=[])
        assert sim.rpc_counts["edit-config"] == 1


def test_verify_reports_each_mismatch(sim: PolatisSimulator) -> None:
    sim.mode = "ignore"  # the switch says ok but changes nothing
    sim.set_cross_connects({7: 8, 9: 10})
    with client(sim) as c:
        c.apply(add=[(1, 2), (3, 4)], remove=[9])
        problems = c.verify({1: 2, 3: 4, 7: 9}, absent=[9])
    assert problems == [
        "ingress 1: expected 1->2, found no patch",
        "ingress 3: expected 3->4, found no patch",
        "ingress 7: expected 7->9, found 7->8",
        "ingress 9: expected no patch, found 9->10",
    ]


def test_port_in_use_raises_command_failed_with_the_switch_text(sim: PolatisSimulator) -> None:
    sim.set_cross_connects({1: 33})
    with client(sim) as c:
        with pytest.raises(CommandFailed) as info:
            c.apply(add=[(5, 6), (7, 33)], remove=[])
        err = info.value
        assert isinstance(err, SwitchRefused)
        assert err.code == "command_failed"
        assert err.error_tag == "in-use"
        assert "port 33" in err.switch_message
        assert err.switch_message in str(err)
        # Atomic: 5->6 was valid but the batch as a whole was refused.
        assert sim.cross_connects == {1: 33}
        # The session is still usable after a refusal.
        assert c.get_cross_connects() == {1: 33}


def test_injected_failure_text_reaches_the_caller(sim: PolatisSimulator) -> None:
    sim.fail_next(1, "switch busy: protection switching in progress")
    with client(sim) as c:
        with pytest.raises(CommandFailed, match="protection switching in progress"):
            c.apply(add=[(1, 2)], remove=[])
        c.apply(add=[(1, 2)], remove=[])
    assert sim.cross_connects == {1: 2}


def test_removing_a_missing_patch_fails_unless_missing_ok(sim: PolatisSimulator) -> None:
    sim.set_cross_connects({1: 2})
    with client(sim) as c:
        with pytest.raises(SwitchRefused, match="no cross-connect on ingress port 9"):
            c.apply(add=[(3, 4)], remove=[1, 9])
        assert sim.cross_connects == {1: 2}
        c.apply(add=[(3, 4)], remove=[1, 9], missing_ok=True)
    assert sim.cross_connects == {3: 4}


def test_apply_rejects_a_batch_that_reuses_a_port_without_sending(sim: PolatisSimulator) -> None:
    with client(sim) as c, pytest.raises(CommandFailed, match="reuses a port"):
        c.apply(add=[(1, 2), (3, 2)], remove=[])
    assert sim.rpc_counts["edit-config"] == 0


def test_reconcile_fixes_owned_patches_and_leaves_foreign_ones(sim: PolatisSimulator) -> None:
    # 1->33 ours and right, 2->40 ours but should go to 34, 3->35 ours and no longer wanted,
    # 9->50 someone else's; 4->36 wanted but missing; 10->50 wanted but 50 is held by 9->50.
    sim.set_cross_connects({1: 33, 2: 40, 3: 35, 9: 50})
    with client(sim) as c:
        result = c.reconcile({1: 33, 2: 34, 4: 36, 10: 50}, owned_ingress={1, 2, 3})
    assert result.add == [(2, 34), (4, 36)]
    assert result.remove == [(2, 40), (3, 35)]
    assert result.foreign == [(9, 50)]
    assert result.blocked == [(10, 50)]
    assert sim.cross_connects == {1: 33, 2: 34, 4: 36, 9: 50}
    assert sim.rpc_counts["edit-config"] == 1


def test_reconcile_raises_when_the_switch_ignores_the_edit(sim: PolatisSimulator) -> None:
    sim.mode = "ignore"
    with client(sim) as c, pytest.raises(CommandFailed, match="ingress 4: expected 4->36"):
        c.reconcile({4: 36}, owned_ingress=set())


# --- ports ---------------------------------------------------------------------------------


def test_labels_and_status(sim: PolatisSimulator) -> None:
    sim.set_port_status(64, "DISABLED")
    with client(sim) as c:
        assert c.port_labels() == {}
        c.set_label(5, "server-a eth0 <rx> & tx")
        c.set_labels({6: "server-b", 7: "server-c"})
        assert c.port_labels() == {5: "server-a eth0 <rx> & tx", 6: "server-b", 7: "server-c"}
        c.set_label(6, "")
        assert c.port_labels() == {5: "server-a eth0 <rx> & tx", 7: "server-c"}
        status = c.port_status()
        assert len(status) == 64
        assert status[64] == "DISABLED" and status[1] == "ENABLED"
        with pytest.raises(CommandFailed, match="port 99 does not exist"):
            c.set_label(99, "nowhere")
    assert sim.labels == {5: "server-a eth0 <rx> & tx", 7: "server-c"}


def test_power_is_read_on_patched_ports_only(sim: PolatisSimulator) -> None:
    sim.set_cross_connects({1: 33, 2: 34})
    with client(sim) as c:
        power = c.power()
    lit = {1, 2, 33, 34}
    assert set(power) == set(range(1, 65))
    for port in lit:
        assert power[port] == simulated_power(port)
        assert -7.0 <= power[port] <= -3.0
    assert {power[p] for p in power if p not in lit} == {DARK_DBM}


# --- failures ------------------------------------------------------------------------------


def test_wrong_password_is_auth_failed(sim: PolatisSimulator) -> None:
    with pytest.raises(AuthFailed) as info:
        client(sim, password="wrong").connect()
    assert info.value.code == "auth"


def test_nothing_listening_is_unreachable() -> None:
    # A bound but non-listening socket holds the port (no xdist race) and refuses connections.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
        with pytest.raises(Unreachable) as info:
            PolatisClient("127.0.0.1", free_port, "admin", "admin", timeout=2).connect()
    assert info.value.code == "unreachable" and info.value.transient


def test_a_hung_switch_is_a_timeout_during_an_rpc(sim: PolatisSimulator) -> None:
    c = client(sim, timeout=0.5).connect()
    sim.mode = "hang"
    started = time.monotonic()
    with pytest.raises(Timeout):
        c.get_cross_connects()
    c.close()
    assert time.monotonic() - started < 3


def test_a_hung_switch_is_a_timeout_at_connect(sim: PolatisSimulator) -> None:
    sim.mode = "hang"
    with pytest.raises(Timeout) as info:
        client(sim, timeout=0.5).connect()
    assert isinstance(info.value, DriverError) and info.value.transient


def test_calls_without_a_session_fail_cleanly() -> None:
    c = PolatisClient("127.0.0.1", 1, "admin", "admin")
    with pytest.raises(DriverError, match="not connected"):
        c.get_cross_connects()
    c.close()  # closing an unopened client is harmless


# --- plan ----------------------------------------------------------------------------------


def test_plan_nothing_to_do() -> None:
    result = plan({1: 33, 2: 34}, {1: 33, 2: 34}, {1, 2})
    assert result == Plan()
    assert result.empty


def test_plan_reapplies_missing_desired_patches() -> None:
    result = plan({1: 33, 2: 34}, {1: 33}, {1, 2})
    assert result.add == [(2, 34)] and result.remove == [] and not result.empty


def test_plan_removes_owned_patches_no_longer_desired() -> None:
    result = plan({1: 33}, {1: 33, 2: 34, 3: 35}, {1, 2, 3})
    assert result.remove == [(2, 34), (3, 35)] and result.add == []


def test_plan_reports_foreign_patches_without_touching_them() -> None:
    result = plan({}, {5: 40, 6: 41}, {6})
    assert result.foreign == [(5, 40)]
    assert result.remove == [(6, 41)]


def test_plan_wrong_egress_on_owned_ingress_is_removed_and_readded() -> None:
    result = plan({1: 33}, {1: 40}, {1})
    assert result.remove == [(1, 40)] and result.add == [(1, 33)]


def test_plan_wrong_egress_on_foreign_ingress_is_blocked() -> None:
    result = plan({1: 33}, {1: 40}, set())
    assert result.foreign == [(1, 40)]
    assert result.add == [] and result.blocked == [(1, 33)]


def test_plan_blocks_desired_patches_whose_ports_a_foreign_patch_holds() -> None:
    # 40 is the egress of a foreign patch; 7 is the egress of another, 8 its ingress.
    result = plan({1: 40, 7: 20, 21: 8, 2: 3}, {5: 40, 6: 7, 8: 9}, set())
    assert result.blocked == [(1, 40), (7, 20), (21, 8)]
    assert result.add == [(2, 3)]


def test_plan_reuses_ports_freed_by_its_own_removals() -> None:
    # Owned 1->33 goes away, which frees 33 for the new 2->33 in the same batch.
    result = plan({2: 33}, {1: 33}, {1})
    assert result.remove == [(1, 33)] and result.add == [(2, 33)] and result.blocked == []


def test_plan_matching_patch_is_kept_even_if_not_recorded_as_owned() -> None:
    result = plan({1: 33}, {1: 33}, set())
    assert result == Plan()


def test_plan_blocks_conflicting_desired_patches() -> None:
    result = plan({1: 33, 2: 33, 4: 4}, {}, set())
    assert result.add == [(1, 33)] and result.blocked == [(2, 33), (4, 4)]
