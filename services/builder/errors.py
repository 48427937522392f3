"""The one error the builder raises for anything a user can fix: a broken model dir, a failed gate, no GPU."""

from __future__ import annotations


class BuildError(Exception):
    """A build that cannot produce a servable engine; the message names the problem and what to do."""
