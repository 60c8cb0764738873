"""Benchmark the Polatis driver against the NETCONF simulator on 127.0.0.1 (not a test).

1. A 16-patch topology: connect, one batched edit-config, read back, verify, close.
2. A 320-port switch holding 160 patches: connect, read, plan, apply the corrections in one
   edit-config, verify, close.

Usage: python bench/optical_driver.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from labkeeper.drivers.optical import PolatisClient, plan
from labkeeper.simulators.polatis import PolatisSimulator

TARGET_APPLY_S = 2.0
TARGET_RECONCILE_S = 1.0


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def apply_16(sim: PolatisSimulator) -> float:
    """Time one apply + verify of a 16-patch topology on an empty switch."""
    sim.set_cross_connects({})
    topology = {i: 32 + i for i in range(1, 17)}
    started = time.perf_counter()
    with PolatisClient("127.0.0.1", sim.port, "admin", "admin", timeout=10) as client:
        client.apply(add=list(topology.items()), remove=[])
        problems = client.verify(topology)
    elapsed = time.perf_counter() - started
    assert not problems, problems
    assert sim.cross_connects == topology
    return elapsed


def reconcile_320(sim: PolatisSimulator) -> tuple[float, int, int, int]:
    """Time read + plan + apply + verify on a 320-port switch with 160 patches."""
    actual = {i: 160 + i for i in range(1, 161)}
    owned = set(range(1, 157))  # 157..160 belong to someone else
    desired = {i: e for i, e in actual.items() if i in owned}
    desired[10], desired[20] = actual[20], actual[10]  # two owned patches swapped
    del desired[50], desired[51]  # owned patches no longer wanted
    desired[30] = actual[51]  # re-routed onto the egress freed by 51
    del actual[40], actual[41]  # owned patches that went missing on the switch
    sim.set_cross_connects(actual)
    started = time.perf_counter()
    with PolatisClient("127.0.0.1", sim.port, "admin", "admin", timeout=10) as client:
        the_plan = plan(desired, client.get_cross_connects(), owned)
        client.apply(add=the_plan.add, remove=the_plan.remove)
        problems = client.verify(
            desired, absent=[i for i, _ in the_plan.remove if i not in desired]
        )
    elapsed = time.perf_counter() - started
    assert not problems, problems
    assert len(sim.cross_connects) == len(desired) + len(the_plan.foreign)
    return elapsed, len(the_plan.add), len(the_plan.remove), len(the_plan.foreign)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 runs of each")
    args = parser.parse_args()
    if args.quick:
        args.runs = 3

    small = PolatisSimulator(ports=64)
    with small.run_in_thread():
        apply_16(small)  # warm-up: imports, host key, first SSH handshake
        times = [apply_16(small) for _ in range(args.runs)]
    median, p95 = statistics.median(times), percentile(times, 95)
    print(f"16-patch apply+verify over {args.runs} runs (connect, 1 edit-config, read, verify):")
    print(
        f"  median {median * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
    )
    print(f"  target <= {TARGET_APPLY_S:.1f} s: {'met' if p95 <= TARGET_APPLY_S else 'MISSED'}")

    big = PolatisSimulator(ports=320)
    with big.run_in_thread():
        reconcile_320(big)
        runs = [reconcile_320(big) for _ in range(args.runs)]
    rtimes = [r[0] for r in runs]
    _, adds, removes, foreign = runs[0]
    rmedian, rp95 = statistics.median(rtimes), percentile(rtimes, 95)
    print(
        f"320-port / 160-patch reconcile over {args.runs} runs "
        f"(read, plan, 1 edit-config with {adds} adds + {removes} removes, verify; "
        f"{foreign} foreign left alone):"
    )
    print(
        f"  median {rmedian * 1000:.0f} ms, p95 {rp95 * 1000:.0f} ms, "
        f"max {max(rtimes) * 1000:.0f} ms"
    )
    verdict = "met" if rp95 <= TARGET_RECONCILE_S else "MISSED"
    print(f"  target <= {TARGET_RECONCILE_S:.1f} s: {verdict}")


if __name__ == "__main__":
    main()
