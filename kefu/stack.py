"""The embedded single-machine stack (`kefu up`): Tansu, sidecars (Triton) and every service as supervised children.

The broker keeps its events in a store of its own (``kafka-store``: SeaweedFS under ``$KEFU_HOME/broker``, see
kefu/tansu.py) unless ``KEFU_BROKER_STORAGE=memory``; any other ``s3://`` URL there is passed to Tansu as it is, with
the ``AWS_*`` variables of the environment.

Children get their own session (Ctrl-C reaches only the supervisor, which stops them in order: services, sidecars,
broker, its store) and PR_SET_PDEATHSIG, so even a ``kill -9`` of the supervisor leaves no orphans. A child that dies
is restarted with capped exponential backoff. Child output goes to ``$KEFU_HOME/logs/<name>.log``; the console shows
endpoints and one line per lifecycle event (of this run: a durable broker still holds the earlier ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer

from kefu.registry import optional_module, service_names, service_settings
from kefu.tansu import BUCKET, MEMORY, create_topics, object_store, tansu_command, wait_port
from libs.common.db import upgrade_database
from libs.common.events import all_topic_names
from libs.common.runtime import Sidecar
from libs.common.settings import KefuSettings

PR_SET_PDEATHSIG = 1
STOP_GRACE_SECONDS = 10.0


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    kind: str  # storage | broker | sidecar | service
    endpoints: list[str] = field(default_factory=list)
    health_url: str | None = None
    proc: asyncio.subprocess.Process | None = None
    state: str = "starting"
    restarts: int = 0
    started_at: float = 0.0


class Stack:
    def __init__(
        self,
        settings: KefuSettings,
        *,
        kafka_port: int = 19092,
        only: list[str] | None = None,
        say: Callable[[str], None] = print,
        broker_storage: str | None = None,
    ) -> None:
        self.settings = settings
        self.kafka_port = kafka_port
        self.bootstrap = f"127.0.0.1:{kafka_port}"
        self.only = only
        self.broker_storage = broker_storage or os.environ.get("KEFU_BROKER_STORAGE") or "durable"
        self.say = say
        self.children: list[Child] = []
        self.stopping = False
        self.logs = settings.home / "logs"
        self.state_file = settings.home / "run" / "stack.json"
        self._tasks: list[asyncio.Task] = []
        self.started_ms = int(time.time() * 1000)

    # ---- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        env = self._child_env()
        storage, broker_env = await self._start_broker_storage(env)
        broker = Child("kafka", tansu_command(self.kafka_port, storage=storage), broker_env, "broker", [self.bootstrap])
        await self._launch(broker)
        await wait_port("127.0.0.1", self.kafka_port)
        await create_topics(self.bootstrap, all_topic_names())
        self.say(f"kafka {self.bootstrap}")
        await asyncio.to_thread(upgrade_database, self.settings.effective_database_url)

        names = [n for n in service_names() if self.only is None or n in self.only]
        for name in names:
            module = optional_module(name, "sidecars")
            for car in module.sidecars(self.settings) if module else []:
                await self._start_sidecar(car, env)
        for name in names:
            svc = service_settings(name)
            points = svc.endpoints()
            child = Child(
                name,
                [sys.executable, "-m", "kefu", "serve", name],
                env,
                "service",
                endpoints=list(points.values()),
                health_url=points.get("http"),
            )
            await self._launch(child)
            self.say(f"{name} {' '.join(child.endpoints) or '(no endpoint)'}")
        self.say(f"logs {self.logs}")
        self._tasks.append(asyncio.create_task(self._print_events(), name="event-printer"))

    async def wait_healthy(self, timeout: float = 120.0) -> None:
        """Until every service answers /readyz (broker and DB connected, heavy imports and the base model done: a
        first job must not wait for a warm-up)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            for child in [c for c in self.children if c.health_url]:
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"{child.health_url}/readyz")).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{child.name} not ready after {timeout:.0f}s; see {self.logs}")
                    await asyncio.sleep(0.2)
        self.say("ready")

    async def stop(self) -> None:
        self.stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for kind in ("service", "sidecar", "broker", "storage"):
            await asyncio.gather(*(self._terminate(c) for c in self.children if c.kind == kind))
        self._write_state()

    async def __aenter__(self) -> Stack:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- children --------------------------------------------------------------------------------------------
    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KEFU_HOME=str(self.settings.home),
            KEFU_KAFKA_BOOTSTRAP=self.bootstrap,
            KEFU_MIGRATE_ON_START="false",  # the supervisor migrated once, before any service started
            PYTHONUNBUFFERED="1",
        )
        if self.settings.database_url:
            env["KEFU_DATABASE_URL"] = self.settings.database_url
        # Tansu accepts short sessions: consumer groups form in ~1 s instead of ~3 s each.
        env.setdefault("KEFU_KAFKA_SESSION_TIMEOUT_MS", "2000")
        env.setdefault("KEFU_KAFKA_HEARTBEAT_INTERVAL_MS", "500")
        return env

    async def _start_broker_storage(self, env: dict[str, str]) -> tuple[str, dict[str, str]]:
        """Where the broker keeps its events, and the broker's environment (the store's key: not the services')."""
        if self.broker_storage == "memory":
            return MEMORY, env
        if self.broker_storage != "durable":
            return self.broker_storage, env  # the user's own S3 (or any URL Tansu takes), credentials from env
        store = object_store(self.settings.home / "broker")
        child = Child("kafka-store", store.command(), {**env, **store.store_env()}, "storage", [store.endpoint])
        await self._launch(child)
        await wait_port("127.0.0.1", store.ports["s3"], timeout=60)
        self.say(f"kafka-store {store.endpoint} ({store.root})")
        return f"s3://{BUCKET}/", {**env, **store.broker_env()}

    async def _start_sidecar(self, car: Sidecar, env: dict[str, str]) -> None:
        child = Child(car.name, car.argv, {**env, **car.env}, "sidecar", endpoints=car.endpoints)
        await self._launch(child)
        if car.ready_port:
            await wait_port("127.0.0.1", car.ready_port, timeout=60)
        self.say(f"{car.name} {' '.join(car.endpoints)}")

    async def _launch(self, child: Child) -> None:
        if child not in self.children:
            self.children.append(child)
        log = (self.logs / f"{child.name}.log").open("ab")
        child.proc = await asyncio.create_subprocess_exec(
            *child.argv,
            env=child.env,
            stdout=log,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        child.state, child.started_at = "running", time.monotonic()
        self._write_state()
        self._tasks.append(asyncio.create_task(self._watch(child), name=f"watch-{child.name}"))

    async def _watch(self, child: Child) -> None:
        assert child.proc is not None
        code = await child.proc.wait()
        if self.stopping:
            return
        child.state = "restarting"
        self._write_state()
        # Reset the backoff when the child had been up a while: a crash loop backs off, a rare crash does not.
        if time.monotonic() - child.started_at > 60:
            child.restarts = 0
        delay = min(2.0**child.restarts * 0.5, 30.0)
        child.restarts += 1
        self.say(f"{child.name} exited with {code}; restarting in {delay:.1f}s (log: {self.logs / child.name}.log)")
        await asyncio.sleep(delay)
        if self.stopping:
            return
        await self._launch(child)
        if child.kind == "broker":
            await wait_port("127.0.0.1", self.kafka_port)
            await create_topics(self.bootstrap, all_topic_names())

    async def _terminate(self, child: Child) -> None:
        proc = child.proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE_SECONDS)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        child.state = "stopped"

    def _write_state(self) -> None:
        doc = {
            "supervisor_pid": os.getpid(),
            "services": [
                {
                    "name": c.name,
                    "pid": c.proc.pid if c.proc else None,
                    "state": c.state,
                    "kind": c.kind,
                    "restarts": c.restarts,
                    "endpoints": c.endpoints,
                }
                for c in self.children
            ],
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(self.state_file)

    # ---- lifecycle event log ---------------------------------------------------------------------------------
    async def _print_events(self) -> None:
        consumer = AIOKafkaConsumer(*all_topic_names(), bootstrap_servers=self.bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        try:
            async for record in consumer:
                if record.timestamp >= self.started_ms:  # a durable broker still holds earlier runs' events
                    self.say(format_event(record.topic, record.value))
        finally:
            await consumer.stop()


def format_event(topic: str, value: bytes) -> str:
    """One console line per lifecycle event: the topic first, then its non-envelope fields."""
    try:
        payload = json.loads(value)
    except ValueError:
        return f"{topic} (not JSON: {value[:80]!r})"
    if not isinstance(payload, dict):
        return f"{topic} {payload!r}"[:200]
    skip = {"event_id", "schema_version", "occurred_at"}
    parts = []
    for k, v in payload.items():
        if k in skip or v in (None, [], {}):
            continue
        text = json.dumps(v, ensure_ascii=False, separators=(",", ":")) if isinstance(v, dict | list) else str(v)
        parts.append(f"{k}={text[:80]}")
    return f"{topic} {' '.join(parts)}"


def read_status(home: Path) -> dict:
    """What `kefu status` shows: the supervisor's state file, with dead processes reported as stopped."""
    state_file = home / "run" / "stack.json"
    if not state_file.exists():
        return {"services": []}
    doc = json.loads(state_file.read_text())
    alive = _alive(doc.get("supervisor_pid"))
    for svc in doc.get("services", []):
        if not alive or not _alive(svc.get("pid")):
            svc["state"] = "stopped"
    return {"services": doc.get("services", [])}


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
