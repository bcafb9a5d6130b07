"""The FastAPI application: the JSON API under ``/v1``, health checks, and the page at ``/``.

Models are loaded by the caller (``khabar serve`` loads them once at start-up); ``create_app``
only wires them to routes. On start-up a worker thread starts per model (see
:mod:`inference.serve.batcher`), so topics never wait behind summaries, and warms the models
up; ``/readyz`` answers 200 once that is done. ``/healthz`` and ``/`` stay open when an API key
is set: they reveal nothing about the models or the texts. A request whose client hangs up
before the answer is cancelled: its texts not started yet leave the queue.

Example:
    >>> from fastapi.testclient import TestClient
    >>> with TestClient(create_app(ServedModels())) as client:
    ...     client.get("/healthz").json(), client.post("/v1/classify", json={"text": "خبر"}).status_code
    ({'status': 'ok', 'in_flight': 0}, 404)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from inference.serve.auth import ApiKey
from inference.serve.batcher import MicroBatcher
from inference.serve.limits import BodyLimit
from inference.serve.models import TOPIC, WARMUP_TEXT, ServedModels, summary_key, task_of
from inference.serve.schemas import (
    AnalyzeRequest,
    Article,
    ClassifyRequest,
    RequestError,
    Results,
    SummarizeRequest,
    articles,
    check_limits,
)
from inference.serve.settings import ServeSettings

_NEEDS = {"topic": "classifier", "summary": "summarizer"}


def create_app(models: ServedModels, settings: ServeSettings | None = None) -> FastAPI:
    """The server for ``models`` (already loaded) under ``settings``.

    Example:
        >>> create_app(ServedModels(), ServeSettings(api_key="k")).title
        'khabar'
    """
    settings = settings or ServeSettings()
    models.max_batch = settings.max_batch
    state: dict[str, Any] = {"ready": False, "in_flight": 0}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One batcher (one worker thread) per task: a one-article topic request does not wait behind a
        # call of 64 summaries with 8 beams, and each model is still run by one thread only.
        batchers = state["batchers"] = {
            task: MicroBatcher(models.run_batch, settings.max_batch, settings.max_wait_ms) for task in models.tasks()
        }

        async def warm_up() -> None:
            # Through the batchers, so only their worker threads ever run the models.
            try:
                for key in models.warm_up_keys():
                    await batchers[task_of(key)].run(key, [WARMUP_TEXT])
            except Exception as exc:  # noqa: BLE001 - /readyz says so; the process stays up for /healthz
                state["failure"] = f"warm-up failed: {type(exc).__name__}: {exc}"
                logging.getLogger("uvicorn.error").error("khabar serve: %s", state["failure"])
                return
            state["ready"] = True

        warming = asyncio.create_task(warm_up())
        try:
            yield
        finally:
            await warming
            # uvicorn calls this after in-flight requests finished (or got their 504): what is left is a
            # model call nobody waits for, which cannot be stopped; its thread is a daemon, so the
            # process ends without it after a short wait, within --timeout + 5 s of the signal as documented.
            for batcher in batchers.values():
                await asyncio.get_running_loop().run_in_executor(None, batcher.close, SHUTDOWN_WAIT_S)

    app = FastAPI(
        title="khabar",
        summary="Topics and summaries of Persian news articles",
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, max_texts=settings.max_texts)
    if settings.requires_key:  # outside the body limit: a request without the key is refused unread
        app.add_middleware(ApiKey, key=settings.api_key)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    _add_error_handlers(app)
    _add_open_routes(app, state)
    app.include_router(_api(models, settings, state))
    return app


def _add_open_routes(app: FastAPI, state: dict) -> None:
    page = resources.files("inference.serve").joinpath("page.html").read_text(encoding="utf-8")

    # HEAD too: uptime checkers and load balancers often probe with it (405 read as "down").
    @app.head("/", response_class=HTMLResponse, include_in_schema=False)
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home() -> HTMLResponse:
        return HTMLResponse(page)

    @app.head("/healthz", include_in_schema=False)
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict:
        """The process is up and answering; ``in_flight``: API requests being worked on now."""
        return {"status": "ok", "in_flight": state["in_flight"]}

    @app.head("/readyz", include_in_schema=False)
    @app.get("/readyz", tags=["health"], responses={503: {"description": "still loading or warming up"}})
    async def readyz() -> JSONResponse:
        """The models are loaded and have answered a warm-up call."""
        if state["ready"]:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": state.get("failure", "warming up")}, status_code=503)


def _api(models: ServedModels, settings: ServeSettings, state: dict) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["v1"])
    within = _defaults_within_limits(models, settings)

    async def answer(tasks: tuple[str, ...], request: Any, http: Request, top_k: int = 1) -> Results:
        for task in tasks:
            if task not in models.tasks():
                kind = _NEEDS[task]
                raise RequestError(404, f"no {kind} is loaded: start khabar serve with --{kind} DIR")
        check_limits(request, settings.max_num_beams, settings.max_new_tokens)
        items = articles(request, settings.max_texts, settings.max_text_chars)
        if "batchers" not in state:  # mounted in another app whose lifespan does not start this one's
            raise RequestError(503, "not started: the app's lifespan has not run (a parent app must run it)")
        runs = [_run(state["batchers"][task], task, items, request, within) for task in tasks]
        state["in_flight"] += 1
        try:
            outcomes = await _answered_in_time(http, asyncio.gather(*runs), settings.timeout_s)
        finally:
            state["in_flight"] -= 1
        return Results(results=[_result(per_task, top_k) for per_task in zip(*outcomes, strict=True)])

    @router.post("/classify", response_model=Results, response_model_exclude_none=True)
    async def classify(request: ClassifyRequest, http: Request) -> Results:
        """The topic of each article (``top_k`` topics with their probabilities), in input order."""
        return await answer(("topic",), request, http, request.top_k)

    @router.post("/summarize", response_model=Results, response_model_exclude_none=True)
    async def summarize(request: SummarizeRequest, http: Request) -> Results:
        """A short summary of each article, in input order."""
        return await answer(("summary",), request, http)

    @router.post("/analyze", response_model=Results, response_model_exclude_none=True)
    async def analyze(request: AnalyzeRequest, http: Request) -> Results:
        """Topic and summary of each article; an article that fails either task reports only the error."""
        return await answer(("topic", "summary"), request, http, request.top_k)

    @router.get("/models")
    async def describe() -> dict:
        """The loaded models: labels, paths, normalization, decoding defaults, backend and the server's limits."""
        limits = {
            name: getattr(settings, name)
            for name in ("max_batch", "max_wait_ms", "max_texts", "max_text_chars", "max_body_bytes")
        }
        limits |= {"max_num_beams": settings.max_num_beams, "max_new_tokens": settings.max_new_tokens}
        return {**models.describe(), "limits": limits, "ready": state["ready"]}

    return router


