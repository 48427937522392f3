"""Triton runs beside the builder in the embedded stack: the real server binary from the nvidia-pytriton wheel."""

from __future__ import annotations

from libs.common.runtime import Sidecar
from libs.common.settings import KefuSettings
from services.builder.settings import Settings


def sidecars(_common: KefuSettings) -> list[Sidecar]:
    from services.builder.triton_server import triton_command

    settings = Settings(home=_common.home)
    if not settings.triton_embedded:
        return []
    settings.repository.mkdir(parents=True, exist_ok=True)
    argv, env = triton_command(
        settings.repository,
        settings.triton_http_port,
        settings.triton_grpc_port,
        settings.triton_metrics_port,
        settings.home / "triton" / "work",
        host=settings.triton_host,
    )
    return [
        Sidecar(
            name="triton",
            argv=argv,
            env=env,
            endpoints=[
                f"grpc {settings.triton_grpc_url}",
                f"http http://{settings.triton_host}:{settings.triton_http_port}",
            ],
            ready_port=settings.triton_grpc_port,
        )
    ]
