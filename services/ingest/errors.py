"""The one exception the ingest service raises for bad input; the CLI turns it into ``error: ...`` and exit 2."""

from __future__ import annotations


class IngestError(Exception):
    """Bad or unusable input. The message is shown to the user as-is, so it names the file, line and fields."""
