"""``kefu bench``: side-by-side throughput/latency ratios of the serving and training paths, on this machine.

One measurement per module (``decode``, ``gateway``, ``train``, ``retrieval``), each returning ``{metric: value}``;
``run`` collects them and ``report`` turns them into the table of docs/benchmarks.md, written only with ``--write``.
Every ratio compares two paths measured alternately in one process run, so machine drift hits both sides alike.
The package ships in the wheel and the image with the FAQ sample it measures on (``SAMPLE``), so ``kefu bench``
needs no source checkout. This module stays import-light: the tests' fixtures take ``free_port`` from it.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

#: The bundled FAQ sample (data/sample/cloudmax_faq.jsonl, linked into this package so the wheel carries it).
SAMPLE = Path(__file__).resolve().with_name("cloudmax_faq.jsonl")
MODEL_NAME = "kefu-chat"
#: Random weights never emit the stop token: every answer runs to exactly this budget, so runs compare equal work.
MAX_TOKENS = 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
