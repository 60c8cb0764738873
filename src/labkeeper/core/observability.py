"""Structured logs and Prometheus metrics."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("labkeeper_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "labkeeper_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
JOBS = Counter("labkeeper_jobs_total", "Background job runs", ["job_type", "status"])
JOBS_RUNNING = Gauge("labkeeper_jobs_running", "Background jobs running in this process")
JOB_SECONDS = Histogram(
    "labkeeper_job_seconds",
    "Duration of background job runs",
    ["job_type"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600),
)
JOBS_DISPATCHED = Counter(
    "labkeeper_jobs_dispatched_total", "Job runs handed to a worker (threads or Redis)"
)
SCHEDULER_LEADER = Gauge(
    "labkeeper_scheduler_leader", "1 while this process holds the scheduler lease"
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any extra fields."""

    _skip = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._skip and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once: JSON lines or readable text on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
