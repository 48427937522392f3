"""Feedback's domain errors. They are ``ApiError``s so routes need no mapping; the CLI prints their message."""

from __future__ import annotations

from libs.common.http import ApiError


class FeedbackError(ApiError):
    """A request the feedback domain refuses, with the HTTP status and stable code it answers with."""


def not_found(what: str, ident: str) -> FeedbackError:
    return FeedbackError(404, f"{what}_not_found", f"no {what} with id {ident!r}")
