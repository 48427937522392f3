"""Gateway commands: ``kefu keys create``, ``kefu chat`` (gRPC API), ``kefu rollout hold|promote|rollback``."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

keys_app = typer.Typer(help="API keys of the gateway (stored hashed; the key is shown once).", no_args_is_help=True)


@keys_app.command("create")
def create_key_command(
    role: Annotated[str, typer.Option(help="app (chat) | agent (flag answers) | data (upload) | admin (all).")],
    name: Annotated[str, typer.Option(help="Who or what the key is for.")] = "",
    rate_limit: Annotated[int | None, typer.Option(help="Requests per minute (default: the gateway's).")] = None,
) -> None:
    """Create a key; the key itself is the LAST line printed (the database keeps only its hash)."""
    from libs.common.apikeys import ROLES, create_key
    from libs.common.db import open_database
    from services.gateway.settings import Settings

    if role not in ROLES:
        raise typer.BadParameter(f"choose one of {', '.join(ROLES)}", param_hint="--role")

    async def run() -> tuple[str, str]:
        async with open_database(Settings()) as sessions, sessions() as session, session.begin():
            return await create_key(session, role, name=name, rate_limit_per_minute=rate_limit)

    key_id, key = asyncio.run(run())
    typer.echo(f"created {role} key {key_id}{f' ({name})' if name else ''}; store it now, it is not shown again:")
    typer.echo(key)


def chat_command(
    question: Annotated[str, typer.Argument(help="The customer's question.")],
    key: Annotated[str | None, typer.Option(help="API key (default: $KEFU_API_KEY).")] = None,
    target: Annotated[str | None, typer.Option(help="Gateway gRPC host:port (default: from settings).")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Completion budget.")] = None,
) -> None:
    """Stream an answer through the gateway's gRPC API, then print its answer id (quote it to flag the answer)."""
    import grpc

    from proto.kefu.gateway.v1 import chat_pb2, chat_pb2_grpc
    from services.gateway.settings import Settings

    key = key or os.environ.get("KEFU_API_KEY")
    if not key:
        raise typer.BadParameter("pass --key or set KEFU_API_KEY", param_hint="--key")
    settings = Settings()
    address = target or f"{settings.bind_host}:{settings.gateway_grpc_port}"
    request = chat_pb2.ChatRequest(question=question, max_tokens=max_tokens)
    answer_id = ""
    with grpc.insecure_channel(address) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        try:
            for message in stub.ChatStream(request, metadata=(("authorization", f"Bearer {key}"),)):
                answer_id = message.answer_id
                sys.stdout.write(message.delta)
                sys.stdout.flush()
        except grpc.RpcError as exc:
            typer.secho(f"\nchat failed: {exc.code().name}: {exc.details()}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=1) from None
    typer.echo(f"\nanswer_id: {answer_id}")


rollout_app = typer.Typer(
    help="The canary: hold it, promote it, or roll back (admins: needs database access).", no_args_is_help=True
)
Reason = Annotated[str, typer.Option(help="Why (kept with the deployment).")]


def _operate(action: Callable[[AsyncSession], Awaitable[str]]) -> None:
    """Run one rollout action in a transaction, publish what it staged, print the outcome (exit 1 if refused)."""
    from libs.common.db import open_database
    from libs.common.outbox import flush_outbox
    from services.gateway.rollout import RolloutError
    from services.gateway.settings import Settings

    settings = Settings()

    async def run() -> str:
        async with open_database(settings) as sessions:
            async with sessions() as session, session.begin():
                outcome = await action(session)
            sent = await flush_outbox(settings, sessions, client="gateway-cli")
        return f"{outcome}{'' if sent else ' (event queued in the outbox)'}"

    try:
        typer.echo(asyncio.run(run()))
    except RolloutError as exc:
        typer.secho(f"refused: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None


@rollout_app.command("rollback")
def rollback_command(reason: Reason = "operator request") -> None:
    """Drop the canary, or put the previous engine back if there is no canary."""
    import tritonclient.grpc.aio as aioclient

    from services.gateway.rollout import rollback
    from services.gateway.settings import Settings

    async def is_ready(model: str, version: int) -> bool:
        client = aioclient.InferenceServerClient(Settings().triton_grpc_url)
        try:
            return bool(await client.is_model_ready(model, str(version)))
        except Exception:  # noqa: BLE001 - unreachable Triton: the engine is not servable now
            return False
        finally:
            await client.close()

    async def act(session: AsyncSession) -> str:
        event = await rollback(session, reason, is_ready)
        return f"rolled back engine {event.engine_id}; serving {event.restored_engine_id or 'nothing'}"

    _operate(act)


@rollout_app.command("promote")
def promote_command(reason: Reason = "operator request") -> None:
    """Promote the canary to 100% now, whatever its evidence says."""
    from services.gateway.rollout import promote

    async def act(session: AsyncSession) -> str:
        event = await promote(session, reason)
        return f"promoted engine {event.engine_id}; it replaces {event.previous_engine_id or 'nothing'}"

    _operate(act)


@rollout_app.command("hold")
def hold_command(
    reason: Reason = "operator request",
    release: Annotated[bool, typer.Option("--release", help="Release the hold: the evidence decides again.")] = False,
) -> None:
    """Keep the canary at its traffic share with no automatic verdict, until released, promoted or rolled back."""
    from services.gateway.rollout import hold

    async def act(session: AsyncSession) -> str:
        dep = await hold(session, not release, reason)
        return f"canary {dep.engine_id}: {dep.reason}"

    _operate(act)


def register(app: typer.Typer) -> None:
    """Add ``keys``, ``chat``, ``rollout`` and ``rollback`` (= ``rollout rollback``) to the kefu CLI."""
    app.add_typer(keys_app, name="keys")
    app.add_typer(rollout_app, name="rollout")
    app.command("chat")(chat_command)
    app.command("rollback")(rollback_command)
