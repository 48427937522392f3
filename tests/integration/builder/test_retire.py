"""A rolled-back version leaves the repository and Triton unloads it, so it stops holding one of the two version
slots (otherwise the next build would evict the live version instead). Own Triton: this test changes its repo."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import tritonclient.grpc.aio as aioclient

from services.builder.handlers import retire_version
from services.builder.repository import DEFAULT_MODEL_NAME
from services.builder.settings import Settings
from services.builder.triton_server import triton_command, wait_ready
from tests.conftest import free_port
from tests.integration.conftest import Built


async def test_retired_version_is_parked_and_unloaded(built: Built, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", triton_grpc_port=free_port())
    shutil.copytree(built.repo, settings.repository)
    model_root = settings.repository / DEFAULT_MODEL_NAME
    shutil.copytree(model_root / "1", model_root / "2")
    argv, env = triton_command(settings.repository, free_port(), settings.triton_grpc_port, free_port(), tmp_path)
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = aioclient.InferenceServerClient(settings.triton_grpc_url)
    try:
        await wait_ready(settings.triton_grpc_url, timeout=60)
        await client.load_model(DEFAULT_MODEL_NAME)
        assert await client.is_model_ready(DEFAULT_MODEL_NAME, "2")

        await retire_version(settings, DEFAULT_MODEL_NAME, 2)

        assert not (model_root / "2").exists()
        assert (settings.repository / ".rolled_back" / f"{DEFAULT_MODEL_NAME}-2" / "model.onnx").is_file()
        assert not await client.is_model_ready(DEFAULT_MODEL_NAME, "2")
        assert await client.is_model_ready(DEFAULT_MODEL_NAME, "1")  # the version rolled back to keeps serving
        await retire_version(settings, DEFAULT_MODEL_NAME, 2)  # a redelivered event is a no-op
    finally:
        await client.close()
        proc.terminate()
        await proc.wait()
