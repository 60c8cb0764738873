"""Polatis optical switch driver: cross-connects, port labels and power over NETCONF (ncclient)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from lxml import etree
from ncclient import manager
from ncclient.operations.errors import OperationError, TimeoutExpiredError
from ncclient.operations.rpc import RPCError
from ncclient.transport.errors import (
    AuthenticationError,
    SessionCloseError,
    SessionError,
    SSHError,
    TransportError,
)

from labkeeper.drivers.base import AuthFailed, CommandFailed, DriverError, Timeout, Unreachable

NS = "http://www.polatis.com/yang/optical-switch"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
_NSMAP = {"p": NS}

__all__ = [
    "NS",
    "Plan",
    "PolatisClient",
    "SwitchRefused",
    "plan",
]


class SwitchRefused(CommandFailed):
    """The switch answered a request with an rpc-error; its own text is in switch_message."""

    def __init__(self, what: str, switch_message: str, error_tag: str | None = None) -> None:
        super().__init__(f"{what}: {switch_message}")
        self.switch_message = switch_message
        self.error_tag = error_tag


@dataclass(frozen=True)
class Plan:
    """What a reconcile pass does: patches to add and remove, and what it leaves alone."""

    add: list[tuple[int, int]] = field(default_factory=list)
    remove: list[tuple[int, int]] = field(default_factory=list)
    # Patches on the switch that labkeeper does not own: reported, never touched.
    foreign: list[tuple[int, int]] = field(default_factory=list)
    # Desired patches that cannot be made because a foreign patch holds one of their ports.
    blocked: list[tuple[int, int]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """True when the switch needs no change."""
        return not self.add and not self.remove


def plan(desired: Mapping[int, int], actual: Mapping[int, int], owned_ingress: set[int]) -> Plan:
    """Work out the edits that turn actual into desired without touching patches we don't own."""
    remove: list[tuple[int, int]] = []
    foreign: list[tuple[int, int]] = []
    kept: dict[int, int] = {}
    for ingress, egress in sorted(actual.items()):
        if desired.get(ingress) == egress:
            kept[ingress] = egress
        elif ingress in owned_ingress:
            remove.append((ingress, egress))
        else:
            foreign.append((ingress, egress))
            kept[ingress] = egress
    # Removals go first in the batch, so only patches that stay can block a port.
    busy = set(kept) | set(kept.values())
    add: list[tuple[int, int]] = []
    blocked: list[tuple[int, int]] = []
    for ingress, egress in sorted(desired.items()):
        if kept.get(ingress) == egress:
            continue
        if ingress == egress or ingress in busy or egress in busy:
            blocked.append((ingress, egress))
            continue
        add.append((ingress, egress))
        busy.update((ingress, egress))
    return Plan(add=add, remove=remove, foreign=foreign, blocked=blocked)


def _e(tag: str, *children: etree._Element, text: str | None = None) -> etree._Element:
    el = etree.Element(f"{{{NS}}}{tag}", nsmap={None: NS})
    el.extend(children)
    if text is not None:
        el.text = text
    return el


def _config(*children: etree._Element) -> etree._Element:
    config = etree.Element(f"{{{NC}}}config", nsmap={"nc": NC})
    config.extend(children)
    return config


def _ints(data: etree._Element, path: str, key: str, value: str) -> list[tuple[int, str]]:
    out = []
    for entry in data.iterfind(path, _NSMAP):
        k = entry.findtext(f"p:{key}", namespaces=_NSMAP)
        if k is None or not k.strip().isdigit():
            continue
        out.append((int(k), (entry.findtext(f"p:{value}", namespaces=_NSMAP) or "").strip()))
    return out


