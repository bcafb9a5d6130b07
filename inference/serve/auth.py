"""The API key: with one set, ``/v1/*`` answers 401 unless the request sends ``Authorization: Bearer <key>``.

The key is checked by ASGI middleware, from the headers alone, before the body is read: a client
without the key learns nothing from the API, not even whether its JSON would have been accepted.
``/healthz``, ``/readyz`` and the page stay open: they reveal nothing about the models or the texts.

Example:
    >>> ApiKey(app=None, key="s3cret").allows({b"authorization": b"Bearer s3cret"})
    True
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from inference.serve.limits import API_PREFIX, route_path, send_error

REFUSAL = "missing or wrong API key: send the header Authorization: Bearer <key>"


class ApiKey:
    """ASGI middleware: requests under ``/v1/`` need ``Authorization: Bearer <key>``.

    Example:
        >>> ApiKey(app=None, key="s3cret").allows({b"authorization": b"Bearer wrong"})
        False
    """

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = scope["type"] == "http" and route_path(scope).startswith(API_PREFIX)
        if guarded and not self.allows(dict(scope.get("headers") or ())):
            await send_error(send, 401, REFUSAL, [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)

    def allows(self, headers: dict[bytes, bytes]) -> bool:
        """Whether ``headers`` (lower-case names, as ASGI gives them) carry the key as a bearer token.

        Example:
            >>> ApiKey(app=None, key="k").allows({b"authorization": b"bearer k"})
            True
        """
        scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
        # compare_digest takes as long for a near miss as for a wild guess: the key cannot be timed out.
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.key)