# How long shutdown waits for a model call still running after the last request ended.
SHUTDOWN_WAIT_S = 5.0
# What a request answers when its client hung up before the answer (nginx's code; nobody reads it).
CLIENT_GONE = 499


async def _answered_in_time(http: Request, work: Awaitable[Any], timeout_s: float) -> Any:
    """Await ``work`` for at most ``timeout_s`` (else a 504), unless the client hangs up first (a 499).

    Without watching for the hang-up a client that gave up (a closed tab, a proxy's timeout) kept
    its texts queued and the model ran them for nobody, up to ``--timeout``, while the clients
    behind them waited. Either way out cancels ``work``: its texts not started yet leave the
    queue, and those of a gathered call are dropped before its next model batch; a model batch
    already running finishes.
    """
    answer, gone = asyncio.ensure_future(work), asyncio.ensure_future(_hung_up(http))
    try:
        await asyncio.wait({answer, gone}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        answered, hung_up = answer.done(), gone.done()
        gone.cancel()
        if not answered:
            answer.cancel()
            # Awaited, not left: a cancelled gather nobody awaits is logged as an error never retrieved.
            with contextlib.suppress(asyncio.CancelledError):
                await answer
    if answered:
        return answer.result()
    if hung_up:
        logging.getLogger("uvicorn.error").info(
            "khabar serve: a client hung up before its answer; its texts not started yet were dropped"
        )
        raise RequestError(CLIENT_GONE, "the client closed the connection before the answer")
    raise RequestError(504, f"no answer within {timeout_s:g}s; send fewer or shorter articles, or retry later")


async def _hung_up(http: Request) -> None:
    """Return once the client has hung up. The body is read by now, so the server's next message
    for this request is ``http.disconnect``: at a hang-up, or after the response is sent."""
    try:
        if (await http.receive())["type"] == "http.disconnect":
            return
    except Exception:  # noqa: BLE001, S110 - a server that cannot say: --timeout bounds the request
        pass
    # Anything else (a middleware that replays the body on every call, without ever waiting) cannot
    # tell of a hang-up; asking again would spin and freeze the event loop. --timeout bounds the request.
    await asyncio.Event().wait()


def _defaults_within_limits(models: ServedModels, settings: ServeSettings) -> dict[str, int]:
    """The decoding a request that leaves a setting out gets, where the model's saved default is over
    the server's limit (``--max-num-beams``, ``--max-new-tokens``): the limit. Empty when within.

    The limits bound what one request may cost; a model saving 8 beams would otherwise pass them by
    every request that names no beams.
    """
    saved = models.summarizer.generation_config if models.summarizer is not None else None
    capped = {}
    for name, limit in (("num_beams", settings.max_num_beams), ("max_new_tokens", settings.max_new_tokens)):
        default = getattr(saved, name, None)
        if isinstance(default, int) and default > limit:
            capped[name] = limit
            logging.getLogger("uvicorn.error").warning(
                "khabar serve: the summarizer's default %s %d is over the limit of %d: a request without it gets %d",
                name,
                default,
                limit,
                limit,
            )
    return capped


async def _run(batcher: MicroBatcher, task: str, items: list[Article], request: Any, within: dict) -> list[Any]:
    if task == "topic":
        return await batcher.run(TOPIC, [item.classifier_text for item in items], return_exceptions=True)
    beams = request.num_beams if request.num_beams is not None else within.get("num_beams")
    tokens = request.max_new_tokens if request.max_new_tokens is not None else within.get("max_new_tokens")
    key = summary_key(beams, tokens)
    return await batcher.run(key, [item.text for item in items], return_exceptions=True)


def _result(per_task: tuple, top_k: int) -> dict:
    """One article's result from its outcome per task (topics first); an error replaces everything."""
    failed = next((outcome for outcome in per_task if isinstance(outcome, BaseException)), None)
    if failed is not None:
        return {"error": str(failed)}
    result: dict[str, Any] = {}
    for outcome in per_task:
        if isinstance(outcome, str):
            result["summary"] = outcome
        else:
            topics = outcome[:top_k]
            result |= {"topic": topics[0]["label"], "score": topics[0]["score"], "topics": topics}
    return result


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":
            return JSONResponse({"detail": f"body: not valid JSON ({first.get('msg', '')})"}, status_code=400)
        return JSONResponse({"detail": _one_line(first)}, status_code=422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        # Not expected: every known failure has its own status. Still one line, never a traceback.
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


def _one_line(error: dict) -> str:
    """``texts[2]: Input should be a valid string`` from a pydantic error."""
    where = ""
    for part in error.get("loc", ())[1:]:  # loc starts with "body"
        where += f"[{part}]" if isinstance(part, int) else f".{part}" if where else str(part)
    if error.get("type") == "extra_forbidden":
        return f"{where}: unknown field"
    message = error.get("msg", "invalid").removeprefix("Value error, ")
    return f"{where}: {message}" if where else f"body: {message}"
