"""A simulated Polatis optical switch: NETCONF 1.0/1.1 over the SSH subsystem "netconf".

State lives in memory only. Every edit-config is applied to a copy of the state and committed
in one step, so a refused item, an injected failure or a client vanishing mid-session never
leaves a half-applied batch behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncssh
from lxml import etree

NS = "http://www.polatis.com/yang/optical-switch"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
BASE_10 = "urn:ietf:params:netconf:base:1.0"
BASE_11 = "urn:ietf:params:netconf:base:1.1"
CAPABILITIES = (
    BASE_10,
    BASE_11,
    "urn:ietf:params:netconf:capability:writable-running:1.0",
    f"{NS}?module=optical-switch&revision=2017-08-04",
)
EOM = b"]]>]]>"
DARK_DBM = -60.0
PORT_STATES = ("ENABLED", "DISABLED")
EDIT_OPERATIONS = ("merge", "replace", "create", "delete", "remove")
# Big enough for any real request; stops a runaway client from growing the buffer forever.
MAX_MESSAGE = 16 * 1024 * 1024

Mode = Literal["normal", "refuse", "ignore", "hang"]

_XML_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, remove_blank_text=True, huge_tree=False
)
_host_key: asyncssh.SSHKey | None = None


def _q(name: str, ns: str = NS) -> str:
    return f"{{{ns}}}{name}"


def simulated_power(port: int) -> float:
    """Optical power (dBm) the simulator reports on a patched port: fixed per port, -3.0 to -7.0."""
    return round(-3.0 - ((port * 37) % 41) / 10.0, 1)


class RpcError(Exception):
    """One NETCONF rpc-error: becomes an <rpc-error> element in the reply."""

    def __init__(
        self,
        tag: str,
        message: str,
        *,
        error_type: str = "application",
        info: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.tag = tag
        self.message = message
        self.error_type = error_type
        self.info = dict(info or {})


class FramingError(Exception):
    """The peer broke NETCONF framing; the session is closed."""


@dataclass
class SwitchState:
    """The switch's configuration: patches, labels and admin status per port."""

    ports: int
    cross_connects: dict[int, int] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)
    status: dict[int, str] = field(default_factory=dict)

    def copy(self) -> SwitchState:
        """A deep-enough copy to edit without touching the original."""
        return SwitchState(
            self.ports, dict(self.cross_connects), dict(self.labels), dict(self.status)
        )

    def port_status(self, port: int) -> str:
        """Admin status of a port (ports start ENABLED)."""
        return self.status.get(port, "ENABLED")


class Framer:
    """Splits an incoming byte stream into NETCONF messages (EOM for 1.0, chunked for 1.1)."""

    def __init__(self) -> None:
        self.chunked = False
        self._buf = bytearray()
        self._parts: list[bytes] = []

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buf += data
        if len(self._buf) > MAX_MESSAGE:
            raise FramingError("message too large")

    def next_message(self) -> bytes | None:
        """The next complete message, or None until more bytes arrive."""
        return self._next_chunked() if self.chunked else self._next_eom()

    def _next_eom(self) -> bytes | None:
        end = self._buf.find(EOM)
        if end < 0:
            return None
        message = bytes(self._buf[:end])
        del self._buf[: end + len(EOM)]
        return message

    def _next_chunked(self) -> bytes | None:
        buf = self._buf
        while len(buf) >= 4:
            if buf[:2] != b"\n#":
                raise FramingError("expected a chunk header")
            if buf[2:4] == b"#\n":
                del buf[:4]
                message = b"".join(self._parts)
                self._parts = []
                return message
            newline = buf.find(b"\n", 2)
            if newline < 0:
                # RFC 6242: at most 10 digits in a chunk size.
                if len(buf) > 13:
                    raise FramingError("chunk header too long")
                return None
            digits = bytes(buf[2:newline])
            if not digits.isdigit() or digits.startswith(b"0") or len(digits) > 10:
                raise FramingError(f"bad chunk size {digits!r}")
            size = int(digits)
            if size > 4294967295:
                raise FramingError("chunk too large")
            start = newline + 1
            if len(buf) < start + size:
                return None
            self._parts.append(bytes(buf[start : start + size]))
            del buf[: start + size]
        return None


