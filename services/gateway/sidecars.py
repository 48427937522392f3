"""Redis beside the gateway in the embedded stack, only when it is asked for and missing.

``KEFU_REDIS_URL`` unset: nothing (limits per process, as always). Set to this machine (127.0.0.1, localhost, ::1)
and nothing answers on its port: ``kefu up`` starts a memory-only ``redis-server`` there (Debian's package), because
rate-limit state is worth nothing after a restart and must not write files. Set to anything else, or something
already answers: that server is used as it is.
"""

from __future__ import annotations

import shutil
import socket
from urllib.parse import urlsplit

from libs.common.runtime import Sidecar
from libs.common.settings import KefuSettings
from services.gateway.settings import Settings

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def local_redis_port(url: str | None) -> int | None:
    """The port of a ``redis://`` URL naming this machine, else None (no URL, TLS, a socket path, another host)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.hostname not in LOCAL_HOSTS:
        return None
    return parts.port or 6379


def answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def redis_command(port: int) -> list[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "KEFU_REDIS_URL names this machine but nothing answers there and redis-server is not installed "
            "(apt-get install redis-server), or unset KEFU_REDIS_URL for per-process rate limits"
        )
    # --save "" and no AOF: memory only; loopback only ("-::1": IPv6 if the machine has it).
    return [binary, "--bind", "127.0.0.1", "-::1", "--save", "", "--appendonly", "no", "--port", str(port)]


def sidecars(common: KefuSettings) -> list[Sidecar]:
    settings = Settings(home=common.home)
    port = local_redis_port(settings.redis_url)
    if port is None or answers(port):
        return []
    return [Sidecar(name="redis", argv=redis_command(port), endpoints=[f"redis://127.0.0.1:{port}"], ready_port=port)]