class PolatisClient:
    """A NETCONF session with one Polatis switch; use as a context manager."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        timeout: float = 10,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.timeout = timeout
        self._m: Any = None
        # After a timeout the session's state is unknown: drop it instead of closing politely.
        self._broken = False

    def __repr__(self) -> str:
        return f"PolatisClient({self.host!r}, {self.port})"

    # --- session ---------------------------------------------------------------------------

    def connect(self) -> Self:
        """Open the SSH connection and NETCONF session."""
        if self._m is not None:
            return self
        try:
            self._m = manager.connect(
                host=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                hostkey_verify=False,
                look_for_keys=False,
                allow_agent=False,
                timeout=self.timeout,
                manager_params={"timeout": self.timeout},
            )
        except AuthenticationError as exc:
            raise AuthFailed(f"{self.host}:{self.port}: authentication failed") from exc
        except TimeoutError as exc:
            raise Timeout(f"{self.host}:{self.port}: no answer within {self.timeout} s") from exc
        except SessionError as exc:
            # ncclient raises this when the switch never sends its hello.
            raise Timeout(f"{self.host}:{self.port}: {exc}") from exc
        except (SSHError, TransportError, OSError) as exc:
            raise Unreachable(f"{self.host}:{self.port}: {exc}") from exc
        self._broken = False
        return self

    def close(self) -> None:
        """End the session (politely unless it is already broken)."""
        m, self._m = self._m, None
        if m is None:
            return
        if not self._broken:
            # Polite close-session; if that fails the transport is dropped below anyway.
            with contextlib.suppress(Exception):
                m.close_session()
                return
        with contextlib.suppress(Exception):
            m.session.close()

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def server_capabilities(self) -> list[str]:
        """Capabilities the switch announced in its hello."""
        return list(self._manager().server_capabilities)

    @property
    def netconf_version(self) -> str:
        """The negotiated base protocol: "1.1" (chunked framing) or "1.0" (end-of-message)."""
        # ncclient does not expose the negotiated base; mirror its rule from the hellos.
        base11 = "urn:ietf:params:netconf:base:1.1"
        m = self._manager()
        both = base11 in m.server_capabilities and base11 in m.client_capabilities
        return "1.1" if both else "1.0"

    def _manager(self) -> Any:
        if self._m is None:
            raise DriverError(f"{self!r} is not connected")
        return self._m

    def _call(self, what: str, op: str, **kwargs: Any) -> Any:
        m = self._manager()
        try:
            return getattr(m, op)(**kwargs)
        except RPCError as exc:
            text = (exc.message or str(exc)).strip()
            raise SwitchRefused(what, text, exc.tag) from exc
        except TimeoutExpiredError as exc:
            self._broken = True
            raise Timeout(f"{self.host}:{self.port}: {what}: no reply in {self.timeout} s") from exc
        except (SessionCloseError, TransportError) as exc:
            self._broken = True
            raise Unreachable(f"{self.host}:{self.port}: {what}: {exc}") from exc
        except OperationError as exc:
            raise CommandFailed(f"{what}: {exc}") from exc

    def _get(self, what: str, subtree: etree._Element, *, config: bool) -> etree._Element:
        flt = ("subtree", etree.tostring(subtree).decode())
        if config:
            reply = self._call(what, "get_config", source="running", filter=flt)
        else:
            reply = self._call(what, "get", filter=flt)
        return reply.data_ele

    def _edit(self, what: str, *children: etree._Element) -> None:
        self._call(
            what,
            "edit_config",
            target="running",
            config=_config(*children),
            default_operation="merge",
        )

    # --- cross-connects --------------------------------------------------------------------

    def get_cross_connects(self) -> dict[int, int]:
        """All patches on the switch, ingress -> egress."""
        data = self._get("read cross-connects", _e("cross-connects"), config=True)
        out: dict[int, int] = {}
        for ingress, egress in _ints(data, "p:cross-connects/p:pair", "ingress", "egress"):
            if egress.isdigit():
                out[ingress] = int(egress)
        return out

    def apply(
        self,
        add: Iterable[tuple[int, int]] = (),
        remove: Iterable[int | tuple[int, int]] = (),
        *,
        missing_ok: bool = False,
    ) -> None:
        """Remove and add patches in ONE edit-config: the switch applies all of it or none."""
        # remove takes ingress ports or (ingress, egress) pairs; only the ingress keys a patch.
        # With missing_ok, removals use NETCONF 1.1 "remove", which tolerates an absent patch
        # (a retried teardown); plain "delete" makes the whole batch fail on one.
        add = [(int(i), int(e)) for i, e in add]
        gone = [int(r[0] if isinstance(r, tuple) else r) for r in remove]
        if not add and not gone:
            return
        ingress_seen: set[int] = set()
        egress_seen: set[int] = set()
        for i, e in add:
            if i in ingress_seen or e in egress_seen:
                raise CommandFailed(f"patch {i}->{e} reuses a port already in this batch")
            ingress_seen.add(i)
            egress_seen.add(e)
        xc = _e("cross-connects")
        # Deletes come first: the switch applies the batch in document order, so a port freed
        # here can be reused by a create later in the same request.
        for ingress in dict.fromkeys(gone):
            pair = _e("pair", _e("ingress", text=str(ingress)))
            pair.set(f"{{{NC}}}operation", "remove" if missing_ok else "delete")
            xc.append(pair)
        for ingress, egress in add:
            xc.append(_e("pair", _e("ingress", text=str(ingress)), _e("egress", text=str(egress))))
        self._edit("apply cross-connects", xc)

    def verify(self, expected: Mapping[int, int], absent: Iterable[int] = ()) -> list[str]:
        """Read the switch back; one message per expected patch missing or wrong (empty if OK)."""
        actual = self.get_cross_connects()
        problems = []
        for ingress, egress in sorted(expected.items()):
            found = actual.get(ingress)
            if found is None:
                problems.append(f"ingress {ingress}: expected {ingress}->{egress}, found no patch")
            elif found != egress:
                problems.append(
                    f"ingress {ingress}: expected {ingress}->{egress}, found {ingress}->{found}"
                )
        for ingress in sorted(set(absent)):
            if ingress in actual:
                problems.append(
                    f"ingress {ingress}: expected no patch, found {ingress}->{actual[ingress]}"
                )
        return problems

    def reconcile(self, desired: Mapping[int, int], owned_ingress: set[int]) -> Plan:
        """Read, plan, apply and verify; raises CommandFailed if the switch disagrees afterwards."""
        the_plan = plan(desired, self.get_cross_connects(), owned_ingress)
        if the_plan.empty:
            return the_plan
        self.apply(add=the_plan.add, remove=the_plan.remove)
        problems = self.verify(
            dict(the_plan.add), absent={i for i, _ in the_plan.remove} - set(desired)
        )
        if problems:
            raise CommandFailed("reconcile not applied: " + "; ".join(problems))
        return the_plan

    # --- ports -----------------------------------------------------------------------------

    def _port_config(self) -> list[tuple[int, etree._Element]]:
        data = self._get("read port-config", _e("port-config"), config=True)
        out = []
        for entry in data.iterfind("p:port-config/p:port", _NSMAP):
            port = (entry.findtext("p:port-id", namespaces=_NSMAP) or "").strip()
            if port.isdigit():
                out.append((int(port), entry))
        return out

    def port_labels(self) -> dict[int, str]:
        """Labels of the ports that have one."""
        labels = {}
        for port, entry in self._port_config():
            label = (entry.findtext("p:label", namespaces=_NSMAP) or "").strip()
            if label:
                labels[port] = label
        return labels

    def port_status(self) -> dict[int, str]:
        """Admin status of every port (e.g. ENABLED, DISABLED)."""
        return {
            port: (entry.findtext("p:status", namespaces=_NSMAP) or "").strip()
            for port, entry in self._port_config()
        }

    def set_label(self, port: int, label: str) -> None:
        """Set (or, with an empty label, clear) one port's label."""
        self.set_labels({port: label})

    def set_labels(self, labels: Mapping[int, str]) -> None:
        """Set several port labels in one edit-config."""
        if not labels:
            return
        pc = _e("port-config")
        for port, label in sorted(labels.items()):
            leaf = _e("label", text=label)
            if not label:
                leaf.set(f"{{{NC}}}operation", "remove")
            pc.append(_e("port", _e("port-id", text=str(int(port))), leaf))
        self._edit("set port labels", pc)

    def power(self) -> dict[int, float]:
        """Optical power per port in dBm, as the switch's power monitors read it."""
        data = self._get("read optical power", _e("opm-power"), config=False)
        out = {}
        for port, value in _ints(data, "p:opm-power/p:port", "port-id", "power"):
            try:
                out[port] = float(value)
            except ValueError:
                continue
        return out
