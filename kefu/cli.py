"""The ``kefu`` command: the stack (up/status/serve/db) plus each service's own commands (ingest, train, …)."""

from __future__ import annotations

import asyncio
import importlib
import json
import signal
from pathlib import Path
from typing import Annotated

import typer

from kefu.dlq import dlq_app
from kefu.events_tail import events_app
from kefu.registry import optional_module, service_names

app = typer.Typer(
    help="kefu (客服): FAQ knowledge → fine-tuned customer-service LLM, served and improved from feedback.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _settings(home: Path | None = None):  # type: ignore[no-untyped-def]
    from libs.common.settings import KefuSettings

    return KefuSettings(home=home) if home else KefuSettings()


@app.command()
def up(
    kafka_port: Annotated[int, typer.Option(help="Port of the embedded Kafka-protocol broker (Tansu).")] = 19092,
    only: Annotated[str | None, typer.Option(help="Comma-separated services to start (default: all).")] = None,
    home: Annotated[Path | None, typer.Option(help="Artifact/state root (default $KEFU_HOME or ~/.kefu).")] = None,
) -> None:
    """Start the single-machine stack: broker, sidecars and every service, supervised, until Ctrl-C."""
    from kefu.stack import Stack

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        wanted = [s.strip() for s in only.split(",")] if only else None
        async with Stack(_settings(home), kafka_port=kafka_port, only=wanted, say=lambda s: print(s, flush=True)) as st:
            await st.wait_healthy()
            await stop.wait()
            print("stopping", flush=True)
        print("stopped", flush=True)

    asyncio.run(run())


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    home: Annotated[Path | None, typer.Option(help="State root of the stack to inspect.")] = None,
) -> None:
    """Show the processes of the running `kefu up` stack."""
    from kefu.stack import read_status

    doc = read_status(_settings(home).home)
    if as_json:
        print(json.dumps({"services": [{k: s[k] for k in ("name", "pid", "state")} for s in doc["services"]]}))
        return
    if not doc["services"]:
        print("no stack has run under this KEFU_HOME")
    for s in doc["services"]:
        print(f"{s['name']:<10} {s['state']:<11} pid={s['pid']} {' '.join(s.get('endpoints', []))}")


@app.command()
def serve(name: Annotated[str, typer.Argument(help="Service to run in this process.")]) -> None:
    """Run one service in the foreground (what `kefu up` starts for each service)."""
    if name not in service_names():
        raise typer.BadParameter(f"unknown service {name!r}; known: {', '.join(service_names())}")
    importlib.import_module(f"services.{name}.app").main()


@app.command()
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Last stdout line: one JSON object of results.")] = False,
    kafka_port: Annotated[int, typer.Option(help="Port of the embedded broker.")] = 19092,
    home: Annotated[Path | None, typer.Option(help="State root (default: a fresh folder under $KEFU_HOME).")] = None,
    questions: Annotated[
        list[Path] | None,
        typer.Option(help="Question sets to ask once the engine is live (default: the sample's own set)."),
    ] = None,
) -> None:
    """Run the whole loop on the embedded stack with the bundled sample, timed, and print a summary."""
    import time

    from kefu.demo import run_demo, set_labels
    from kefu.demo_summary import print_summary

    try:
        set_labels(questions or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--questions") from None

    root = home or _settings().home / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    summary = asyncio.run(run_demo(root, kafka_port, say=lambda s: print(s, flush=True), question_sets=questions))
    print_summary(summary, say=print)
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))


@app.command()
def bench(
    as_json: Annotated[bool, typer.Option("--json", help="Last stdout line: one JSON object of results.")] = False,
    with_demo: Annotated[bool, typer.Option(help="Also run `kefu demo` (minutes) for pipeline_seconds.")] = False,
    write: Annotated[
        bool, typer.Option(help="Also write the table to docs/benchmarks.md (a tracked file: off unless asked).")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Run only these parts (repeatable): serving, train, retrieval, demo."),
    ] = None,
    repeats: Annotated[int, typer.Option(min=3, help="Alternating repeats behind each training ratio's median.")] = 3,
    doc: Annotated[
        Path | None, typer.Option(help="File --write rewrites; default: the checkout's docs/benchmarks.md.")
    ] = None,
) -> None:
    """Measure serving and training ratios side by side on this machine (see docs/benchmarks.md). Everything runs
    in temporary folders: the checkout is left as it was unless --write."""
    from kefu.bench.run import run_bench

    try:
        run_bench(as_json, with_demo, write, only=only or (), repeats=repeats, doc=doc)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command("db-upgrade")
def db_upgrade() -> None:
    """Apply database migrations (the stack does this itself at start)."""
    from libs.common.db import upgrade_database

    settings = _settings()
    upgrade_database(settings.effective_database_url)
    print(f"database at head: {settings.effective_database_url}")


