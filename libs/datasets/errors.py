"""The one exception the dataset library raises for bad or unusable input."""

from __future__ import annotations


class DatasetError(Exception):
    """Bad or unusable input. The message is shown to the user as-is, so it names the file, line and fields.

    Ingest's readers raise it too (as ``IngestError``, the same class), so its CLI and upload API catch one type
    whether a reader or the shared pipeline refused the input; feedback maps it to its own error.
    """
