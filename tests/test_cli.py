"""The `labkeeper` command as an operator uses it, in real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "labkeeper"


def run(args, env, stdin=None):
    return subprocess.run(
        [str(BIN), *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith("LABKEEPER_")}
    e.update(LABKEEPER_DATABASE_URL=f"sqlite:///{tmp_path}/cli.db", LABKEEPER_ENV="test")
    return e


def test_db_upgrade_check_user_and_token(env):
    assert run(["db", "check"], env).returncode != 0  # nothing migrated yet
    up = run(["db", "upgrade"], env)
    assert up.returncode == 0, up.stderr
    assert "revision" in up.stdout
    check = run(["db", "check"], env)
    assert check.returncode == 0, check.stdout + check.stderr
    made = run(
        [
            "user",
            "create",
            "ops",
            "--role",
            "admin",
            "--email",
            "ops@lab.example",
            "--password-stdin",
        ],
        env,
        stdin="long-enough-pw1\n",
    )
    assert made.returncode == 0, made.stderr
    dup = run(["user", "create", "ops", "--password-stdin"], env, stdin="long-enough-pw1\n")
    assert dup.returncode == 1 and "taken" in dup.stderr
    weak = run(["user", "create", "weakling", "--password-stdin"], env, stdin="short\n")
    assert weak.returncode == 1 and "at least" in weak.stderr
    token = run(["token", "create", "ops", "--scopes", "devices:read", "--expires-days", "7"], env)
    assert token.returncode == 0 and token.stdout.strip().startswith("lkt_")
    assert run(["token", "create", "ghost"], env).returncode == 1


def test_production_refuses_a_default_secret(env):
    env.update(LABKEEPER_ENV="production")
    r = run(["serve", "--port", "0"], env)
    assert r.returncode != 0
    assert "refusing to start" in (r.stdout + r.stderr)


def test_help_lists_the_commands(env):
    out = run(["--help"], env).stdout
    for command in ("serve", "worker", "db", "user", "token", "simulate"):
        assert command in out
