"""The answer log: one ``answers`` row per answer, written off the request path by background tasks."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.tables import Answer

log = logging.getLogger("kefu.gateway.answering")


class AnswerLog:
    """Writes answer rows off the request path; ``drain`` at shutdown waits for the last ones. A row is given as
    its column values and built here, after the answer: an ORM object costs tens of microseconds to make, which
    the answer's first token need not wait for."""

    def __init__(self, sessions: async_sessionmaker) -> None:
        self.sessions = sessions
        self._pending: set[asyncio.Task] = set()

    def record(self, fields: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._write(fields))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, fields: dict[str, Any]) -> None:
        try:
            async with self.sessions() as session, session.begin():
                session.add(Answer(**fields))
        except Exception:
            log.exception("could not log answer %s", fields.get("answer_id"))

    async def drain(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
