"""Benchmark configuration collection against simulated devices on 127.0.0.1 (not a test).

Starts N simulated devices sharded over OS processes, then measures devices per minute for:
  - labkeeper `collect_many` (concurrency 100),
  - a Netmiko thread pool of 10 workers and one of 30 workers,
  - a bare asyncssh loop with concurrency 100 (connect, enable, paging off, show config).
Every method runs in a fresh process, so the peak RSS reported (getrusage) is its own.
All of them do the same work per device: log in, enable, turn paging off, read the config.
The simulator shares the machine's CPUs with the collector, so wall-clock figures move with
other load: the asyncssh-based methods run `--repeat` times (best kept, interleaved), and the
collector's own CPU time per device is shown as a steadier figure.

Usage: python bench/backup_drivers.py [--devices 100 300 1000] [--quick] [--sim-processes P]
       [--repeat N] [--methods labkeeper raw-asyncssh netmiko-10 netmiko-30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

HOST = "127.0.0.1"
USER = PASSWORD = SECRET = "admin"
TIMEOUT_S = 60.0
METHODS = ("labkeeper", "raw-asyncssh", "netmiko-10", "netmiko-30")
LABELS = {
    "labkeeper": "labkeeper collect_many (100)",
    "raw-asyncssh": "raw asyncssh loop (100)",
    "netmiko-10": "Netmiko thread pool (10)",
    "netmiko-30": "Netmiko thread pool (30)",
}
TARGETS = {"raw-asyncssh": 0.8, "netmiko-10": 3.0, "netmiko-30": 1.5}
MAX_RSS_MB = 400


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MB (ru_maxrss is in kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the methods (each runs in its own worker process) ---------------------------------------


def run_labkeeper(ports: list[int], platform: str) -> list[bool]:
    """labkeeper's collector with its defaults, except a generous timeout."""
    from labkeeper.drivers.cli import Credential, Target, collect_many

    cred = Credential(1, USER, PASSWORD, enable_secret=SECRET)
    targets = [Target(i, HOST, port, platform, [cred]) for i, port in enumerate(ports)]
    results = asyncio.run(collect_many(targets, concurrency=100, timeout=TIMEOUT_S))
    return [r.ok and len(r.output) > 1000 for r in results]


async def _raw_one(port: int, sem: asyncio.Semaphore) -> bool:
    import asyncssh

    async with sem:
        try:
            async with asyncssh.connect(
                HOST,
                port,
                username=USER,
                password=PASSWORD,
                known_hosts=None,
                client_keys=None,
                agent_path=None,
                config=[],
                connect_timeout=TIMEOUT_S,
            ) as conn:
                proc = await conn.create_process(term_type="vt100")
                banner = await proc.stdout.readuntil(">")
                host = banner.strip().splitlines()[-1].rstrip(">")
                proc.stdin.write("enable\n")
                await proc.stdout.readuntil("Password: ")
                proc.stdin.write(SECRET + "\n")
                await proc.stdout.readuntil(host + "#")
                proc.stdin.write("terminal length 0\n")
                await proc.stdout.readuntil(host + "#")
                proc.stdin.write("show running-config\n")
                # Skip the echoed command, then read up to the prompt that follows the output.
                await proc.stdout.readuntil("\n")
                config = await proc.stdout.readuntil("\n" + host + "#")
                proc.close()
                return len(config) > 1000
        except (OSError, asyncssh.Error, asyncio.IncompleteReadError):
            return False


def run_raw(ports: list[int], platform: str) -> list[bool]:
    """The least a correct asyncssh client must do, written for the IOS simulator."""

    async def main() -> list[bool]:
        sem = asyncio.Semaphore(100)
        return list(await asyncio.gather(*(_raw_one(port, sem) for port in ports)))

    return asyncio.run(main())


def _netmiko_one(port: int, platform: str) -> bool:
    from netmiko import ConnectHandler

    try:
        with ConnectHandler(
            device_type=platform,
            host=HOST,
            port=port,
            username=USER,
            password=PASSWORD,
            secret=SECRET,
            conn_timeout=TIMEOUT_S,
            use_keys=False,
            allow_agent=False,
        ) as conn:
            conn.enable()
            config = conn.send_command("show running-config", read_timeout=TIMEOUT_S)
            return len(str(config)) > 1000
    except Exception:
        return False