def frame(payload: bytes, chunked: bool) -> bytes:
    """Wrap one message for the wire in the session's framing."""
    if chunked:
        return b"\n#%d\n" % len(payload) + payload + b"\n##\n"
    return payload + EOM


# --- data tree and subtree filtering ------------------------------------------------------


def _leaf(parent: etree._Element, name: str, text: str) -> None:
    etree.SubElement(parent, _q(name)).text = text


def build_tree(state: SwitchState, *, with_state: bool) -> list[etree._Element]:
    """The datastore as XML: configuration, plus operational power readings if with_state."""
    xc = etree.Element(_q("cross-connects"), nsmap={None: NS})
    for ingress, egress in sorted(state.cross_connects.items()):
        pair = etree.SubElement(xc, _q("pair"))
        _leaf(pair, "ingress", str(ingress))
        _leaf(pair, "egress", str(egress))
    pc = etree.Element(_q("port-config"), nsmap={None: NS})
    for port in range(1, state.ports + 1):
        entry = etree.SubElement(pc, _q("port"))
        _leaf(entry, "port-id", str(port))
        _leaf(entry, "label", state.labels.get(port, ""))
        _leaf(entry, "status", state.port_status(port))
    tree = [xc, pc]
    if with_state:
        lit = set(state.cross_connects) | set(state.cross_connects.values())
        opm = etree.Element(_q("opm-power"), nsmap={None: NS})
        for port in range(1, state.ports + 1):
            entry = etree.SubElement(opm, _q("port"))
            _leaf(entry, "port-id", str(port))
            dark = port not in lit or state.port_status(port) != "ENABLED"
            _leaf(entry, "power", f"{DARK_DBM if dark else simulated_power(port):.1f}")
        tree.append(opm)
    return tree


def _local(el: etree._Element) -> tuple[str | None, str]:
    qname = etree.QName(el)
    return qname.namespace, qname.localname


def _matches(data: etree._Element, flt: etree._Element) -> bool:
    f_ns, f_name = _local(flt)
    d_ns, d_name = _local(data)
    # A filter element without a namespace matches any namespace, as RFC 6241 6.2.1 allows.
    return f_name == d_name and (f_ns is None or f_ns == d_ns)


def _is_element(el: Any) -> bool:
    return isinstance(el.tag, str)


def subtree_filter(data: etree._Element, flt: etree._Element) -> etree._Element | None:
    """Apply one filter node to one data node (RFC 6241 section 6), or None if nothing matches."""
    f_children = [c for c in flt if _is_element(c)]
    if not f_children:
        if flt.text and flt.text.strip() and (data.text or "").strip() != flt.text.strip():
            return None
        return data
    content = [c for c in f_children if len(c) == 0 and (c.text or "").strip()]
    others = [c for c in f_children if c not in content]
    for match in content:
        if not any(
            _matches(d, match) and (d.text or "").strip() == (match.text or "").strip()
            for d in data
        ):
            return None
    result = etree.Element(data.tag, nsmap=data.nsmap)
    if not others:
        # Only content-match nodes at this level: the whole entry is selected.
        for d in data:
            result.append(_clone(d))
        return result
    for d in data:
        if any(_matches(d, m) for m in content):
            result.append(_clone(d))
            continue
        for f in others:
            if _matches(d, f):
                picked = subtree_filter(d, f)
                if picked is not None:
                    result.append(_clone(picked))
                break
    return result if len(result) else None


def _clone(el: etree._Element) -> etree._Element:
    return copy.deepcopy(el)


