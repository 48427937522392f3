"""``kefu report``: one self-contained HTML page on how the bot is doing, for a support lead's browser.

Loss curves of the last training runs, evaluation metrics per model version, hand-off and flag rates per engine
over time, the canary decisions with their evidence, and the question-drift checks as a series. Plots are PNGs
inlined as ``data:`` URIs (no file beside the page, no network), drawn with matplotlib's ``Figure`` API — never
pyplot, whose global state is not safe in threads or a headless process. CJK fonts are not assumed on the machine,
so plot labels are ids and English; the page's text is Chinese first with English beside it.
"""

from __future__ import annotations

import asyncio
import base64
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from matplotlib.figure import Figure

from kefu import report_data

_TEMPLATE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="zh"><head><meta charset="utf-8"><title>kefu 质量报告 · quality report</title>
<style>
body{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:2rem auto;max-width:70rem;color:#222}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0} td,th{border:1px solid #ddd;padding:.25rem .5rem}
th{background:#f5f5f5;text-align:left} .muted{color:#777} img{max-width:100%;height:auto}
.state-rolled_back{color:#b00} .state-live{color:#070}
</style></head><body>
<h1>kefu 质量报告 <span class="muted">quality report</span></h1>
<p class="muted">生成于 generated {{ generated }} UTC · {{ home }}</p>

<section id="loss"><h2>训练损失 · Training loss (last {{ runs|length }} runs)</h2>
{% if loss_png %}<img alt="training loss per step" src="data:image/png;base64,{{ loss_png }}">
<table><tr><th>run</th><th>started</th><th>status</th><th>steps</th><th>final loss</th></tr>
{% for r in runs %}<tr><td>{{ r.name }} <code class="muted">{{ r.run_id[:8] }}</code></td><td>{{ r.started }}</td>
<td>{{ r.status }}</td><td>{{ r.loss|length }}</td><td>{{ "%.4f"|format(r.loss[-1][1]) if r.loss else "—" }}</td></tr>
{% endfor %}</table>
{% else %}<p class="empty">没有训练记录 · no training runs in {{ tracking_uri }}</p>{% endif %}</section>

<section id="eval"><h2>各模型版本的评测指标 · Evaluation per model version</h2>
{% if eval_png %}<img alt="evaluation metrics per model" src="data:image/png;base64,{{ eval_png }}">
<table><tr><th>model</th><th>dataset</th><th>created</th>{% for m in metrics %}<th>{{ m }}</th>{% endfor %}</tr>
{% for v in versions %}<tr><td><code>{{ v.model_id }}</code></td><td><code>{{ v.dataset_id }}</code></td>
<td>{{ v.created }}</td>{% for m in metrics %}<td>{{ "%.3f"|format(v.metrics[m]) if m in v.metrics else "—" }}</td>
{% endfor %}</tr>{% endfor %}</table>
{% else %}<p class="empty">没有模型版本 · no model versions</p>{% endif %}</section>

<section id="rates"><h2>转人工率与标记率 · Hand-off and flag rates per engine (since {{ rates.since }})</h2>
{% if rates_png %}<img alt="hand-off and flag rates per engine and day" src="data:image/png;base64,{{ rates_png }}">
<table><tr><th>engine</th><th>answers</th><th>hand-off rate</th><th>flag rate</th>
<th>hand-offs: low coverage / asked what the entry does not say / answer check</th></tr>
{% for engine, t in rates.totals.items() %}<tr><td><code>{{ engine }}</code></td><td>{{ t.answers }}</td>
<td>{{ "%.1f%%"|format(100 * t.handoff_rate) }}</td><td>{{ "%.1f%%"|format(100 * t.flag_rate) }}</td>
<td>{{ t.handoffs.low_coverage }} / {{ t.handoffs.unspoken_kind }} / {{ t.handoffs.answer_check }}</td></tr>
{% endfor %}</table>
{% else %}<p class="empty">这段时间没有回答 · no answers in this period</p>{% endif %}</section>

<section id="canary"><h2>灰度发布决定 · Canary decisions</h2>
{% if deployments %}<table><tr><th>engine</th><th>state</th><th>started</th><th>ended</th><th>reason</th>
<th>replayed</th><th>char F1 canary / live</th><th>hand-off canary / live</th><th>corrections honoured</th>
<th>ms/token canary ÷ live</th></tr>
{% for d in deployments %}<tr><td><code>{{ d.engine_id }}</code></td>
<td class="state-{{ d.state }}">{{ d.state }}{% if d.held %} (held){% endif %}</td>
<td>{{ d.started }}</td><td>{{ d.ended or "—" }}</td><td>{{ d.reason or "—" }}</td><td>{{ d.replayed or "—" }}</td>
<td>{{ fmt(d.canary.char_f1) }} / {{ fmt(d.live.char_f1) }}</td>
<td>{{ fmt(d.canary.handoff_rate) }} / {{ fmt(d.live.handoff_rate) }}</td>
<td>{{ fmt(d.canary.corrections_honoured) }}</td><td>{{ fmt(d.latency_ratio_p50) }}</td></tr>{% endfor %}</table>
{% else %}<p class="empty">还没有部署 · no deployments yet</p>{% endif %}</section>

<section id="drift"><h2>问题漂移检查 · Question drift checks (since {{ rates.since }})</h2>
{% if drift_png %}<img alt="drift check statistics over time" src="data:image/png;base64,{{ drift_png }}">
<table><tr><th>checked</th><th>trigger</th><th>questions</th><th>confidence KS (p)</th><th>length KS (p)</th>
<th>far share</th><th>verdict</th><th>top unanswered</th></tr>
{% for c in drift[-10:]|reverse %}<tr><td>{{ c.when }}</td><td>{{ c.trigger }}</td><td>{{ c.questions }}</td>
<td>{{ fmt(c.confidence_ks) }} ({{ "%.2g"|format(c.confidence_p) if c.confidence_p is not none else "—" }})</td>
<td>{{ fmt(c.length_ks) }} ({{ "%.2g"|format(c.length_p) if c.length_p is not none else "—" }})</td>
<td>{{ "%.1f%%"|format(100 * c.far_share) if c.far_share is not none else "—" }}</td>
<td class="{{ 'state-rolled_back' if c.drifted else '' }}">{{ "; ".join(c.crossed) if c.drifted
 else ("ok" if c.judged else "too few questions") }}</td>
<td>{{ c.clusters[0].question if c.clusters else "—" }}</td></tr>{% endfor %}</table>
{% else %}<p class="empty">没有漂移检查 · no drift checks (kefu drift check)</p>{% endif %}</section>
</body></html>
"""
)


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def loss_figure(runs: list[dict[str, Any]]) -> Figure | None:
    """One line per run: its training loss per step (log scale, as the trainer's own curve)."""
    runs = [r for r in runs if r["loss"]]
    if not runs:
        return None
    fig = Figure(figsize=(8, 3.6))
    ax = fig.subplots()
    for r in runs:
        steps, values = zip(*r["loss"], strict=True)
        ax.plot(steps, values, label=f"{r['name']} ({r['run_id'][:8]})")
    ax.set(xlabel="step", ylabel="loss", yscale="log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def eval_figure(versions: list[dict[str, Any]]) -> Figure | None:
    """Grouped bars: each evaluation metric for each model version, oldest left."""
    versions = [v for v in versions if v["metrics"]]
    if not versions:
        return None
    fig = Figure(figsize=(8, 3.6))
    ax = fig.subplots()
    width = 0.8 / len(report_data.EVAL_METRICS)
    for i, metric in enumerate(report_data.EVAL_METRICS):
        xs = [n + i * width for n in range(len(versions))]
        ax.bar(xs, [v["metrics"].get(metric, 0.0) for v in versions], width, label=metric)
    ax.set_xticks([n + 0.4 - width / 2 for n in range(len(versions))], [v["model_id"][:14] for v in versions])
    ax.set(ylim=(0, 1.05), ylabel="share")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def rates_figure(rates: dict[str, Any]) -> Figure | None:
    """Two panels sharing the day axis: hand-off rate and flag rate, one line per engine."""
    if not rates["series"]:
        return None
    fig = Figure(figsize=(8, 5))
    top, bottom = fig.subplots(2, 1, sharex=True)
    days = sorted({p["day"] for points in rates["series"].values() for p in points})
    for engine, points in rates["series"].items():
        xs = [days.index(p["day"]) for p in points]
        top.plot(xs, [p["handoff_rate"] for p in points], marker="o", label=engine[:16])
        bottom.plot(xs, [p["flag_rate"] for p in points], marker="o", label=engine[:16])
    top.set(ylabel="hand-off rate", ylim=(0, 1.05))
    bottom.set(ylabel="flag rate", ylim=(0, 1.05), xlabel="day (UTC)")
    bottom.set_xticks(range(len(days)), days, rotation=30, fontsize="small")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    top.legend(fontsize="small")
    return fig


def drift_figure(checks: list[dict[str, Any]]) -> Figure | None:
    """Per check: the KS statistic of retrieval confidence and of question length, the far share, and the
    statistic threshold; checks that crossed a threshold are ringed in red."""
    if not checks:
        return None
    fig = Figure(figsize=(8, 3.6))
    ax = fig.subplots()
    xs = range(len(checks))
    for key, label in (("confidence_ks", "confidence KS"), ("length_ks", "length KS"), ("far_share", "far share")):
        ax.plot(xs, [c[key] if c[key] is not None else float("nan") for c in checks], marker="o", label=label)
    bound = checks[-1]["thresholds"].get("min_statistic")
    if bound is not None:
        ax.axhline(bound, color="grey", linestyle="--", label=f"KS threshold {bound}")
    alerts = [i for i, c in enumerate(checks) if c["drifted"]]
    ax.scatter(alerts, [1.02] * len(alerts), color="#b00", marker="v", label="drift published")
    ax.set(ylim=(0, 1.08), xlabel="check (UTC)", ylabel="statistic / share")
    ax.set_xticks(list(xs), [c["when"][5:] for c in checks], rotation=30, fontsize="small")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def render(data: dict[str, Any]) -> str:
    """The page for collected ``data`` (see ``collect``); every plot inlined."""
    figures = {
        "loss_png": loss_figure(data["runs"]),
        "eval_png": eval_figure(data["versions"]),
        "rates_png": rates_figure(data["rates"]),
        "drift_png": drift_figure(data["drift"]),
    }
    pngs = {name: _png(fig) if fig is not None else None for name, fig in figures.items()}
    return _TEMPLATE.render(**data, **pngs, metrics=report_data.EVAL_METRICS, fmt=_fmt)


async def collect(settings: Any, *, runs: int = 5, days: int = 30) -> dict[str, Any]:
    """Everything the page shows; ``settings``: the trainer's (for its MLflow tracking URI) or any with ``home``."""
    from libs.common.db import open_database

    uri = settings.tracking_uri() if hasattr(settings, "tracking_uri") else f"sqlite:///{settings.home}/mlflow.db"
    training = await asyncio.to_thread(report_data.training_runs, uri, runs)
    async with open_database(settings, migrate=False) as sessions:
        versions = await report_data.model_versions(sessions)
        rates = await report_data.engine_rates(sessions, days)
        deployments = await report_data.canary_decisions(sessions)
        drift = await report_data.drift_series(sessions, days)
    return {
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "home": str(settings.home),
        "tracking_uri": uri,
        "runs": training,
        "versions": versions,
        "rates": rates,
        "deployments": deployments,
        "drift": drift,
    }


def write_report(settings: Any, out: Path, *, runs: int = 5, days: int = 30) -> Path:
    """Collect, render and write the page to ``out``; returns ``out``."""
    html = render(asyncio.run(collect(settings, runs=runs, days=days)))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
