"""Collect configurations: credential fallback and retries per device, bounded fan-out for many."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Iterable

from labkeeper.drivers import registry
from labkeeper.drivers.base import AuthFailed, DriverError, Result, Target, Timeout

__all__ = ["OnResult", "collect", "collect_many"]

log = logging.getLogger(__name__)

OnResult = Callable[[Target, Result], Awaitable[None] | None]


def _backoff_delay(backoff: float, attempt: int) -> float:
    # Exponential with jitter, so devices that failed together do not retry in lockstep.
    return backoff * (2**attempt) * random.uniform(0.5, 1.5)


def _finish(result: Result, target: Target, started: float) -> Result:
    result.key, result.host, result.port, result.platform = (
        target.key,
        target.host,
        target.port,
        target.platform,
    )
    result.duration_s = asyncio.get_running_loop().time() - started
    return result


async def collect(
    target: Target, *, timeout: float = 20.0, retries: int = 2, backoff: float = 0.5
) -> Result:
    """Fetch one device's configuration, trying credentials in order; never raises."""
    started = asyncio.get_running_loop().time()
    attempts = 0
    tried: list[int | None] = []
    try:
        driver = registry.get_driver(target.platform)
    except Exception as exc:  # UnknownPlatform, or e.g. Netmiko failing to import
        return _finish(Result.failure(exc), target, started)
    if not target.credentials:
        return _finish(Result.failure(AuthFailed("no credentials to try")), target, started)

    last_auth: AuthFailed | None = None
    for credential in target.credentials:
        tried.append(credential.id)
        for attempt in range(retries + 1):
            attempts += 1
            try:
                text = await driver.fetch_config(
                    target.host,
                    target.port,
                    credential,
                    command=target.command,
                    timeout=timeout,
                )
            except AuthFailed as exc:
                # The next credential may be right; retrying this one would not help and could
                # lock the account.
                last_auth = exc
                break
            except DriverError as exc:
                if exc.transient and attempt < retries:
                    await asyncio.sleep(_backoff_delay(backoff, attempt))
                    continue
                result = Result.failure(exc, attempts=attempts, credential_id=credential.id)
                result.details["tried_credentials"] = list(tried)
                return _finish(result, target, started)
            except Exception as exc:
                log.exception("unexpected error collecting from %s:%s", target.host, target.port)
                result = Result.failure(exc, attempts=attempts, credential_id=credential.id)
                return _finish(result, target, started)
            result = Result(ok=True, output=text, credential_id=credential.id, attempts=attempts)
            result.details["tried_credentials"] = list(tried)
            return _finish(result, target, started)

    assert last_auth is not None
    if len(target.credentials) == 1:
        error = last_auth
    else:
        error = AuthFailed(
            f"all {len(target.credentials)} credentials refused (last: {last_auth.message})"
        )
    result = Result.failure(error, attempts=attempts)
    result.details["tried_credentials"] = list(tried)
    return _finish(result, target, started)


async def _report(on_result: OnResult | None, target: Target, result: Result) -> None:
    if on_result is None:
        return
    try:
        outcome = on_result(target, result)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:
        # A failing callback (e.g. a database write) must not stop the other devices.
        log.exception("on_result callback failed for %r", target.key)


async def collect_many(
    targets: Iterable[Target],
    *,
    concurrency: int = 100,
    timeout: float = 20.0,
    run_timeout: float | None = None,
    on_result: OnResult | None = None,
    retries: int = 2,
    backoff: float = 0.5,
) -> list[Result]:
    """Collect from many devices, at most `concurrency` at once; results in target order."""
    items = list(targets)
    results: list[Result | None] = [None] * len(items)
    if not items:
        return []
    semaphore = asyncio.Semaphore(max(1, concurrency))
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def one(index: int, target: Target) -> None:
        async with semaphore:
            result = await collect(target, timeout=timeout, retries=retries, backoff=backoff)
        results[index] = result
        await _report(on_result, target, result)

    tasks = [asyncio.create_task(one(i, t)) for i, t in enumerate(items)]
    try:
        _, pending = await asyncio.wait(tasks, timeout=run_timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    finally:
        # Also reached when our caller cancels us: leave no collection running behind.
        for task in tasks:
            if not task.done():
                task.cancel()

    final: list[Result] = []
    for index, target in enumerate(items):
        result = results[index]
        if result is None:
            if run_timeout is not None and loop.time() - started >= run_timeout:
                error: DriverError = Timeout(
                    f"run time limit of {run_timeout:g} s reached before this device finished"
                )
                result = Result.failure(error, target=target)
            else:
                task_error = tasks[index].exception() if not tasks[index].cancelled() else None
                result = Result.failure(
                    task_error or RuntimeError("collection did not complete"), target=target
                )
            result.duration_s = loop.time() - started
            results[index] = result
            await _report(on_result, target, result)
        final.append(result)
    return final
