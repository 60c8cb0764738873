"""The Polatis simulator on the wire: NETCONF over SSH with a raw asyncssh client.

The client here frames and parses messages itself (not with the simulator's Framer) so the
tests check the protocol, not the simulator against its own code.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import asyncssh
import pytest
from lxml import etree

from labkeeper.simulators.polatis import (
    BASE_10,
    BASE_11,
    DARK_DBM,
    EOM,
    NC,
    NS,
    Framer,
    FramingError,
    PolatisSimulator,
    simulated_power,
)

NSMAP = {"nc": NC, "p": NS}
_ids = itertools.count(1)


def run(scenario: Callable[[PolatisSimulator], Awaitable[None]], **sim_args: Any) -> None:
    """Run one async scenario against a fresh simulator on an ephemeral port."""

    async def main() -> None:
        async with PolatisSimulator(**sim_args) as sim:
            await asyncio.wait_for(scenario(sim), timeout=10)

    asyncio.run(main())


class Netconf:
    """A minimal hand-written NETCONF client over an asyncssh channel."""

    def __init__(self, conn: asyncssh.SSHClientConnection, writer: Any, reader: Any) -> None:
        self.conn = conn
        self.writer = writer
        self.reader = reader
        self.chunked = False
        self.server_hello: etree._Element | None = None

    @classmethod
    async def open(
        cls,
        sim: PolatisSimulator,
        caps: tuple[str, ...] = (BASE_10, BASE_11),
        *,
        hello: bool = True,
        password: str = "admin",
    ) -> Netconf:
        conn = await asyncssh.connect(
            "127.0.0.1",
            sim.port,
            username="admin",
            password=password,
            known_hosts=None,
            client_keys=[],
            agent_path=None,
        )
        writer, reader, _ = await conn.open_session(subsystem="netconf", encoding=None)
        nc = cls(conn, writer, reader)
        if hello:
            raw = await reader.readuntil(EOM)
            nc.server_hello = etree.fromstring(raw[: -len(EOM)])
            await nc.send_hello(caps)
        return nc

    async def send_hello(self, caps: tuple[str, ...]) -> None:
        body = "".join(f"<capability>{c}</capability>" for c in caps)
        self.writer.write(
            f'<hello xmlns="{NC}"><capabilities>{body}</capabilities></hello>'.encode() + EOM
        )
        self.chunked = BASE_11 in caps and BASE_11 in self.server_caps()

    def hello_field(self, name: str) -> str | None:
        assert self.server_hello is not None
        return self.server_hello.findtext(f"nc:{name}", namespaces=NSMAP)

    def server_caps(self) -> set[str]:
        assert self.server_hello is not None
        return {c.text for c in self.server_hello.iter(f"{{{NC}}}capability")}

    def send_raw(self, payload: bytes) -> None:
        if self.chunked:
            self.writer.write(b"\n#%d\n%s\n##\n" % (len(payload), payload))
        else:
            self.writer.write(payload + EOM)

    async def receive(self, timeout: float = 5) -> etree._Element:
        return etree.fromstring(await asyncio.wait_for(self._read(), timeout))

    async def _read(self) -> bytes:
        if not self.chunked:
            raw = await self.reader.readuntil(EOM)
            return raw[: -len(EOM)]
        parts: list[bytes] = []
        while True:
            # Each chunk is "\n#<size>\n<data>"; the message ends with "\n##\n".
            assert await self.reader.readexactly(1) == b"\n"
            header = await self.reader.readuntil(b"\n")
            if header == b"##\n":
                return b"".join(parts)
            assert header.startswith(b"#")
            parts.append(await self.reader.readexactly(int(header[1:-1])))

    async def rpc(self, body: str, *, message_id: str | None = None) -> etree._Element:
        mid = message_id or str(next(_ids))
        self.send_raw(f'<rpc xmlns="{NC}" message-id="{mid}">{body}</rpc>'.encode())
        reply = await self.receive()
        assert reply.tag == f"{{{NC}}}rpc-reply"
        assert reply.get("message-id") == mid
        return reply

    async def edit(self, config: str, **kw: Any) -> etree._Element:
        return await self.rpc(
            f"<edit-config><target><running/></target><config>{config}</config></edit-config>",
            **kw,
        )

    async def close(self) -> None:
        self.conn.close()
        await self.conn.wait_closed()


def xc(*pairs: tuple[int, int], op: str | None = None) -> str:
    attr = f' xmlns:nc="{NC}" nc:operation="{op}"' if op else ""
    body = "".join(
        f"<pair{attr}><ingress>{i}</ingress><egress>{e}</egress></pair>" for i, e in pairs
    )
    return f'<cross-connects xmlns="{NS}">{body}</cross-connects>'


def delete(*ingress: int, op: str = "delete") -> str:
    body = "".join(
        f'<pair xmlns:nc="{NC}" nc:operation="{op}"><ingress>{i}</ingress></pair>' for i in ingress
    )
    return f'<cross-connects xmlns="{NS}">{body}</cross-connects>'


def error_of(reply: etree._Element) -> dict[str, str]:
    err = reply.find("nc:rpc-error", NSMAP)
    assert err is not None, etree.tostring(reply)
    return {etree.QName(child).localname: (child.text or "") for child in err}


def ok(reply: etree._Element) -> bool:
    return reply.find("nc:ok", NSMAP) is not None


# --- framing and hello ---------------------------------------------------------------------


def test_hello_announces_both_bases_and_a_session_id() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        a = await Netconf.open(sim)
        b = await Netconf.open(sim)
        assert {BASE_10, BASE_11} <= a.server_caps()
        assert any(c.startswith(NS) for c in a.server_caps())
        ids = [n.hello_field("session-id") for n in (a, b)]
        assert all(i and i.isdigit() for i in ids) and ids[0] != ids[1]
        await a.close()
        await b.close()

    run(scenario)


def test_base_10_only_client_gets_end_of_message_framing() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        nc = await Netconf.open(sim, caps=(BASE_10,))
        assert not nc.chunked
        assert ok(await nc.edit(xc((1, 2))))
        nc.send_raw(
            f'<rpc xmlns="{NC}" message-id="x"><get-config><source><running/>'
            f"</source></get-config></rpc>".encode()
        )
        raw = await asyncio.wait_for(nc.reader.readuntil(EOM), 5)
        assert not raw.startswith(b"\n#")
        data = etree.fromstring(raw[: -len(EOM)])
        assert data.findtext("nc:data/p:cross-connects/p:pair/p:egress", namespaces=NSMAP) == "2"
        await nc.close()

    run(scenario)


def test_base_11_client_gets_chunked_framing_and_may_split_chunks() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        nc = await Netconf.open(sim, caps=(BASE_10, BASE_11))
        assert nc.chunked
        rpc = (
            f'<rpc xmlns="{NC}" message-id="split"><edit-config><target><running/></target>'
            f"<config>{xc((3, 4))}</config></edit-config></rpc>"
        ).encode()
        # One message in three chunks, written a few bytes at a time.
        a, b = rpc[:40], rpc[40:90]
        c = rpc[90:]
        wire = b"\n#%d\n%s\n#%d\n%s\n#%d\n%s\n##\n" % (len(a), a, len(b), b, len(c), c)
        for i in range(0, len(wire), 7):
            nc.writer.write(wire[i : i + 7])
            await asyncio.sleep(0)
        header = await asyncio.wait_for(nc.reader.readexactly(2), 5)
        assert header == b"\n#"
        nc_reply = await nc.reader.readuntil(b"\n##\n")
        assert b"<ok/>" in nc_reply and b'message-id="split"' in nc_reply
        assert sim.cross_connects == {3: 4}
        await nc.close()

    run(scenario)


def test_hello_and_first_rpc_in_one_write() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        nc = await Netconf.open(sim, hello=False)
        raw = await nc.reader.readuntil(EOM)
        nc.server_hello = etree.fromstring(raw[: -len(EOM)])
        hello = f'<hello xmlns="{NC}"><capabilities><capability>{BASE_11}</capability>'
        hello += "</capabilities></hello>"
        rpc = f'<rpc xmlns="{NC}" message-id="7"><get/></rpc>'.encode()
        nc.writer.write(hello.encode() + EOM + b"\n#%d\n%s\n##\n" % (len(rpc), rpc))
        nc.chunked = True
        reply = await nc.receive()
        assert reply.get("message-id") == "7"
        assert reply.find("nc:data/p:opm-power", NSMAP) is not None
        await nc.close()

    run(scenario)


def test_bad_chunk_header_closes_the_session() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        nc = await Netconf.open(sim)
        nc.writer.write(b"garbage that is not a chunk\n")
        assert await asyncio.wait_for(nc.reader.read(), 5) == b""
        await nc.close()

    run(scenario)


def test_hello_without_a_base_capability_closes_the_session() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        nc = await Netconf.open(sim, caps=("urn:example:nothing",))
        assert await asyncio.wait_for(nc.reader.read(), 5) == b""
        await nc.close()

    run(scenario)


def test_framer_handles_partial_input_and_rejects_bad_sizes() -> None:
    framer = Framer()
    framer.chunked = True
    wire = b"\n#5\nhello\n#6\n world\n##\n"
    messages = []
    for byte in wire:
        framer.feed(bytes([byte]))
        while (m := framer.next_message()) is not None:
            messages.append(m)
    assert messages == [b"hello world"]
    for bad in (b"\n#0\nx", b"\n#01\nx", b"\n#abc\n", b"xx#1\nx"):
        framer = Framer()
        framer.chunked = True
        framer.feed(bad)
        with pytest.raises(FramingError):
            framer.next_message()


def test_only_the_netconf_subsystem_is_served() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        async with asyncssh.connect(
            "127.0.0.1",
            sim.port,
            username="admin",
            password="admin",
            known_hosts=None,
            client_keys=[],
            agent_path=None,
        ) as conn:
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_session(subsystem="sftp")
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_session()

    run(scenario)


def test_wrong_password_is_refused() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        with pytest.raises(asyncssh.PermissionDenied):
            await Netconf.open(sim, password="wrong")

    run(scenario)


# --- operations ----------------------------------------------------------------------------


def test_batched_create_and_delete_in_one_edit_config() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        sim.set_cross_connects({1: 33, 2: 34})
        nc = await Netconf.open(sim)
        reply = await nc.edit(delete(1, 2) + xc((1, 34), (5, 40)))
        assert ok(reply)
        assert sim.cross_connects == {1: 34, 5: 40}
        assert sim.rpc_counts["edit-config"] == 1
        reply = await nc.rpc(
            f'<get-config><source><running/></source><filter type="subtree">'
            f'<cross-connects xmlns="{NS}"/></filter></get-config>'
        )
        data = reply.find("nc:data", NSMAP)
        assert [etree.QName(c).localname for c in data] == ["cross-connects"]
        pairs = {
            int(p.findtext("p:ingress", namespaces=NSMAP)): int(
                p.findtext("p:egress", namespaces=NSMAP)
            )
            for p in data.iterfind("p:cross-connects/p:pair", NSMAP)
        }
        assert pairs == {1: 34, 5: 40}
        await nc.close()

    run(scenario)


def test_port_in_use_is_refused_by_name_and_the_batch_changes_nothing() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        sim.set_cross_connects({1: 33})
        nc = await Netconf.open(sim)
        # 7->8 is fine on its own, 9->33 collides with the egress of 1->33.
        err = error_of(await nc.edit(xc((7, 8), (9, 33))))
        assert err["error-type"] == "application"
        assert err["error-tag"] == "in-use"
        assert err["error-severity"] == "error"
        assert "port 33" in err["error-message"]
        assert sim.cross_connects == {1: 33}
        # A port is in use whether it is the ingress or the egress of a patch.
        for pair, port in (((1, 40), 1), ((40, 1), 1), ((33, 41), 33), ((40, 33), 33)):
            err = error_of(await nc.edit(xc(pair)))
            assert err["error-tag"] == "in-use"
            assert f"port {port} " in err["error-message"], err
        assert sim.cross_connects == {1: 33}
        # The same patch again is an idempotent merge.
        assert ok(await nc.edit(xc((1, 33))))
        # create on an existing ingress is data-exists.
        assert error_of(await nc.edit(xc((1, 33), op="create")))["error-tag"] == "data-exists"
        await nc.close()

    run(scenario)


def test_delete_of_a_missing_patch_fails_but_remove_does_not() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        sim.set_cross_connects({2: 3})
        nc = await Netconf.open(sim)
        err = error_of(await nc.edit(delete(2) + delete(9)))
        assert err["error-tag"] == "data-missing" and "9" in err["error-message"]
        assert sim.cross_connects == {2: 3}
        assert ok(await nc.edit(delete(2, 9, op="remove")))
        assert sim.cross_connects == {}
        await nc.close()

    run(scenario)


def test_replace_on_the_container_and_default_operation_replace() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        sim.set_cross_connects({1: 2, 3: 4})
        nc = await Netconf.open(sim)
        body = xc((5, 6)).replace(
            "<cross-connects ", f'<cross-connects xmlns:nc="{NC}" nc:operation="replace" '
        )
        assert ok(await nc.edit(body))
        assert sim.cross_connects == {5: 6}
        reply = await nc.rpc(
            "<edit-config><target><running/></target><default-operation>replace"
            f"</default-operation><config>{xc((7, 8))}</config></edit-config>"
        )
        assert ok(reply)
        assert sim.cross_connects == {7: 8}
        await nc.close()

    run(scenario)


@pytest.mark.parametrize(
    ("body", "tag", "error_type", "words"),
    [
        (
            "<get-config><source><candidate/></source></get-config>",
            "invalid-value",
            "protocol",
            "candidate",
        ),
        ("<commit/>", "operation-not-supported", "protocol", "commit"),
        (
            '<edit-config><target><running/></target><config><fan xmlns="' + NS + '"/>'
            "</config></edit-config>",
            "unknown-element",
            "application",
            "fan",
        ),
        (
            "<edit-config><target><running/></target><config><x xmlns='urn:other'/>"
            "</config></edit-config>",
            "unknown-namespace",
            "application",
            "urn:other",
        ),
        (
            "<edit-config><target><running/></target><config>"
            + xc((1, 999))
            + "</config></edit-config>",
            "invalid-value",
            "application",
            "port 999",
        ),
        (
            "<edit-config><target><running/></target><config>"
            + xc((4, 4))
            + "</config></edit-config>",
            "invalid-value",
            "application",
            "port 4",
        ),
        (
            "<edit-config><target><running/></target><config>"
            + xc((1, 2), op="frobnicate")
            + "</config></edit-config>",
            "bad-attribute",
            "protocol",
            "frobnicate",
        ),
        (
            "<edit-config><target><running/></target></edit-config>",
            "missing-element",
            "protocol",
            "config",
        ),
        (
            "<get><filter type='xpath' select='/'/></get>",
            "operation-not-supported",
            "protocol",
            "subtree",
        ),
    ],
)
def test_bad_requests_get_rpc_errors(body: str, tag: str, error_type: str, words: str) -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        nc = await Netconf.open(sim)
        reply = await nc.rpc(body, message_id="m-1")
        err = error_of(reply)
        assert (err["error-tag"], err["error-type"], err["error-severity"]) == (
            tag,
            error_type,
            "error",
        )
        assert words in err["error-message"]
        assert sim.cross_connects == {}
        # The session survives a refused request.
        assert ok(await nc.edit(xc((1, 2))))
        await nc.close()

    run(scenario)


def test_missing_message_id_and_malformed_xml() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        nc = await Netconf.open(sim)
        nc.send_raw(f'<rpc xmlns="{NC}"><get/></rpc>'.encode())
        err = error_of(await nc.receive())
        assert err["error-tag"] == "missing-attribute" and err["error-type"] == "rpc"
        nc.send_raw(b"<rpc><unclosed>")
        err = error_of(await nc.receive())
        assert err["error-tag"] == "malformed-message"
        await nc.close()

    run(scenario)


def test_reply_carries_every_rpc_attribute() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        nc = await Netconf.open(sim)
        attrs = 'message-id="42" xmlns:ex="urn:ex" ex:user="bob"'
        nc.send_raw(f'<rpc xmlns="{NC}" {attrs}><get/></rpc>'.encode())
        reply = await nc.receive()
        assert reply.get("message-id") == "42" and reply.get("{urn:ex}user") == "bob"
        await nc.close()

    run(scenario)


def test_labels_status_and_content_match_filter() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        nc = await Netconf.open(sim)
        config = (
            f'<port-config xmlns="{NS}"><port><port-id>5</port-id><label>server-a eth0</label>'
            "<status>DISABLED</status></port></port-config>"
        )
        assert ok(await nc.edit(config))
        assert sim.labels == {5: "server-a eth0"}
        assert sim.port_status[5] == "DISABLED" and sim.port_status[6] == "ENABLED"
        reply = await nc.rpc(
            f'<get-config><source><running/></source><filter><port-config xmlns="{NS}"><port>'
            "<port-id>5</port-id></port></port-config></filter></get-config>"
        )
        ports = reply.findall("nc:data/p:port-config/p:port", NSMAP)
        assert len(ports) == 1
        assert ports[0].findtext("p:label", namespaces=NSMAP) == "server-a eth0"
        # A disabled port cannot be patched.
        err = error_of(await nc.edit(xc((5, 6))))
        assert "port 5" in err["error-message"]
        bad = config.replace("DISABLED", "BROKEN")
        assert error_of(await nc.edit(bad))["error-tag"] == "invalid-value"
        await nc.close()

    run(scenario)


def test_power_only_on_patched_ports_and_not_in_get_config() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        sim.set_cross_connects({1: 17})
        nc = await Netconf.open(sim)
        reply = await nc.rpc("<get/>")
        power = {
            int(p.findtext("p:port-id", namespaces=NSMAP)): float(
                p.findtext("p:power", namespaces=NSMAP)
            )
            for p in reply.iterfind("nc:data/p:opm-power/p:port", NSMAP)
        }
        assert len(power) == 64
        assert power[1] == simulated_power(1) and power[17] == simulated_power(17)
        assert all(-7.0 <= power[p] <= -3.0 for p in (1, 17))
        assert all(v == DARK_DBM for p, v in power.items() if p not in (1, 17))
        reply = await nc.rpc("<get-config><source><running/></source></get-config>")
        assert reply.find("nc:data/p:opm-power", NSMAP) is None
        err = error_of(await nc.edit(f'<opm-power xmlns="{NS}"/>'))
        assert "opm-power" in err["error-message"]
        await nc.close()

    run(scenario, ports=64)


# --- failure modes -------------------------------------------------------------------------


def test_fail_next_refuse_and_ignore_modes() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        nc = await Netconf.open(sim)
        sim.fail_next(2, "laser safety interlock")
        for _ in range(2):
            err = error_of(await nc.edit(xc((1, 2))))
            assert err["error-message"] == "laser safety interlock"
        assert sim.cross_connects == {}
        assert ok(await nc.edit(xc((1, 2))))
        sim.refuse_edits("maintenance in progress")
        assert error_of(await nc.edit(xc((3, 4))))["error-message"] == "maintenance in progress"
        sim.mode = "ignore"
        assert ok(await nc.edit(xc((3, 4))))
        assert sim.cross_connects == {1: 2}
        sim.mode = "normal"
        assert ok(await nc.edit(xc((3, 4))))
        assert sim.cross_connects == {1: 2, 3: 4}
        await nc.close()

    run(scenario)


def test_hang_mode_stops_answering() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        nc = await Netconf.open(sim)
        sim.mode = "hang"
        nc.send_raw(f'<rpc xmlns="{NC}" message-id="1"><get/></rpc>'.encode())
        with pytest.raises(TimeoutError):
            await nc.receive(timeout=0.3)
        late = await Netconf.open(sim, hello=False)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(late.reader.readuntil(EOM), 0.3)
        sim.mode = "normal"
        fresh = await Netconf.open(sim)
        assert ok(await fresh.edit(xc((1, 2))))
        for n in (nc, late, fresh):
            await n.close()

    run(scenario)


def test_close_session_and_a_client_vanishing_mid_edit() -> None:
    async def scenario(sim: PolatisSimulator) -> None:
        sim.set_cross_connects({1: 2})
        nc = await Netconf.open(sim)
        rpc = (
            f'<rpc xmlns="{NC}" message-id="1"><edit-config><target><running/></target>'
            f"<config>{delete(1)}{xc((3, 4))}</config></edit-config></rpc>"
        ).encode()
        # Half of a chunk, then the connection drops: nothing of the batch may apply.
        nc.writer.write(b"\n#%d\n" % len(rpc) + rpc[: len(rpc) // 2])
        await asyncio.sleep(0.05)
        await nc.close()
        assert sim.cross_connects == {1: 2}
        other = await Netconf.open(sim)
        reply = await other.rpc("<close-session/>")
        assert ok(reply)
        assert await asyncio.wait_for(other.reader.read(), 5) == b""
        await other.close()

    run(scenario)


def test_threaded_runner_and_state_seeding() -> None:
    sim = PolatisSimulator(ports=8)
    with sim.run_in_thread():
        assert sim.port > 0
        sim.set_cross_connects({1: 5, 2: 6})
        assert sim.cross_connects == {1: 5, 2: 6}
        with pytest.raises(ValueError, match="port 5"):
            sim.set_cross_connects({1: 5, 3: 5})
        assert sim.cross_connects == {1: 5, 2: 6}