def filter_tree(tree: list[etree._Element], flt: etree._Element | None) -> list[etree._Element]:
    """Select the parts of the datastore a <filter> asks for (everything without a filter)."""
    if flt is None:
        return tree
    if flt.get("type", "subtree") != "subtree":
        raise RpcError(
            "operation-not-supported",
            "only subtree filters are supported",
            error_type="protocol",
        )
    selected = []
    for f in flt:
        if not _is_element(f):
            continue
        for top in tree:
            if _matches(top, f):
                picked = subtree_filter(top, f)
                if picked is not None:
                    selected.append(picked)
    return selected


# --- edit-config --------------------------------------------------------------------------


def _operation(el: etree._Element, inherited: str) -> str:
    op = el.get(_q("operation", NC))
    if op is None:
        return inherited
    if op not in EDIT_OPERATIONS:
        raise RpcError(
            "bad-attribute",
            f"unknown operation {op!r}",
            error_type="protocol",
            info={"bad-attribute": "operation", "bad-element": etree.QName(el).localname},
        )
    return op


def _int_leaf(el: etree._Element, name: str, state: SwitchState, *, required: bool) -> int | None:
    child = el.find(_q(name))
    if child is None:
        if required:
            raise RpcError(
                "missing-element",
                f"{etree.QName(el).localname} has no {name}",
                info={"bad-element": name},
            )
        return None
    text = (child.text or "").strip()
    if not text.isdigit():
        raise RpcError("invalid-value", f"{name} {text!r} is not a port number")
    port = int(text)
    if not 1 <= port <= state.ports:
        raise RpcError(
            "invalid-value", f"port {port} does not exist (the switch has {state.ports} ports)"
        )
    return port


def _check_children(el: etree._Element, allowed: set[str]) -> None:
    for child in el:
        if not _is_element(child):
            continue
        ns, name = _local(child)
        if ns != NS or name not in allowed:
            raise RpcError(
                "unknown-element",
                f"unknown element {name!r} in {etree.QName(el).localname}",
                info={"bad-element": name},
            )


def _edit_pair(state: SwitchState, pair: etree._Element, op: str) -> None:
    _check_children(pair, {"ingress", "egress"})
    ingress = _int_leaf(pair, "ingress", state, required=True)
    assert ingress is not None
    egress = _int_leaf(pair, "egress", state, required=False)
    xc = state.cross_connects
    if op in ("delete", "remove"):
        if ingress in xc:
            del xc[ingress]
        elif op == "delete":
            raise RpcError("data-missing", f"no cross-connect on ingress port {ingress}")
        return
    if op == "none":
        if ingress not in xc:
            raise RpcError("data-missing", f"no cross-connect on ingress port {ingress}")
        return
    if egress is None:
        if ingress in xc and op == "merge":
            return
        raise RpcError(
            "missing-element",
            f"cross-connect on ingress port {ingress} has no egress",
            info={"bad-element": "egress"},
        )
    current = xc.get(ingress)
    if current is not None:
        if op == "create":
            raise RpcError(
                "data-exists",
                f"port {ingress} is already in use: cross-connect {ingress}->{current} exists",
            )
        if current == egress:
            return
        if op == "merge":
            # A merge must not silently re-route light: the caller removes first.
            raise RpcError(
                "in-use",
                f"port {ingress} is already in use: cross-connected to {current}",
            )
        del xc[ingress]  # replace
    if ingress == egress:
        raise RpcError("invalid-value", f"port {ingress} cannot be connected to itself")
    by_egress = {e: i for i, e in xc.items()}
    for port in (ingress, egress):
        if port in xc and port != ingress:
            raise RpcError(
                "in-use",
                f"port {port} is already in use: ingress of cross-connect {port}->{xc[port]}",
            )
        if port in by_egress:
            raise RpcError(
                "in-use",
                f"port {port} is already in use: egress of cross-connect {by_egress[port]}->{port}",
            )
        if state.port_status(port) != "ENABLED":
            raise RpcError("operation-failed", f"port {port} is disabled")
    xc[ingress] = egress


