"""The server's limits and switches, set once from ``khabar serve``'s flags.

Example:
    >>> ServeSettings().host, ServeSettings().max_batch
    ('127.0.0.1', 16)
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.batch.checks import MAX_TEXT_CHARS


@dataclass(frozen=True)
class ServeSettings:
    """How the server batches, what it accepts and who may call it.

    Example:
        >>> ServeSettings(api_key="s3cret").requires_key
        True
    """

    host: str = "127.0.0.1"
    """Address to listen on; the loopback default keeps the server private to this machine."""
    port: int = 8000
    max_batch: int = 16
    """Texts gathered into one model call."""
    max_wait_ms: float = 10.0
    """How long the first text of a batch waits for others to join it."""
    max_texts: int = 64
    """Texts one request may carry."""
    max_text_chars: int = MAX_TEXT_CHARS
    """Characters in one text: ``khabar predict``'s limit."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Request body size; 64 texts of average news length fit many times over."""
    max_num_beams: int = 8
    max_new_tokens: int = 256
    timeout_s: float = 60.0
    """A request still waiting after this long answers 504 (its texts leave the queue)."""
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()

    @property
    def requires_key(self) -> bool:
        """Whether ``/v1/*`` needs ``Authorization: Bearer <key>``."""
        return bool(self.api_key)
