"""Feedback's domain errors: what the domain refuses, as a stable code and a message, and no HTTP status.

The kind of refusal is the class; the HTTP API maps classes to statuses in one place (``routes.STATUS_OF``) and
the CLI prints the message. Code that wants any refusal catches ``FeedbackError``.
"""

from __future__ import annotations


class FeedbackError(Exception):
    """A request the feedback domain refuses; ``code`` is stable for clients, ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Invalid(FeedbackError):
    """The request itself is wrong (a missing reason, a bad date); the message starts with the field's name."""


class NotFound(FeedbackError):
    """No answer, flag, dataset… with that id."""


class Conflict(FeedbackError):
    """Right in itself, but not in the current state (nothing live yet, a flag already released)."""


class Unusable(FeedbackError):
    """Well-formed input from which nothing usable comes (no correction survives cleaning)."""


def not_found(what: str, ident: str) -> NotFound:
    return NotFound(f"{what}_not_found", f"no {what} with id {ident!r}")