def _edit_port(state: SwitchState, entry: etree._Element, op: str) -> None:
    _check_children(entry, {"port-id", "label", "status"})
    port = _int_leaf(entry, "port-id", state, required=True)
    assert port is not None
    if op in ("delete", "remove", "replace"):
        state.labels.pop(port, None)
        state.status.pop(port, None)
        if op != "replace":
            return
    if op == "none":
        op = "merge"
    for child in entry:
        if not _is_element(child):
            continue
        name = etree.QName(child).localname
        if name == "port-id":
            continue
        leaf_op = _operation(child, op)
        value = (child.text or "").strip()
        if name == "label":
            if leaf_op in ("delete", "remove") or not value:
                state.labels.pop(port, None)
            elif len(value) > 255:
                raise RpcError("invalid-value", f"label of port {port} is longer than 255")
            else:
                state.labels[port] = value
        elif leaf_op in ("delete", "remove"):
            state.status.pop(port, None)
        elif value not in PORT_STATES:
            raise RpcError(
                "invalid-value",
                f"status {value!r} of port {port} is not one of {', '.join(PORT_STATES)}",
            )
        else:
            state.status[port] = value


def apply_edit(state: SwitchState, config: etree._Element, default_op: str) -> None:
    """Apply a <config> element to state in document order; raises RpcError on the first fault."""
    for top in config:
        if not _is_element(top):
            continue
        ns, name = _local(top)
        if ns != NS:
            raise RpcError(
                "unknown-namespace",
                f"unknown namespace {ns!r}",
                info={"bad-element": name, "bad-namespace": ns or ""},
            )
        op = _operation(top, default_op)
        if name == "cross-connects":
            _check_children(top, {"pair"})
            if op in ("delete", "remove", "replace"):
                state.cross_connects.clear()
            if op == "create" and state.cross_connects:
                raise RpcError("data-exists", "cross-connects already exist")
            if op in ("delete", "remove"):
                continue
            for pair in top:
                if _is_element(pair):
                    _edit_pair(state, pair, _operation(pair, op))
        elif name == "port-config":
            _check_children(top, {"port"})
            if op in ("delete", "remove", "replace"):
                state.labels.clear()
                state.status.clear()
            if op in ("delete", "remove"):
                continue
            for entry in top:
                if _is_element(entry):
                    _edit_port(state, entry, _operation(entry, op))
        elif name == "opm-power":
            raise RpcError("invalid-value", "opm-power is operational state and cannot be edited")
        else:
            raise RpcError(
                "unknown-element", f"unknown element {name!r}", info={"bad-element": name}
            )


# --- the server ---------------------------------------------------------------------------


def _default_host_key() -> asyncssh.SSHKey:
    # One key per process: generating is cheap, but tests start many simulators.
    global _host_key
    if _host_key is None:
        _host_key = asyncssh.generate_private_key("ssh-ed25519")
    return _host_key


