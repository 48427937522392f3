"""`kefu up`: the supervised single-machine stack starts, restarts a dead child, and stops without orphans."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kefu.registry import service_names, service_settings
from tests.conftest import free_port


def stack_env(home: Path) -> dict[str, str]:
    """Free ports for every ``*_port`` setting of every service, so the test never collides with a dev stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    env["KEFU_HOME"] = str(home)
    for name in service_names():
        for field in type(service_settings(name)).model_fields:
            if field.endswith("_port"):
                env[f"KEFU_{field.upper()}"] = str(free_port())
    return env


def read_until(proc: subprocess.Popen, want: str, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if lines[-1] == want:
            return lines
    raise AssertionError(f"no {want!r} line within {timeout}s; got: {lines}")


def status(env: dict[str, str]) -> dict[str, dict]:
    out = subprocess.run([sys.executable, "-m", "kefu", "status", "--json"], env=env, capture_output=True, text=True)
    return {s["name"]: s for s in json.loads(out.stdout)["services"]}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@contextlib.contextmanager
def running_stack(env: dict[str, str], port: int) -> Iterator[tuple[subprocess.Popen, list[str]]]:
    """``kefu up`` until its ``ready`` line; stopped with Ctrl-C (killed if that hangs) unless the test did."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kefu", "up", "--kafka-port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc, read_until(proc, "ready", timeout=120)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def stack(tmp_path: Path):
    env = stack_env(tmp_path / "home")
    port = free_port()
    with running_stack(env, port) as (proc, lines):
        yield proc, env, port, lines


def test_up_starts_broker_and_services_restarts_a_dead_child_and_stops_cleanly(stack) -> None:
    proc, env, port, lines = stack
    assert f"kafka 127.0.0.1:{port}" in lines
    # The broker and its durable store, every service, and the sidecars services bring (Triton for the builder).
    expected = {"kafka", "kafka-store", *service_names(), *(["triton"] if "builder" in service_names() else [])}
    before = status(env)
    assert set(before) == expected
    assert all(s["state"] == "running" and alive(s["pid"]) for s in before.values())

    victim = service_names()[0]
    os.kill(before[victim]["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = status(env)[victim]
        if now["state"] == "running" and now["pid"] != before[victim]["pid"]:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"{victim} was not restarted: {status(env)[victim]}")

    pids = [s["pid"] for s in status(env).values()]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert not [p for p in pids if alive(p)], "children outlived the supervisor"
    assert all(s["state"] == "stopped" for s in status(env).values())


def test_children_die_with_a_killed_supervisor(stack) -> None:
    proc, env, _, _ = stack
    pids = [s["pid"] for s in status(env).values()]
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and [p for p in pids if alive(p)]:
        time.sleep(0.2)
    assert not [p for p in pids if alive(p)], "orphans left after kill -9 of the supervisor"
