"""Runs the chosen benchmarks and prints the table; writes docs/benchmarks.md only when asked.

A run touches nothing outside temporary directories: models, engines, the broker's and Triton's state and the
demo's home all live under ``tempfile`` folders removed on exit, so ``kefu bench`` leaves a checkout clean.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from kefu.bench import free_port
from kefu.bench.report import DOC, machine, table, write_doc

#: What ``--only`` chooses from; ``demo`` (minutes) runs only when named or with ``--with-demo``.
PARTS = ("serving", "train", "retrieval", "demo")


def demo_pipeline_seconds(say: Callable[[str], None]) -> float | None:
    """``pipeline_seconds`` of a full ``kefu demo --json`` run (minutes), in its own temp home and ports."""
    with tempfile.TemporaryDirectory(prefix="kefu-bench-demo-") as tmp:
        env = {**os.environ, "KEFU_HOME": tmp}
        argv = [sys.executable, "-m", "kefu", "demo", "--json", "--kafka-port", str(free_port()), "--home", tmp]
        say("bench: running `kefu demo --json` for pipeline_seconds")
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            say(f"bench: demo failed ({proc.returncode}): {proc.stdout[-500:]}{proc.stderr[-500:]}")
            return None
        return json.loads(proc.stdout.strip().splitlines()[-1]).get("pipeline_seconds")


async def run_all(parts: Collection[str], say: Callable[[str], None], *, repeats: int) -> dict[str, Any]:
    # Each part imports its heavy dependencies (torch, Triton client, TRL) only when it runs.
    results: dict[str, Any] = {}
    if "serving" in parts:
        from kefu.bench import decode, gateway
        from kefu.bench.env import bench_environment

        async with bench_environment(say=say) as env:
            results.update(await decode.measure(env, say))
            results.update(await gateway.measure(env, say))
    if "train" in parts:
        from kefu.bench import train

        results.update(await asyncio.to_thread(train.measure, say, repeats))
    if "retrieval" in parts:
        from kefu.bench import retrieval

        results.update(await asyncio.to_thread(retrieval.measure, say))
    results["pipeline_seconds"] = demo_pipeline_seconds(say) if "demo" in parts else None
    return results


def run_bench(
    as_json: bool,
    with_demo: bool,
    write: bool = False,
    say: Callable[[str], None] = print,
    *,
    only: Collection[str] = (),
    repeats: int = 3,
    doc: Path | None = None,
) -> dict:
    """Measure ``only`` those parts (default: all but the demo, which ``with_demo`` adds), print the table and,
    with ``write``, rewrite ``doc`` (default: the checkout's docs/benchmarks.md); returns the results."""
    unknown = set(only) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown benchmark part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    parts = set(only) or {*PARTS[:3], *(["demo"] if with_demo else [])}
    doc = doc or DOC
    if write and not doc.parent.is_dir():  # an installed wheel has no docs/ of its own: say where to write
        raise ValueError(f"no folder for {doc}; pass --doc PATH")
    host = machine()
    results = asyncio.run(run_all(parts, say, repeats=repeats))
    for line in table(results):
        say(line)
    if write:
        write_doc(results, host, doc)
        say(f"bench: table written to {doc}")
    if as_json:
        print(json.dumps({**results, "machine": host}, ensure_ascii=False))
    return results
