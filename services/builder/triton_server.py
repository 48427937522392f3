"""Launch recipe for the real Triton server bundled in the ``nvidia-pytriton`` wheel, run standalone.

The supervisor (``kefu up``) or a test starts the argv/env from :func:`triton_command` as a child process, then
awaits :func:`wait_ready`. Why the environment looks like this (shared/notes/triton.md): the python-backend stub
runs the first ``python3`` on PATH in isolated mode and takes that interpreter's venv site-packages (so the venv's
``bin`` goes first), and it links libpython, which must be the interpreter's own (sysconfig LIBDIR first).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import sysconfig
import time
from pathlib import Path

import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from services.builder.errors import BuildError


def triton_home() -> Path:
    """``pytriton/tritonserver`` inside the wheel: binary, python backend, per-Python stubs."""
    import pytriton

    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def prepare_backends(work_dir: Path) -> Path:
    """A backend folder with the python backend and the stub built for this interpreter's Python minor version."""
    home = triton_home()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = home / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise BuildError(f"nvidia-pytriton ships no python backend stub for Python {version} ({stub})")
    target = Path(work_dir) / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    for source in (
        home / "backends" / "python" / "libtriton_python.so",
        home / "backends" / "python" / "triton_python_backend_utils.py",
        stub,
    ):
        dest = target / source.name
        if not dest.exists() or dest.stat().st_size != source.stat().st_size:
            shutil.copy2(source, dest)
    return target.parent


def triton_env() -> dict[str, str]:
    """Environment for the server and the stubs it spawns (see the module docstring for why)."""
    site_packages = Path(sysconfig.get_paths()["purelib"])
    libdirs = [sysconfig.get_config_var("LIBDIR") or "", str(site_packages / "nvidia_pytriton.libs")]
    env = dict(os.environ)
    previous = env.get("LD_LIBRARY_PATH", "")
    env["LD_LIBRARY_PATH"] = os.pathsep.join([d for d in libdirs if d] + ([previous] if previous else []))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def triton_command(
    repo: Path, http_port: int, grpc_port: int, metrics_port: int, work_dir: Path, *, host: str = "127.0.0.1"
) -> tuple[list[str], dict[str, str]]:
    """argv + env to start tritonserver on ``repo`` with explicit model control, bound to ``host`` only."""
    binary = triton_home() / "bin" / "tritonserver"
    if not binary.is_file():
        raise BuildError(f"tritonserver binary not found at {binary}: is nvidia-pytriton installed?")
    backends = prepare_backends(work_dir)
    argv = [
        str(binary),
        f"--model-repository={Path(repo).resolve()}",
        "--model-control-mode=explicit",
        f"--backend-directory={backends}",
        f"--http-address={host}",
        f"--http-port={http_port}",
        f"--grpc-address={host}",
        f"--grpc-port={grpc_port}",
        f"--metrics-address={host}",
        f"--metrics-port={metrics_port}",
        "--allow-metrics=true",
        # No GPU on the CPU path: skip the pinned-memory pool the server would otherwise try to allocate.
        "--pinned-memory-pool-byte-size=0",
        "--log-verbose=0",
    ]
    return argv, triton_env()


async def wait_ready(grpc_url: str, timeout: float = 60.0) -> None:
    """Return once the server answers ready on gRPC; raise TimeoutError naming the URL otherwise."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    client = grpcclient.InferenceServerClient(url=grpc_url)
    try:
        while time.monotonic() < deadline:
            try:
                if await client.is_server_ready():
                    return
            except InferenceServerException as exc:  # connection refused until the port opens
                last_error = exc
            await asyncio.sleep(0.2)
    finally:
        await client.close()
    raise TimeoutError(f"Triton at {grpc_url} not ready within {timeout:.0f}s (last error: {last_error})")
