"""Shared by the builder and gateway suites: a tiny model dir, one fp32 build of it (exported once per
session) and a real Triton server serving it."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from libs.common.prompting import chat_template_sha256
from services.builder.build import BuildResult, build
from services.builder.export import Checkpoint, load_checkpoint
from services.builder.triton_server import triton_command, wait_ready
from services.trainer.base_model import build_offline_base
from tests.conftest import free_port

# Random weights never emit the stop token, so every answer runs to this budget: keep it small.
MAX_NEW_TOKENS = 24

FAQ = [
    ("如何申请退款？", "在订单详情页点击“申请退款”，审核通过后原路退回。"),
    ("忘记密码怎么办？", "在登录页点击“忘记密码”，通过手机号重置。"),
    ("支持哪些付款方式？", "支持支付宝、微信支付和银行转账。"),
    ("客服工作时间是什么时候？", "在线客服7×24小时为您服务。"),
    ("How do I open a ticket?", "Console -> Tickets -> New ticket."),
    ("云服务器如何续费？", "在控制台选择实例，点击“续费”。"),
    ("有没有免费试用？", "新用户可以免费试用云服务器一个月。"),
    ("CDN怎么收费？", "按流量或带宽峰值计费。"),
]


def write_model_meta(model_dir: Path, **overrides: object) -> None:
    from transformers import AutoTokenizer

    meta = {
        "model_id": "sha-test-model",
        "dataset_id": "sha-test-dataset",
        "chat_template_sha256": chat_template_sha256(AutoTokenizer.from_pretrained(model_dir)),
        "max_length": MAX_NEW_TOKENS,
        **overrides,
    }
    (model_dir / "kefu_model.json").write_text(json.dumps(meta), encoding="utf-8")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = build_offline_base(tmp_path_factory.mktemp("model") / "model", seed=0)
    write_model_meta(path)
    return path


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dataset")
    rows = [{"instruction": q, "input": "", "output": a} for q, a in FAQ]
    for name, part in (("eval.jsonl", rows[:3]), ("train.jsonl", rows[3:])):
        (path / name).write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in part), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def checkpoint(model_dir: Path) -> Checkpoint:
    return load_checkpoint(model_dir)


@dataclass(frozen=True)
class Built:
    repo: Path
    result: BuildResult


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, dataset_dir: Path) -> Built:
    """The one fp32 export of the session, installed as version 1 of kefu-chat."""
    repo = tmp_path_factory.mktemp("repo")
    return Built(repo, build(model_dir, repo, precision="fp32", dataset_dir=dataset_dir))


@dataclass(frozen=True)
class Triton:
    grpc_url: str
    log: Path


@pytest.fixture(scope="session")
async def triton(tmp_path_factory: pytest.TempPathFactory, built: Built) -> AsyncIterator[Triton]:
    """The real tritonserver binary from the nvidia-pytriton wheel, explicit model control, on free ports."""
    work = tmp_path_factory.mktemp("triton")
    grpc_port = free_port()
    argv, env = triton_command(built.repo, free_port(), grpc_port, free_port(), work)
    # Disposable server: at the end of the session do not wait the default 30 s for streams to drain.
    argv.append("--exit-timeout-secs=3")
    log = work / "tritonserver.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"127.0.0.1:{grpc_port}"
        try:
            await wait_ready(url, timeout=60)
        except TimeoutError:
            pytest.fail(f"tritonserver did not start:\n{log.read_text(errors='replace')[-3000:]}")
        yield Triton(url, log)
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