class PolatisSimulator:
    """An in-memory Polatis switch serving NETCONF over SSH on 127.0.0.1."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        ports: int = 64,
        username: str = "admin",
        password: str = "admin",
        *,
        host_key: asyncssh.SSHKey | None = None,
    ) -> None:
        if ports < 2:
            raise ValueError("a switch needs at least 2 ports")
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.rpc_counts: Counter[str] = Counter()
        self._host_key = host_key
        self._state = SwitchState(ports)
        self._lock = threading.Lock()
        self._mode: Mode = "normal"
        self._fail: list[str] = []
        self._refuse_message = "edit refused by the switch (simulated)"
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._next_session_id = 1

    # Inspection and test controls; safe to call from another thread.

    @property
    def ports(self) -> int:
        """Number of ports on the switch."""
        return self._state.ports

    @property
    def cross_connects(self) -> dict[int, int]:
        """A copy of the current patches, ingress -> egress."""
        with self._lock:
            return dict(self._state.cross_connects)

    @property
    def labels(self) -> dict[int, str]:
        """A copy of the non-empty port labels."""
        with self._lock:
            return dict(self._state.labels)

    @property
    def port_status(self) -> dict[int, str]:
        """Admin status of every port."""
        with self._lock:
            return {p: self._state.port_status(p) for p in range(1, self._state.ports + 1)}

    def set_cross_connects(self, patches: Mapping[int, int]) -> None:
        """Replace all patches directly (e.g. to seed patches labkeeper does not own)."""
        state = SwitchState(self.ports)
        for ingress, egress in patches.items():
            pair = etree.Element(_q("pair"))
            _leaf(pair, "ingress", str(ingress))
            _leaf(pair, "egress", str(egress))
            try:
                _edit_pair(state, pair, "create")
            except RpcError as exc:
                raise ValueError(exc.message) from None
        with self._lock:
            self._state.cross_connects = state.cross_connects

    def set_port_status(self, port: int, status: str) -> None:
        """Set a port's admin status directly."""
        if status not in PORT_STATES or not 1 <= port <= self.ports:
            raise ValueError(f"bad port {port} or status {status!r}")
        with self._lock:
            self._state.status[port] = status

    @property
    def mode(self) -> Mode:
        """normal; refuse (every edit fails); ignore (edits answer ok, change nothing); hang."""
        return self._mode

    @mode.setter
    def mode(self, value: Mode) -> None:
        if value not in ("normal", "refuse", "ignore", "hang"):
            raise ValueError(f"unknown mode {value!r}")
        self._mode = value

    def refuse_edits(self, message: str = "edit refused by the switch (simulated)") -> None:
        """Refuse every edit-config with this message until mode is set back to normal."""
        self._refuse_message = message
        self._mode = "refuse"

    def fail_next(self, n: int = 1, message: str = "simulated switch failure") -> None:
        """Make the next n edit-configs fail with an rpc-error carrying message."""
        with self._lock:
            self._fail.extend([message] * n)

    # Lifecycle.

    async def start(self) -> None:
        """Start listening; the bound port is in self.port afterwards."""
        self._acceptor = await asyncssh.create_server(
            lambda: _Server(self),
            self.host,
            self.port,
            server_host_keys=[self._host_key or _default_host_key()],
            encoding=None,
            allow_pty=False,
            x11_forwarding=False,
            agent_forwarding=False,
            keepalive_interval=0,
        )
        self.port = self._acceptor.get_port()

    async def stop(self) -> None:
        """Stop listening and drop every open session."""
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
        for conn in list(self._connections):
            conn.close()
        for conn in list(self._connections):
            with contextlib.suppress(Exception):
                await conn.wait_closed()
        self._connections.clear()

    async def __aenter__(self) -> PolatisSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def run_in_thread(self) -> Iterator[PolatisSimulator]:
        """Run the simulator on an event loop in a background thread (for synchronous code)."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="polatis-sim", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=10)
            yield self
        finally:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()

    # Request handling (called on the event loop).

    def _new_session_id(self) -> int:
        with self._lock:
            session_id = self._next_session_id
            self._next_session_id += 1
        return session_id

    def _snapshot(self) -> SwitchState:
        with self._lock:
            return self._state.copy()

    def handle_rpc(self, op: etree._Element) -> etree._Element | None:
        """Execute one operation; returns the <data> element, or None for <ok/>."""
        ns, name = _local(op)
        self.rpc_counts[name] += 1
        if ns != NC:
            raise RpcError(
                "operation-not-supported", f"operation {name!r} is not supported", error_type="rpc"
            )
        if name == "get":
            data = etree.Element(_q("data", NC), nsmap={None: NC})
            for el in filter_tree(
                build_tree(self._snapshot(), with_state=True), op.find(_q("filter", NC))
            ):
                data.append(el)
            return data
        if name == "get-config":
            self._check_datastore(op, "source")
            data = etree.Element(_q("data", NC), nsmap={None: NC})
            for el in filter_tree(
                build_tree(self._snapshot(), with_state=False), op.find(_q("filter", NC))
            ):
                data.append(el)
            return data
        if name == "edit-config":
            self._edit_config(op)
            return None
        if name in ("lock", "unlock"):
            self._check_datastore(op, "target")
            return None
        raise RpcError(
            "operation-not-supported", f"operation {name!r} is not supported", error_type="protocol"
        )

    def _check_datastore(self, op: etree._Element, which: str) -> None:
        holder = op.find(_q(which, NC))
        if holder is None or len(holder) != 1:
            raise RpcError(
                "missing-element",
                f"<{which}> must name one datastore",
                error_type="protocol",
                info={"bad-element": which},
            )
        ns, name = _local(holder[0])
        if ns != NC or name != "running":
            raise RpcError(
                "invalid-value",
                f"datastore {name!r} is not supported; only running",
                error_type="protocol",
            )

    def _edit_config(self, op: etree._Element) -> None:
        self._check_datastore(op, "target")
        default_op = "merge"
        default_el = op.find(_q("default-operation", NC))
        if default_el is not None:
            default_op = (default_el.text or "").strip()
            if default_op not in ("merge", "replace", "none"):
                raise RpcError(
                    "invalid-value", f"default-operation {default_op!r}", error_type="protocol"
                )
        config = op.find(_q("config", NC))
        if config is None:
            raise RpcError(
                "missing-element",
                "edit-config needs <config>",
                error_type="protocol",
                info={"bad-element": "config"},
            )
        with self._lock:
            if self._fail:
                raise RpcError("operation-failed", self._fail.pop(0))
            if self._mode == "refuse":
                raise RpcError("operation-failed", self._refuse_message)
            draft = self._state.copy()
            apply_edit(draft, config, default_op)
            if self._mode != "ignore":
                # Commit point: the whole batch becomes visible at once, or nothing does.
                self._state = draft


class _Server(asyncssh.SSHServer):
    def __init__(self, sim: PolatisSimulator) -> None:
        self._sim = sim
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._sim._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._sim._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == self._sim.username and password == self._sim.password

    def session_requested(self) -> asyncssh.SSHServerSession[bytes]:
        return _NetconfSession(self._sim)


class _NetconfSession(asyncssh.SSHServerSession[bytes]):
    """One NETCONF session on one SSH channel."""

    def __init__(self, sim: PolatisSimulator) -> None:
        self._sim = sim
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._framer = Framer()
        self._hello_done = False
        self._chunked = False
        self._dead = False
        self._session_id = sim._new_session_id()

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan

    def subsystem_requested(self, subsystem: str) -> bool:
        return subsystem == "netconf"

    def session_started(self) -> None:
        if self._sim.mode == "hang":
            # A session opened while hung never gets a hello, like a wedged switch.
            self._dead = True
            return
        hello = etree.Element(_q("hello", NC), nsmap={None: NC})
        caps = etree.SubElement(hello, _q("capabilities", NC))
        for cap in CAPABILITIES:
            etree.SubElement(caps, _q("capability", NC)).text = cap
        etree.SubElement(hello, _q("session-id", NC)).text = str(self._session_id)
        self._send(hello)

    def data_received(self, data: bytes, datatype: int | None) -> None:
        if self._dead or self._sim.mode == "hang":
            return
        try:
            self._framer.feed(data)
            while (message := self._framer.next_message()) is not None:
                self._dispatch(message)
                if self._dead:
                    return
        except FramingError:
            self._close()

    def eof_received(self) -> bool:
        return False

    def _send(self, el: etree._Element) -> None:
        if self._chan is not None:
            payload = etree.tostring(el, xml_declaration=True, encoding="UTF-8")
            self._chan.write(frame(payload, self._chunked))

    def _close(self) -> None:
        self._dead = True
        if self._chan is not None:
            self._chan.close()

    def _dispatch(self, message: bytes) -> None:
        try:
            root = etree.fromstring(message, _XML_PARSER)
        except etree.XMLSyntaxError as exc:
            if not self._hello_done:
                self._close()
                return
            self._send(
                _error_reply(None, RpcError("malformed-message", str(exc), error_type="rpc"))
            )
            return
        if not self._hello_done:
            self._on_hello(root)
            return
        if root.tag == _q("hello", NC):
            # A second hello is a protocol violation (RFC 6241 8.1): end the session.
            self._close()
            return
        if root.tag != _q("rpc", NC):
            self._send(
                _error_reply(
                    None,
                    RpcError(
                        "unknown-element", f"expected <rpc>, got {root.tag}", error_type="rpc"
                    ),
                )
            )
            return
        self._on_rpc(root)

    def _on_hello(self, root: etree._Element) -> None:
        if root.tag != _q("hello", NC) or root.find(_q("session-id", NC)) is not None:
            self._close()
            return
        caps = {(c.text or "").strip() for c in root.iter(_q("capability", NC))}
        if BASE_10 not in caps and BASE_11 not in caps:
            self._close()
            return
        self._hello_done = True
        self._chunked = BASE_11 in caps
        self._framer.chunked = self._chunked

    def _on_rpc(self, rpc: etree._Element) -> None:
        if rpc.get("message-id") is None:
            err = RpcError(
                "missing-attribute",
                "rpc has no message-id",
                error_type="rpc",
                info={"bad-attribute": "message-id", "bad-element": "rpc"},
            )
            self._send(_error_reply(rpc, err))
            return
        ops = [c for c in rpc if _is_element(c)]
        if len(ops) != 1:
            self._send(
                _error_reply(
                    rpc,
                    RpcError("malformed-message", "rpc must hold one operation", error_type="rpc"),
                )
            )
            return
        op = ops[0]
        if op.tag == _q("close-session", NC):
            self._sim.rpc_counts["close-session"] += 1
            self._send(_reply(rpc, None))
            self._close()
            return
        try:
            data = self._sim.handle_rpc(op)
        except RpcError as err:
            self._send(_error_reply(rpc, err))
            return
        self._send(_reply(rpc, data))


def _reply_root(rpc: etree._Element | None) -> etree._Element:
    reply = etree.Element(_q("rpc-reply", NC), nsmap={None: NC})
    if rpc is not None:
        # RFC 6241 4.2: the reply carries every attribute of the request.
        for key, value in rpc.attrib.items():
            reply.set(key, value)
    return reply


def _reply(rpc: etree._Element, data: etree._Element | None) -> etree._Element:
    reply = _reply_root(rpc)
    if data is None:
        etree.SubElement(reply, _q("ok", NC))
    else:
        reply.append(data)
    return reply


def _error_reply(rpc: etree._Element | None, err: RpcError) -> etree._Element:
    reply = _reply_root(rpc)
    error = etree.SubElement(reply, _q("rpc-error", NC))
    etree.SubElement(error, _q("error-type", NC)).text = err.error_type
    etree.SubElement(error, _q("error-tag", NC)).text = err.tag
    etree.SubElement(error, _q("error-severity", NC)).text = "error"
    message = etree.SubElement(error, _q("error-message", NC))
    message.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    message.text = err.message
    if err.info:
        info = etree.SubElement(error, _q("error-info", NC))
        for key, value in err.info.items():
            etree.SubElement(info, _q(key, NC)).text = value
    return reply


def serve_polatis(
    port: int = 8830, ports: int = 64, username: str = "admin", password: str = "admin"
) -> None:
    """Run a simulated switch on 127.0.0.1 until Ctrl-C."""

    async def main() -> None:
        sim = PolatisSimulator(port=port, ports=ports, username=username, password=password)
        await sim.start()
        print(f"Polatis simulator: NETCONF on 127.0.0.1:{sim.port}, {ports} ports", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await sim.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
