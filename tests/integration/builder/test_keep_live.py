"""Loading a new version never unloads the live one (services/builder/retention.py), on a real Triton and
PostgreSQL: live v1, a canary v2 the new engine supersedes, new v3. With Triton's two loaded versions, loading v3
as-is would unload the live v1; the builder parks v2 first. Own Triton: this test changes its repository."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from pathlib import Path
from types import SimpleNamespace

import tritonclient.grpc.aio as aioclient
from sqlalchemy import delete

from libs.common.tables import Deployment
from services.builder import repository
from services.builder.handlers import load_keeping_live
from services.builder.repository import DEFAULT_MODEL_NAME
from services.builder.settings import Settings
from services.builder.triton_server import triton_command, wait_ready
from tests.conftest import free_port
from tests.integration.conftest import Built


async def test_live_version_stays_loaded_when_a_new_one_supersedes_the_canary(
    built: Built, tmp_path: Path, db_sessions
) -> None:
    name = f"kefu-keep-{uuid.uuid4().hex[:6]}"  # its own model name: other tests' live rows are not this one's
    settings = Settings(home=tmp_path / "home", triton_grpc_port=free_port(), triton_model_name=name)
    model_root = settings.repository / name
    for version in (1, 2):
        shutil.copytree(built.repo / DEFAULT_MODEL_NAME / "1", model_root / str(version))
    repository.write_config(settings.repository, name)
    async with db_sessions() as session, session.begin():
        for version, state in ((1, "live"), (2, "canary")):
            session.add(
                Deployment(
                    engine_id=f"sha-{name}-{version}", model_id="m", dataset_id="d", triton_model=name,
                    triton_version=version, state=state, traffic_percent=100.0 if state == "live" else 10.0,
                )
            )  # fmt: skip
    argv, env = triton_command(settings.repository, free_port(), settings.triton_grpc_port, free_port(), tmp_path)
    argv.append("--exit-timeout-secs=3")
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = aioclient.InferenceServerClient(settings.triton_grpc_url)
    try:
        await wait_ready(settings.triton_grpc_url, timeout=60)
        await client.load_model(name)
        assert await client.is_model_ready(name, "1") and await client.is_model_ready(name, "2")

        shutil.copytree(built.repo / DEFAULT_MODEL_NAME / "1", model_root / "3")  # the new build, published
        result = SimpleNamespace(triton_model=name, triton_version=3, version_dir=model_root / "3")
        answer = await load_keeping_live(SimpleNamespace(sessions=db_sessions), settings, result)

        assert answer
        assert await client.is_model_ready(name, "1")  # live: still loaded
        assert await client.is_model_ready(name, "3")
        assert not await client.is_model_ready(name, "2")  # the superseded canary was parked instead
        assert repository.versions(model_root) == [1, 3]
        assert (settings.repository / ".superseded" / f"{name}-2" / "model.py").is_file()
    finally:
        await client.close()
        proc.terminate()
        await proc.wait()
        # The database is the session's: a live row left here would make every later gateway suite's engine a canary.
        async with db_sessions() as session, session.begin():
            await session.execute(delete(Deployment).where(Deployment.triton_model == name))
