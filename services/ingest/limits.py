"""Request body size limit, enforced while the body arrives.

The route's own check sees the file only after Starlette has parsed (and spooled to disk) the whole multipart
body, so a huge upload would still be received in full. This ASGI middleware refuses a declared
``Content-Length`` over the limit before reading anything, and stops reading a chunked body at the limit.
"""

from __future__ import annotations

import json
from typing import Any

from libs.common.http import error_body

# Room for the multipart framing and the small form fields around the file.
FORM_OVERHEAD_BYTES = 1024 * 1024


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: 413 in the common error shape once a request body exceeds ``max_bytes``."""

    def __init__(self, app: Any, *, max_bytes: int, setting: str) -> None:
        self.app, self.max_bytes, self.setting = app, max_bytes, setting

    async def _refuse(self, send: Any) -> None:
        message = f"request body exceeds {self.max_bytes} bytes (limit {self.setting})"
        body = json.dumps(error_body("too_large", message)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Any:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal started
            if exceeded:  # the app turned the aborted read into an error of its own: answer 413 instead
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)
