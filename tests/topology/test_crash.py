"""Crash safety: a worker process is killed (SIGKILL) while the switch is applying its batch;
after that one reconcile pass leaves the switch exactly as the database says.

The switch simulator lives in this process, so its state outlives the worker. Its edit-config
is held at a gate until the worker is dead; then the switch either commits the whole batch
(the request had arrived complete) or drops it (it had not), the two things a real switch can
do when its client vanishes mid-request.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from labkeeper.simulators.polatis import PolatisSimulator
from labkeeper.topology import provision
from tests.topology.conftest import book_topology, in_port, out_port, patches, start_now

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("processes")]

WORKER = """
import labkeeper.models
from labkeeper.core.db import Database, make_engine
from labkeeper.topology import provision
import os, sys
db = Database(make_engine(os.environ["LABKEEPER_DATABASE_URL"], pool_size=2))
print("worker started", file=sys.stderr, flush=True)
provision.provision(db)
print("worker finished", file=sys.stderr, flush=True)
"""


class GatedSwitch(PolatisSimulator):
    """A switch whose edit-configs wait at a gate; `drop` discards the held one."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()
        self.gated = True
        self.drop = False

    def handle_rpc(self, op: etree._Element) -> etree._Element | None:
        if self.gated and etree.QName(op).localname == "edit-config":
            self.gated = False
            self.entered.set()
            self.release.wait(30)
            try:
                if self.drop:
                    return None  # the client is gone; the batch never takes effect
                return super().handle_rpc(op)
            finally:
                self.finished.set()
        return super().handle_rpc(op)


def _expected(db) -> dict[int, int]:
    return {r.ingress_port: r.egress_port for r in patches(db) if r.desired_state == "present"}


@pytest.mark.parametrize("switch_outcome", ["committed", "dropped"])
def test_worker_killed_mid_apply_then_one_reconcile_converges(
    db, lab, make_user, as_user, tmp_path, switch_outcome
):
    from labkeeper.inventory.models import Device

    switch = GatedSwitch(ports=64)
    with switch.run_in_thread():
        with db.scope() as s:
            s.get(Device, lab.switch_id).ssh_port = switch.port  # type: ignore[union-attr]
        owner = as_user(make_user("member"))
        _, gid = book_topology(owner, lab, ["d1", "d2", "d3", "d4", "d5"])
        start_now(db, gid)

        env = {k: v for k, v in os.environ.items() if not k.startswith("LABKEEPER_")}
        env.update(
            LABKEEPER_ENV="test",
            LABKEEPER_SECRET_KEYS=os.environ["LABKEEPER_SECRET_KEYS"],
            LABKEEPER_DATABASE_URL=db.engine.url.render_as_string(hide_password=False),
        )
        log = (tmp_path / "worker.log").open("w")
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        try:
            assert switch.entered.wait(60), (tmp_path / "worker.log").read_text()
            os.kill(worker.pid, signal.SIGKILL)  # mid-apply: the batch is at the switch
            assert worker.wait(10) == -signal.SIGKILL
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            log.close()
        switch.drop = switch_outcome == "dropped"
        switch.release.set()
        assert switch.finished.wait(10)

        # The worker died before it could record anything: the database does not know.
        rows = patches(db, gid)
        assert len(rows) == 4 and {r.actual_state for r in rows} == {"unknown"}
        wanted = _expected(db)
        assert wanted == {out_port(k): in_port(k + 1) for k in range(1, 5)}
        on_switch = switch.cross_connects
        assert on_switch == (wanted if switch_outcome == "committed" else {})

        # One reconcile pass (it takes over the dead worker's lease at once).
        result = provision.reconcile(db)
        assert result["skipped"] == [] and result["failed"] == 0, result
        assert switch.cross_connects == _expected(db) == wanted
        rows = patches(db, gid)
        assert {(r.actual_state, r.last_error) for r in rows} == {("present", None)}
        assert result["added"] == (0 if switch_outcome == "committed" else 4)


def test_a_live_lease_holder_is_waited_for_and_a_dead_one_is_taken_over(db):
    """Runs racing for one switch take turns; a holder that died does not block anyone."""
    name = provision.lease_name("sw-lease")
    assert provision.acquire(db, name, "me:1:a", seconds=30, wait=0)
    # Someone alive (this very process) holds it: another run gives up after its wait.
    mine = f"{provision.host_name()}:{os.getpid()}:x"
    provision.release(db, name, "me:1:a")
    assert provision.acquire(db, name, mine, seconds=30, wait=0)
    assert not provision.acquire(db, name, "other:2:b", seconds=30, wait=0.2)
    # A holder on this machine whose process is gone is replaced at once.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    provision.release(db, name, mine)
    assert provision.acquire(db, name, f"{provision.host_name()}:{dead.pid}:z", seconds=30, wait=0)
    assert provision.acquire(db, name, "next:3:c", seconds=30, wait=0)
