"""Background work of the inventory: the periodic device health check.

Each device with a management address is probed with a TCP connect to its SSH port. Probes run
concurrently on one asyncio loop (bounded by `health.concurrency`), each limited by
`health.timeout_seconds`; the results are written in one short transaction afterwards, so no
database connection is held while the network is slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection
from typing import Any

from labkeeper.admin import service as settings
from labkeeper.core.db import Database
from labkeeper.core.time import utcnow
from labkeeper.inventory import repository, service
from labkeeper.inventory.service import ProbeResult
from labkeeper.jobs.context import TaskContext
from labkeeper.jobs.registry import periodic

Target = tuple[int, str, int]  # device id, address, port


def _host(address: str) -> str:
    # "[2001:db8::1]" is how people write IPv6 next to a port; connect wants it bare.
    return address.strip().removeprefix("[").removesuffix("]")


async def _probe(target: Target, timeout: float, gate: asyncio.Semaphore) -> ProbeResult:
    device_id, address, port = target
    async with gate:
        started = time.perf_counter()
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(_host(address), port), timeout
            )
        except TimeoutError:
            return ProbeResult(
                device_id, address, port, up=False, error=f"no answer within {timeout:g} s"
            )
        except OSError as exc:
            return ProbeResult(
                device_id, address, port, up=False, error=exc.strerror or str(exc) or repr(exc)
            )
        latency = (time.perf_counter() - started) * 1000
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), timeout)
        return ProbeResult(device_id, address, port, up=True, latency_ms=round(latency, 3))


async def probe_all(
    targets: Collection[Target], *, timeout: float, concurrency: int
) -> list[ProbeResult]:
    """Probe every target with a TCP connect, at most `concurrency` at a time."""
    gate = asyncio.Semaphore(max(1, concurrency))
    return list(await asyncio.gather(*(_probe(t, timeout, gate) for t in targets)))


def check_health(
    db: Database,
    *,
    device_ids: Collection[int] | None = None,
    log: Callable[..., None] | None = None,
    started: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Probe devices (all with a management address, or some) and record what was found."""
    with db.scope(write=False) as s:
        timeout = float(settings.get(s, "health.timeout_seconds"))
        concurrency = int(settings.get(s, "health.concurrency"))
        targets = [(i, a, p) for i, a, p, _ in repository.health_targets(s, device_ids)]
    if started is not None:
        started(len(targets))
    results = asyncio.run(probe_all(targets, timeout=timeout, concurrency=concurrency))
    with db.scope() as s:
        summary = service.record_health(s, results=results, now=utcnow(), timeout=timeout)
    if log is not None:
        went_down, came_back = set(summary["went_down"]), set(summary["came_back"])
        for r in results:
            if r.device_id in went_down:
                log(
                    "warning",
                    f"{r.address}:{r.port} stopped answering ({r.error}); "
                    "status set to unavailable",
                    category="health",
                    device_id=r.device_id,
                )
            elif r.device_id in came_back:
                log(
                    "info",
                    f"{r.address}:{r.port} answers again; status set to available",
                    category="health",
                    device_id=r.device_id,
                )
    return summary


def _interval(session: Any) -> float:
    return float(settings.get(session, "health.interval_seconds"))


@periodic("inventory.health", every=_interval)
def health(ctx: TaskContext, *, device_ids: list[int] | None = None) -> dict[str, Any]:
    """Probe every device's management address (TCP to its SSH port) and record its health."""
    summary = check_health(
        ctx.db, device_ids=device_ids, log=ctx.log, started=lambda n: ctx.progress(total=n)
    )
    ctx.progress(done=summary["probed"])
    ctx.log(
        "info",
        f"probed {summary['probed']} devices: {summary['up']} up, {summary['down']} down",
        category="health",
    )
    return {
        **summary,
        # Ids are in the log entries; the result keeps a bounded sample.
        "went_down": summary["went_down"][:100],
        "came_back": summary["came_back"][:100],
        "message": f"{summary['up']} up, {summary['down']} down",
    }
