"""A small in-process sliding-window limiter for sign-in attempts per client address.

Per-account lockout lives in the database (it must hold across processes); the per-address
limit only has to slow down one noisy client, so process memory is enough.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class SlidingWindow:
    """At most `limit` events per `window` seconds per key."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Record an event; None when allowed, else seconds until the next one is."""
        now = time.monotonic()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and now - events[0] > self.window:
                events.popleft()
            if len(events) >= self.limit:
                return self.window - (now - events[0])
            events.append(now)
            if len(self._events) > 10_000:  # forget idle clients
                for k in [k for k, v in self._events.items() if not v][:5_000]:
                    del self._events[k]
            return None
