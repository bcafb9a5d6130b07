"""Refuse request bodies over a byte limit before they are read into memory or parsed.

A declared ``Content-Length`` over the limit is refused at once; a body sent without one (chunked)
is counted as it arrives and refused as soon as it passes the limit. Either way the answer is a
413 with a one-line JSON ``detail``.

Example:
    >>> from fastapi import FastAPI
    >>> from fastapi.testclient import TestClient
    >>> app = FastAPI()
    >>> app.add_middleware(BodyLimit, max_bytes=10)
    >>> TestClient(app).post("/", content=b"x" * 11).json()
    {'detail': 'body: 11 bytes, over the server limit of 10'}
"""

from __future__ import annotations

import json


class BodyLimit:
    """ASGI middleware: HTTP request bodies of at most ``max_bytes``.

    Example:
        >>> BodyLimit(app=None, max_bytes=1024).max_bytes
        1024
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, f"{int(declared)} bytes")
            return
        # Read the whole (bounded) body here, then hand it on as one message.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(send, f"over {size} bytes")
                return
            more = message.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send, size: str) -> None:
        detail = json.dumps({"detail": f"body: {size}, over the server limit of {self.max_bytes}"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(detail)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": detail})
