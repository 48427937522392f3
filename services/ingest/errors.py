"""The exceptions the ingest service raises for bad input; the CLI turns them into ``error: ...`` and exit 2."""

from __future__ import annotations

from typing import Literal


class IngestError(Exception):
    """Bad or unusable input. The message is shown to the user as-is, so it names the file, line and fields."""


class LimitExceeded(IngestError):
    """The input is within the rules but beyond a configured limit (``rows`` read or SQLite ``query_time``).

    A subclass so the CLI still prints it as any bad input; the HTTP API answers it with 413/422 naming the limit.
    """

    def __init__(self, message: str, *, limit: Literal["rows", "query_time"]) -> None:
        super().__init__(message)
        self.limit = limit
