"""``kefu feedback release`` (approved corrections → a new dataset version) and ``kefu lineage ID``."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

feedback_app = typer.Typer(help="Agents' feedback: release approved corrections as a new dataset version.")


def release_command(
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Parent dataset id (default: the live deployment's dataset).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
) -> None:
    """Fold every approved correction into a new dataset version and publish dataset.ready.

    The last stdout line is the new dataset id (nothing is printed on stdout when nothing was approved).
    """
    # Imported here: the CLI must start fast and without the DB/broker stack for unrelated commands.
    from libs.common.artifacts import ArtifactStore
    from libs.common.db import open_database
    from libs.common.outbox import flush_outbox
    from services.feedback.errors import FeedbackError
    from services.feedback.release import release_corrections
    from services.feedback.settings import Settings

    settings = Settings()

    async def run() -> None:
        async with open_database(settings) as sessions:
            result = await release_corrections(sessions, ArtifactStore(settings.home), dataset_id=dataset)
            if result is None:
                typer.echo("no approved flags to release", err=True)
                return
            sent = await flush_outbox(settings, sessions, client="feedback-cli")
        if as_json:
            typer.echo(json.dumps(result.to_json(), ensure_ascii=False))
            return
        state = "published" if sent else "queued in the outbox (a running service relays it)"
        if not result.published:
            state = "already stored before; not announced again"
        typer.echo(f"released {len(result.flag_ids)} flag(s) on top of {result.parent_dataset_id}: {result.counts}")
        typer.echo(f"dataset.ready {state}")
        typer.echo(result.dataset_id)

    try:
        asyncio.run(run())
    except FeedbackError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None


def lineage_command(
    ident: Annotated[str, typer.Argument(metavar="ID", help="A dataset, model, engine, flag or answer id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the lineage as one JSON object.")] = False,
) -> None:
    """Print dataset → run → model → engine → deployment, and the flags behind the dataset."""
    from libs.common.db import open_database
    from libs.common.settings import KefuSettings
    from services.feedback.errors import FeedbackError
    from services.feedback.lineage import collect_lineage, format_lineage

    async def run() -> dict:
        async with open_database(KefuSettings()) as sessions:
            return await collect_lineage(sessions, ident)

    try:
        doc = asyncio.run(run())
    except FeedbackError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(doc, ensure_ascii=False, default=str))
        return
    for line in format_lineage(doc):
        typer.echo(line)


def register(app: typer.Typer) -> None:
    """Add ``kefu feedback …`` and ``kefu lineage`` to the main ``kefu`` app."""
    feedback_app.command("release")(release_command)
    app.add_typer(feedback_app, name="feedback")
    app.command("lineage")(lineage_command)