@app.command("asyncapi")
def asyncapi(
    out: Annotated[Path, typer.Option(help="Where to write it: .yaml/.yml → YAML, anything else → JSON.")] = Path(
        "asyncapi.yaml"
    ),
    bootstrap: Annotated[str, typer.Option(help="Kafka bootstrap servers named in the document.")] = "kafka:9092",
) -> None:
    """Write the AsyncAPI document of the lifecycle topics (generated from the event models)."""
    from kefu.asyncapi import write_asyncapi

    print(f"wrote {write_asyncapi(out, bootstrap=bootstrap)}")


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="Where to write the self-contained HTML page.")] = Path("report.html"),
    runs: Annotated[int, typer.Option(min=1, help="Training runs whose loss curves are drawn (newest).")] = 5,
    days: Annotated[int, typer.Option(min=1, help="Days of answers and drift checks shown.")] = 30,
) -> None:
    """Write a quality report (loss curves, evaluation per model, hand-off/flag rates per engine, canary
    decisions, drift checks) as one HTML file with its plots inlined: open it in any browser."""
    from kefu.report import write_report
    from services.trainer.settings import Settings as TrainerSettings  # its MLflow tracking URI

    print(f"wrote {write_report(TrainerSettings(), out, runs=runs, days=days)}")


drift_app = typer.Typer(help="Question drift: are customers still asking what the live engine was trained on?")


@drift_app.command("check")
def drift_check(
    as_json: Annotated[bool, typer.Option("--json", help="Print the check's record as one JSON object.")] = False,
) -> None:
    """Compare the last window of customer questions with the live engine's training questions now.

    Publishes quality.drift (through the outbox) when a threshold is crossed; exit code 1 then, else 0.
    """
    from libs.common.artifacts import ArtifactStore
    from libs.common.db import open_database
    from libs.common.outbox import flush_outbox
    from services.feedback.drift_check import run_check
    from services.feedback.errors import FeedbackError
    from services.feedback.settings import Settings

    settings = Settings()

    async def run() -> dict:
        async with open_database(settings) as sessions:
            record = await run_check(sessions, ArtifactStore(settings.home), settings, trigger="cli")
            if record["event_id"]:
                await flush_outbox(settings, sessions, client="drift-cli")
            return record

    try:
        record = asyncio.run(run())
    except FeedbackError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(record, ensure_ascii=False))
    else:
        conf, far = record["figures"]["confidence"], record["figures"]["far_share"]
        typer.echo(
            f"{record['questions']} questions since {record['window_start']} vs {record['reference_questions']} "
            f"training questions of {record['dataset_id']} (engine {record['engine_id']})"
        )
        typer.echo(
            f"confidence mean {conf.get('current_mean', 0):.3f} vs {conf.get('reference_mean', 0):.3f}; "
            f"far from every entry {far['current']:.1%} vs {far['reference']:.1%}"
        )
        for line in record["crossed"] or (["no threshold crossed"] if record["judged"] else ["too few questions"]):
            typer.echo(f"  {line}")
        if record["event_id"]:
            typer.echo(f"quality.drift {record['event_id']}")
    raise typer.Exit(1 if record["event_id"] else 0)


@drift_app.command("history")
def drift_history(
    limit: Annotated[int, typer.Option(min=1, help="Newest checks to list.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per check, newest first.")] = False,
) -> None:
    """List the newest drift checks (daily job, API and CLI alike): window, KS statistic and p-value of each
    measure, the far-question share, whether a threshold was crossed, and the top unanswered clusters."""
    from libs.common.db import open_database
    from services.feedback import drift_history as history
    from services.feedback.settings import Settings

    async def run() -> list[dict]:
        async with open_database(Settings()) as sessions:
            return await history.recent(sessions, limit=limit)

    rows = asyncio.run(run())
    for row in rows:
        if as_json:
            typer.echo(json.dumps(row, ensure_ascii=False))
            continue
        verdict = "DRIFT" if row["drifted"] else "ok" if row["judged"] else "too few"

        def ks(name: str, row: dict = row) -> str:
            stat, p = row[f"{name}_ks"], row[f"{name}_p"]
            return f"{name} KS {stat:.2f} p {p:.2g}" if stat is not None else f"{name} —"

        far = f"far {row['far_share']:.0%}" if row["far_share"] is not None else "far —"
        top = row["clusters"][0]["question"] if row["clusters"] else "—"
        typer.echo(
            f"{row['checked_at'][:16]} {row['trigger']:<8} {verdict:<7} {row['questions']:>5} q  "
            f"{ks('confidence')}  {ks('length')}  {far}  top unanswered: {top}"
        )
    if not rows:
        typer.echo("no drift checks yet (kefu drift check runs one)")


app.add_typer(dlq_app, name="dlq")
app.add_typer(drift_app, name="drift")
app.add_typer(events_app, name="events")

for _name in service_names():
    _module = optional_module(_name, "cli")
    if _module is not None:
        _module.register(app)
