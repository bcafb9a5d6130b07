"""``khabar serve``: load the models once, then answer HTTP until SIGTERM or Ctrl-C.

    khabar serve --classifier models/classifier --summarizer models/summarizer
    khabar serve --classifier DIR --port 8080 --api-key "$(cat key.txt)" --backend fast --quantize int8

Flags only: importing this module needs neither FastAPI nor uvicorn, so ``khabar --help`` works
without the ``serve`` extra; ``khabar serve`` then says how to install it.

Example:
    >>> import argparse
    >>> commands = argparse.ArgumentParser().add_subparsers()
    >>> add_serve_command(commands).parse_args(["--classifier", "m"]).port
    8000
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading

from inference.batch.formats import UsageError

API_KEY_ENV = "KHABAR_API_KEY"
EPILOG = f"""\
endpoints:
  POST /v1/classify  /v1/summarize  /v1/analyze   JSON in, JSON out (see /docs)
  GET  /v1/models    /healthz  /readyz  /          the page: paste an article, see topic and summary

safety:
  Listens on 127.0.0.1 (this machine only) unless --host says otherwise. With --api-key or
  ${API_KEY_ENV}, /v1/* needs the header Authorization: Bearer KEY; /, /healthz and /readyz stay
  open (they show no model output). No endpoint reads a path. CORS is off unless --cors-origin.

A model given neither by its flag nor by $KHABAR_CLASSIFIER / $KHABAR_SUMMARIZER is not served;
its endpoints answer 404. SIGTERM or Ctrl-C: stop accepting, finish in-flight requests, exit 0.
"""


def add_serve_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``serve`` to the ``khabar`` subcommands and return its parser.

    Example:
        >>> import argparse
        >>> parser = add_serve_command(argparse.ArgumentParser().add_subparsers())
        >>> parser.parse_args(["--summarizer", "m", "--max-batch", "8"]).max_batch
        8
    """
    from inference.cli import _positive, add_device_flags, decoding_flag
    from inference.commands import BACKENDS

    serve = commands.add_parser(
        "serve",
        help="answer over HTTP: a JSON API and a Persian web page",
        description="Serve the classifier and/or summarizer over HTTP (needs: pip install 'khabar[serve]').",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for kind in ("classifier", "summarizer"):
        env = f"KHABAR_{kind.upper()}"
        serve.add_argument(f"--{kind}", metavar="DIR_OR_ID", help=f"the {kind} to serve (default: ${env})")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    add_device_flags(serve)  # the same --device, --dtype and --quantize as predict: one model loader reads them
    serve.add_argument(
        "--backend",
        default="auto",
        choices=[b for b in BACKENDS["classifier"] if b in BACKENDS["summarizer"]],
        help="auto (default: the fastest installed here), torch, or fast (ONNX Runtime topics, CTranslate2 "
        "summaries; pip install khabar[fast])",
    )
    serve.add_argument(
        "--max-batch",
        type=_positive,
        default=16,
        help="texts per model batch; a call waits --max-wait-ms for this many (16; beam search runs fewer a call)",
    )
    serve.add_argument(
        "--max-wait-ms",
        type=float,
        default=10.0,
        help="how long a batch waits to fill, ms (10); right after a call, up to a tenth of its time for the "
        "requests it answered; 0: never wait",
    )
    serve.add_argument("--max-texts", type=_positive, default=64, help="articles per request (64)")
    serve.add_argument("--max-body-bytes", type=_positive, default=4 * 1024 * 1024, help="request body size (4 MiB)")
    beams, tokens = decoding_flag("num_beams"), decoding_flag("max_new_tokens")
    serve.add_argument("--max-num-beams", type=beams, default=8, help="largest num_beams a request may ask (8)")
    serve.add_argument("--max-new-tokens", type=tokens, default=256, help="largest max_new_tokens (256)")
    serve.add_argument("--timeout", type=float, default=60.0, help="seconds before a request answers 504 (60)")
    serve.add_argument("--api-key", help=f"require Authorization: Bearer KEY on /v1/* (default: ${API_KEY_ENV})")
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser calls from this origin (repeatable; default: none)",
    )
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(handler=serve_command)
    return serve


def serve_command(args: argparse.Namespace) -> int:
    """Load the models named by ``args`` and serve them until SIGTERM / Ctrl-C; 0 on a clean stop.

    Example:
        >>> import argparse
        >>> serve_command(argparse.Namespace(classifier=None, summarizer=None))
        Traceback (most recent call last):
        ...
        inference.batch.formats.UsageError: no model to serve: give --classifier DIR and/or --summarizer DIR
    """
    for kind in ("classifier", "summarizer"):  # "" (an unset $VAR) named no model: it would be left out silently
        if getattr(args, kind) is not None and not getattr(args, kind).strip():
            raise UsageError(f"--{kind}: is empty; give the model's directory or hub id, or leave the flag out")
    kinds = [kind for kind in ("classifier", "summarizer") if getattr(args, kind) or _from_env(kind)]
    if not kinds:
        raise UsageError("no model to serve: give --classifier DIR and/or --summarizer DIR")
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"needs {' and '.join(missing)}: pip install 'khabar[serve]'")
    settings = _settings(args)
    _check_can_listen(settings.host, settings.port)
    import uvicorn

    # The same loading, and the same one-line errors, as predict.
    from inference.commands import EXIT_INTERRUPTED, load_model
    from inference.serve.app import create_app
    from inference.serve.models import ServedModels

    if args.log_level == "debug":
        _log_model_calls()
    loaded = {kind: load_model(kind, args) for kind in kinds}
    app = create_app(ServedModels(**loaded, backend=args.backend), settings)
    # uvicorn stops gracefully on SIGTERM / SIGINT, then raises the signal again under the handler
    # it found: with these, that second delivery is a no-op and the command exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=args.log_level,
            timeout_graceful_shutdown=int(settings.timeout_s) + 5,  # in-flight requests end by then anyway
        )
    )
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits 3 when it cannot bind: the port was taken since the check
        if exc.code in (0, None):
            raise
    if not server.started:  # as uvicorn.run would: a service manager restarts a server that failed to start
        print("khabar serve: error: the server did not start (see the lines above)", file=sys.stderr)
        return 1
    if server.force_exit:  # a second Ctrl-C: uvicorn dropped whatever was in flight
        print("khabar serve: stopped at once (Ctrl-C twice): any request in flight got no answer", file=sys.stderr)
        _exit_if_a_model_call_runs(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    _exit_if_a_model_call_runs(0)
    return 0


def _exit_if_a_model_call_runs(code: int) -> None:
    """End the process at once when a model call nobody waits for is still running (shutdown waits a
    few seconds for it): letting Python finalize under a thread inside a native engine's code aborts
    the process (C++ terminate, SIGABRT) instead of exiting with ``code``."""
    from inference.serve.batcher import WORKER_NAME

    if any(thread.name == WORKER_NAME and thread.is_alive() for thread in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _log_model_calls() -> None:
    """Print each model call's size and time (``--log-level debug``), to tune ``--max-batch`` and ``--max-wait-ms``."""
    calls = logging.getLogger("inference.serve.batcher")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("khabar serve: %(message)s"))
    calls.addHandler(handler)
    calls.setLevel(logging.DEBUG)


MAX_WAIT_MS = 10_000
MAX_TIMEOUT_S = 86_400


def _from_env(kind: str) -> str:
    return os.environ.get(f"KHABAR_{kind.upper()}", "").strip()


def _settings(args: argparse.Namespace):
    from inference.serve.settings import ServeSettings

    # Bounded as well as positive: an infinite wait overflowed the batcher's clock and killed it.
    if not 0 < args.timeout <= MAX_TIMEOUT_S:
        raise UsageError(f"--timeout {args.timeout}: must be over 0 and at most {MAX_TIMEOUT_S:,} seconds")
    if not 0 <= args.max_wait_ms <= MAX_WAIT_MS:
        raise UsageError(f"--max-wait-ms {args.max_wait_ms}: must be 0 to {MAX_WAIT_MS:,}")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: must be 1-65535")
    api_key = _api_key(args.api_key)
    if not api_key and not _is_loopback(args.host):
        print(
            f"khabar serve: warning: listening on {args.host} without an API key: anyone who can reach it may use it",
            file=sys.stderr,
        )
    return ServeSettings(
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_texts=args.max_texts,
        max_body_bytes=args.max_body_bytes,
        max_num_beams=args.max_num_beams,
        max_new_tokens=args.max_new_tokens,
        timeout_s=args.timeout,
        api_key=api_key,
        cors_origins=tuple(args.cors_origin),
    )


def _check_can_listen(host: str, port: int) -> None:
    """Refuse a host that does not resolve or a port already taken before the models load (a minute, for nothing).

    SO_REUSEADDR as uvicorn sets it: a port left in TIME_WAIT by a server just stopped is free.
    """
    try:  # "" is every interface, as uvicorn takes it; it binds every address the host resolves to
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(f"--host {host}: cannot be resolved ({getattr(exc, 'strerror', None) or exc})") from None
    for family, kind, _, _, address in addresses:
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                advice = (
                    "ports below 1024 need root; pick another --port"
                    if exc.errno == errno.EACCES
                    else "another server may hold it: stop it or pick another --port"
                )
                raise UsageError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); {advice}") from None


def _api_key(flag: str | None) -> str | None:
    """The key from ``--api-key`` or the environment, stripped alike; one a client cannot send is refused."""
    named, key = ("--api-key", flag) if flag is not None else (f"${API_KEY_ENV}", os.environ.get(API_KEY_ENV, ""))
    if flag is None and API_KEY_ENV in os.environ and not key.strip():
        # Set but blank (an unset variable in a service file): the API would be open without a word.
        raise UsageError(f"${API_KEY_ENV}: is set but empty; give a key, or unset it to serve without one")
    key = key.strip()
    if flag is not None and not key:
        raise UsageError("--api-key: is empty; give a key or leave the flag out")
    # Headers travel as Latin-1 and browsers send ASCII only: any other key could never match.
    if key and not (key.isascii() and key.isprintable()):
        raise UsageError(f"{named}: must be printable ASCII characters (it is sent in an HTTP header)")
    return key or None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
