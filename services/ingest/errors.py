"""The exceptions the ingest service raises for bad input; the CLI turns them into ``error: ...`` and exit 2."""

from __future__ import annotations

from typing import Literal

from libs.datasets.errors import DatasetError

# One class, not a subclass: the shared pipeline (libs.datasets) raises DatasetError for the same bad input that
# the readers here reject, and every ``except IngestError`` in the CLI and routes must keep catching both.
IngestError = DatasetError


class LimitExceeded(IngestError):
    """The input is within the rules but beyond a configured limit (``rows`` read or SQLite ``query_time``).

    A subclass so the CLI still prints it as any bad input; the HTTP API answers it with 413/422 naming the limit.
    """

    def __init__(self, message: str, *, limit: Literal["rows", "query_time"]) -> None:
        super().__init__(message)
        self.limit = limit
