"""Refuse request bodies over a byte limit before they are read into memory or parsed, and API
bodies that are not plain JSON before the framework reads them.

A declared ``Content-Length`` over the limit is refused at once; a body sent without one (chunked)
is counted as it arrives and refused as soon as it passes the limit. Either way the answer is a
413 with a one-line JSON ``detail``. A ``POST /v1/...`` body must then be declared as JSON (else
415) and be JSON a strict reader takes: UTF-8, no key twice in one object (which value would win
is up to the parser), numbers of sane length, nesting of sane depth (else 400, naming the problem).

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

from starlette.types import Send

from inference.batch.reading import DuplicateKey, unique_keys

API_PREFIX = "/v1/"


def route_path(scope: dict) -> str:
    """The request's path as the app routes it: without the ``root_path`` a proxy or a parent app adds.

    A check on ``scope["path"]`` alone would miss ``/api/v1/classify`` behind ``--root-path /api``
    or when the app is mounted under another one.

    Example:
        >>> route_path({"path": "/api/v1/classify", "root_path": "/api"})
        '/v1/classify'
        >>> route_path({"path": "/v1/classify"})
        '/v1/classify'
    """
    path, root = scope.get("path", ""), scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


class BodyLimit:
    """ASGI middleware: HTTP request bodies of at most ``max_bytes``.

    Example:
        >>> BodyLimit(app=None, max_bytes=1024).max_bytes
        1024
    """

    def __init__(self, app, max_bytes: int, max_texts: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_texts = max_texts  # articles a request may hold, counted before validation

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
        if scope.get("method") == "POST" and route_path(scope).startswith(API_PREFIX):
            headers = dict(scope.get("headers") or ())
            refusal = _encoded(headers.get(b"content-encoding", b"identity")) or json_body_problem(
                headers.get(b"content-type", b""), body, self.max_texts
            )
            if refusal is not None:
                await send_error(send, *refusal)
                return

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send, size: str) -> None:
        await send_error(send, 413, f"body: {size}, over the server limit of {self.max_bytes}")


def _encoded(content_encoding: bytes) -> tuple[int, str] | None:
    """Refuse a compressed body (415): it would otherwise be read as text and called "not UTF-8"."""
    coding = content_encoding.strip().lower()
    if coding in (b"", b"identity"):
        return None
    return 415, f"body: Content-Encoding {coding.decode('latin-1')} is not accepted; send the JSON uncompressed"


def json_body_problem(content_type: bytes, body: bytes, max_texts: int | None = None) -> tuple[int, str] | None:
    """The status and one-line detail that refuse an API body, or None when it is plain JSON.

    With ``max_texts``, a ``texts`` or ``titles`` list longer than that, or an object of more
    fields than any request has, is refused here: validated item by item, a 2 MB list of a million
    numbers took pydantic 8 s to report, on the event loop, with every other client waiting.

    Example:
        >>> json_body_problem(b"application/json", b'{"text": "a", "text": "b"}')
        (400, "body: the key 'text' appears twice in one object; send it once")
        >>> json_body_problem(b"text/plain", b'{"text": "a"}')
        (415, 'body: send it as JSON, with the header Content-Type: application/json')
        >>> json_body_problem(b"application/json; charset=utf-8", b'{"text": "a"}') is None
        True
    """
    media_type = content_type.split(b";")[0].strip().lower()
    if media_type != b"application/json":
        return 415, "body: send it as JSON, with the header Content-Type: application/json"
    try:
        value = json.loads(body.decode("utf-8"), object_pairs_hook=unique_keys)
    except UnicodeDecodeError:
        return 400, "body: not UTF-8 text"
    except DuplicateKey as exc:
        return 400, f"body: the key {exc.key!r} appears twice in one object; send it once"
    except RecursionError:
        return 400, "body: nested too deep"
    except json.JSONDecodeError:
        return None  # the framework's own answer names the line and column
    except ValueError:  # Python refuses integers of over 4,300 digits
        return 400, "body: a number has too many digits"
    return _too_many_items(value, max_texts) if max_texts is not None and isinstance(value, dict) else None


# More fields than any request takes (text(s), title(s), top_k, num_beams, max_new_tokens): a typo
# or two is answered field by field; thousands are refused at once.
MAX_FIELDS = 16


def _too_many_items(request: dict, max_texts: int) -> tuple[int, str] | None:
    if len(request) > MAX_FIELDS:
        return 422, f"body: {len(request)} fields, more than any request has (at most {MAX_FIELDS})"
    for field in ("texts", "titles"):
        items = request.get(field)
        if isinstance(items, list) and len(items) > max_texts:
            return 413, f"{field}: {len(items)} articles, over the server's limit of {max_texts} per request"
    return None


async def send_error(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Answer an ASGI request with ``status`` and the JSON ``{"detail": detail}``, as the API's errors read.

    Example:
        >>> import asyncio
        >>> sent = []
        >>> async def send(message): sent.append(message)
        >>> asyncio.run(send_error(send, 413, "body too large"))
        >>> sent[0]["status"], sent[1]["body"]
        (413, b'{"detail": "body too large"}')
    """
    payload = json.dumps({"detail": detail}, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