def run_netmiko(ports: list[int], platform: str, workers: int) -> list[bool]:
    """Netmiko's usual deployment: a thread pool of blocking sessions."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda port: _netmiko_one(port, platform), ports))


def worker(method: str, ports: list[int], platform: str) -> dict[str, Any]:
    """Run one method over the given devices and measure it."""
    import warnings

    warnings.simplefilter("ignore")  # Netmiko / paramiko deprecation chatter
    if method.startswith("netmiko"):
        import netmiko  # noqa: F401  (import cost is not collection time)
    else:
        import asyncssh  # noqa: F401

        import labkeeper.drivers.cli  # noqa: F401
    started = time.perf_counter()
    cpu_started = time.process_time()
    if method == "labkeeper":
        oks = run_labkeeper(ports, platform)
    elif method == "raw-asyncssh":
        oks = run_raw(ports, platform)
    else:
        oks = run_netmiko(ports, platform, int(method.split("-")[1]))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return {
        "cpu_ms": cpu / len(ports) * 1000,
        "method": method,
        "devices": len(ports),
        "ok": sum(oks),
        "elapsed": elapsed,
        "per_min": len(ports) / elapsed * 60 if elapsed else 0.0,
        "rss_mb": peak_rss_mb(),
    }


def measure(method: str, ports: list[int], platform: str) -> dict[str, Any]:
    """Run `worker` in a fresh interpreter and return its figures."""
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", method, "--platform", platform],
        input=json.dumps(ports),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return {"method": method, "devices": len(ports), "ok": 0, "elapsed": 0.0, "per_min": 0.0}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# --- driver -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--quick", action="store_true", help="one small run (30 devices)")
    parser.add_argument("--platform", default="cisco_ios")
    parser.add_argument("--sim-processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of each asyncssh-based method (best kept)"
    )
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        ports = json.loads(sys.stdin.read())
        print(json.dumps(worker(args.worker, ports, args.platform)))
        return 0
    if args.platform != "cisco_ios" and "raw-asyncssh" in args.methods:
        parser.error("the raw asyncssh loop is written for --platform cisco_ios")

    from labkeeper.simulators.devices import DeviceProcesses

    sizes = [30] if args.quick else sorted(set(args.devices))
    started = time.perf_counter()
    farm = DeviceProcesses(max(sizes), args.platform, port_base=0, processes=args.sim_processes)
    ports = farm.start()
    print(
        f"{max(sizes)} simulated {args.platform} devices in {farm.processes} processes,"
        f" started in {time.perf_counter() - started:.1f} s; {os.cpu_count()} CPUs shared with"
        " the collector\n"
    )
    header = (
        f"{'devices':>7}  {'method':<30} {'ok':>9} {'time s':>8} {'dev/min':>9}"
        f" {'CPU ms/dev':>10} {'RSS MB':>7}"
    )
    print(header)
    print("-" * len(header))
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    try:
        for size in sizes:
            fast = [m for m in args.methods if not m.startswith("netmiko")]
            slow = [m for m in args.methods if m.startswith("netmiko")]
            # Interleaved, so a burst of outside load hits both asyncssh methods alike.
            for method in fast * max(1, args.repeat) + slow:
                row = measure(method, ports[:size], args.platform)
                best = rows.get((size, method))
                if best is None or row["per_min"] > best["per_min"]:
                    rows[(size, method)] = row
            for method in args.methods:
                row = rows[(size, method)]
                print(
                    f"{size:>7}  {LABELS[method]:<30} {row['ok']:>4}/{size:<4} "
                    f"{row['elapsed']:>8.2f} {row['per_min']:>9,.0f}"
                    f" {row.get('cpu_ms', 0):>10.2f} {row.get('rss_mb', 0):>7.0f}",
                    flush=True,
                )
            print()
    finally:
        farm.stop()

    print("labkeeper relative to the others (target in brackets):")
    for size in sizes:
        ours = rows.get((size, "labkeeper"))
        if not ours or not ours["per_min"]:
            continue
        parts = []
        for method, target in TARGETS.items():
            other = rows.get((size, method))
            if other and other["per_min"]:
                ratio = ours["per_min"] / other["per_min"]
                mark = "ok" if ratio >= target else "MISSED"
                parts.append(f"{ratio:.2f}x {LABELS[method]} [>= {target}x {mark}]")
        rss = ours.get("rss_mb", 0.0)
        parts.append(
            f"peak RSS {rss:.0f} MB [< {MAX_RSS_MB} {'ok' if rss < MAX_RSS_MB else 'MISSED'}]"
        )
        print(f"  {size:>5} devices: " + "; ".join(parts))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
