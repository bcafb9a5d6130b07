"""SIGTERM handled as Ctrl-C is: a service manager's or ``kill``'s stop request ends a command cleanly.

Python dies of SIGTERM at once, without running ``finally`` blocks or ``with`` exits: locks files
and progress stay as they were and the exit status is the signal's. As a ``KeyboardInterrupt``, the
commands' own Ctrl-C handling runs instead: what is done is kept, the command says how to go on and
exits 130.

Example:
    >>> import os, signal
    >>> with sigterm_as_interrupt():
    ...     try:
    ...         os.kill(os.getpid(), signal.SIGTERM)
    ...         signal.sigtimedwait([], 0)  # let the handler run
    ...     except KeyboardInterrupt:
    ...         print("stopped as Ctrl-C stops")
    stopped as Ctrl-C stops
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` in the main thread; the old handler comes back after.

    Handlers installed inside the block (the batch loop's, the server's) take over while they run.
    Off the main thread signals cannot be handled, and nothing changes.

    Example:
        >>> import signal
        >>> before = signal.getsignal(signal.SIGTERM)
        >>> with sigterm_as_interrupt():
        ...     signal.getsignal(signal.SIGTERM) is before
        False
        >>> signal.getsignal(signal.SIGTERM) is before
        True
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
