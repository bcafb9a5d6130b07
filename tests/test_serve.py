"""``khabar serve``: the JSON API, its refusals, micro-batching, the API key and a graceful stop.

Skipped as a whole without the serve extra (``pip install 'khabar[serve]'``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from inference import Classifier, Summarizer  # noqa: E402
from inference.batch.checks import MAX_TEXT_CHARS  # noqa: E402
from inference.normalize import join_title  # noqa: E402
from inference.serve.app import create_app  # noqa: E402
from inference.serve.batcher import MicroBatcher  # noqa: E402
from inference.serve.models import ServedModels, summary_key  # noqa: E402
from inference.serve.settings import ServeSettings  # noqa: E402

ARTICLE = "تیم ملی فوتبال ایران دیشب در ورزشگاه آزادی برابر حریف خود به پیروزی رسید."
SHORT_SUMMARY = {"num_beams": 1, "max_new_tokens": 6}


@pytest.fixture(scope="module")
def models(fitted_classifier_dir, tiny_summarizer_dir) -> ServedModels:
    # float32: the served answers are compared with in-process ones batched differently, and in
    # bf16 (auto with AMX or AMD's AVX512-BF16) a padded batch moves close scores enough to swap them.
    return ServedModels(
        Classifier.from_pretrained(fitted_classifier_dir, device="cpu", dtype="float32"),
        Summarizer.from_pretrained(tiny_summarizer_dir, device="cpu", dtype="float32"),
    )


def serve(models: ServedModels, **settings) -> TestClient:
    """A started test client (lifespan run) whose models are warmed up."""
    client = TestClient(create_app(models, ServeSettings(**settings)))
    client.__enter__()
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the server never became ready"
        time.sleep(0.02)
    return client


@pytest.fixture(scope="module")
def client(models):
    client = serve(models, max_texts=8, max_body_bytes=300_000)
    yield client
    client.__exit__(None, None, None)


# --- endpoints ---------------------------------------------------------------------------------


def test_classify_answers_top_k_topics_in_input_order(client, models, sample_articles):
    texts = sample_articles[:3]
    response = client.post("/v1/classify", json={"texts": texts, "top_k": 3})
    assert response.status_code == 200
    results = response.json()["results"]
    expected = models.classifier.predict(texts, top_k=3)
    assert [r["topic"] for r in results] == [e[0]["label"] for e in expected]
    assert [[t["label"] for t in r["topics"]] for r in results] == [[t["label"] for t in e] for e in expected]
    assert results[0]["score"] == pytest.approx(expected[0][0]["score"], abs=1e-5)


def test_classify_reads_the_title_before_the_text_as_khabar_predict_does(client, models):
    response = client.post("/v1/classify", json={"text": "خبر کوتاه", "title": "بازار بورس تهران", "top_k": 100})
    scores = {t["label"]: t["score"] for t in response.json()["results"][0]["topics"]}
    expected = models.classifier.predict_proba(join_title("بازار بورس تهران", "خبر کوتاه"))
    assert scores == pytest.approx(expected, abs=1e-5)
    assert len(scores) == len(models.classifier.labels)  # top_k is capped at every label


def test_summarize_follows_the_requested_decoding(client, models):
    response = client.post("/v1/summarize", json={"texts": [ARTICLE, "خبر دوم"], **SHORT_SUMMARY})
    assert response.status_code == 200
    assert [r["summary"] for r in response.json()["results"]] == models.summarizer.summarize(
        [ARTICLE, "خبر دوم"], **SHORT_SUMMARY
    )


def test_analyze_gives_topic_and_summary_per_article(client, models):
    response = client.post("/v1/analyze", json={"texts": [ARTICLE], "titles": [None], **SHORT_SUMMARY})
    (result,) = response.json()["results"]
    assert result["topic"] == models.classifier.predict(ARTICLE)["label"]
    assert result["summary"] == models.summarizer.summarize(ARTICLE, **SHORT_SUMMARY)


def test_models_describes_labels_paths_decoding_and_limits(client, models):
    info = client.get("/v1/models").json()
    assert info["classifier"]["labels"] == models.classifier.labels
    assert info["classifier"]["path"] == models.classifier.name
    assert info["classifier"]["normalization"]["digits"] in ("persian", "latin", "keep")
    assert info["summarizer"]["decoding"]["num_beams"] == models.summarizer.generation_config.num_beams
    assert info["backend"] == "auto" and info["ready"] is True
    assert info["limits"]["max_texts"] == 8


def test_health_ready_page_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok", "in_flight": 0}
    assert client.get("/readyz").json() == {"status": "ready"}
    page = client.get("/")
    assert page.status_code == 200 and '<html lang="fa" dir="rtl">' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no external assets
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/classify", "/v1/summarize", "/v1/analyze", "/v1/models", "/healthz", "/readyz"} <= set(paths)


def test_a_model_that_fails_its_warm_up_is_never_ready(models):
    broken = ServedModels(classifier=models.classifier)
    broken.run_batch = lambda key, texts: 1 / 0
    with TestClient(create_app(broken)) as client:
        deadline = time.monotonic() + 10
        while "failed" not in client.get("/readyz").json()["status"] and time.monotonic() < deadline:
            time.sleep(0.02)
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["status"] == "warm-up failed: ZeroDivisionError: division by zero"
        assert client.get("/healthz").status_code == 200


# --- bad input: 4xx with a one-line detail naming the field and the item -----------------------

BAD_REQUESTS = [
    ("/v1/classify", {"texts": ["خبر", "   "]}, 422, "texts[1]: text is empty"),
    ("/v1/classify", {"text": ""}, 422, "text: text is empty"),
    ("/v1/classify", {"texts": ["خبر", 42]}, 422, "texts[1]: Input should be a valid string"),
    ("/v1/classify", {"texts": ["خبر", None]}, 422, "texts[1]: Input should be a valid string"),
    ("/v1/classify", {"texts": "خبر"}, 422, "texts: Input should be a valid list"),
    ("/v1/classify", {"texts": ["خبر"] * 9}, 413, "texts: 9 articles, over the server's limit of 8 per request"),
    ("/v1/classify", {"texts": []}, 422, "texts: empty list; give at least one article"),
    ("/v1/classify", {"text": "خبر", "color": "red"}, 422, "color: unknown field"),
    ("/v1/classify", {"text": "خبر", "top_k": "3"}, 422, "top_k: Input should be a valid integer"),
    ("/v1/classify", {"text": "خبر", "top_k": 0}, 422, "top_k: Input should be greater than or equal to 1"),
    ("/v1/classify", {"text": "خبر", "texts": ["خبر"]}, 422, "body: give either text (one article) or texts"),
    ("/v1/classify", {}, 422, "body: give either text (one article) or texts"),
    ("/v1/classify", {"texts": ["خبر"], "titles": ["a", "b"]}, 422, "body: titles has 2 items and texts 1"),
    ("/v1/classify", {"texts": ["خبر"], "titles": [5]}, 422, "titles[0]: Input should be a valid string"),
    ("/v1/classify", ["خبر"], 422, "body: Input should be a valid dictionary"),
    ("/v1/classify", {"text": "خبر", "model": "/etc"}, 422, "model: unknown field"),  # nothing reaches the disk
    ("/v1/summarize", {"text": "خبر", "title": "تیتر"}, 422, "title: unknown field"),
    ("/v1/summarize", {"text": "خبر", "num_beams": 9}, 422, "num_beams: 9 is over the server's limit of 8"),
    ("/v1/summarize", {"text": "خبر", "max_new_tokens": 10_000}, 422, "max_new_tokens: 10000 is over the server's"),
    ("/v1/analyze", {"texts": ["خبر", "x" * (MAX_TEXT_CHARS + 1)]}, 413, "texts[1]: text is 200,001 characters"),
    ("/v1/classify", {"texts": ["خبر", "\u200c\u200b\u064b"]}, 422, "texts[1]: text is empty after normalization"),
]


@pytest.mark.parametrize(("path", "body", "status", "detail"), BAD_REQUESTS)
def test_bad_input_is_refused_with_a_one_line_detail(client, path, body, status, detail):
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    message = response.json()["detail"]
    assert isinstance(message, str) and "\n" not in message
    assert message.startswith(detail)


@pytest.mark.parametrize(
    ("content", "content_type", "status", "detail"),
    [
        (b'{"text": "a", "text": "b"}', "application/json", 400, "body: the key 'text' appears twice"),
        (b'{"texts": ["a"], "texts": null}', "application/json", 400, "body: the key 'texts' appears twice"),
        (b'{"text": "\xff\xfe"}', "application/json", 400, "body: not UTF-8 text"),
        (b"[" * 100_000, "application/json", 400, "body: nested too deep"),
        (b'{"text": "a", "top_k": ' + b"9" * 5000 + b"}", "application/json", 400, "body: a number has too many"),
        (b'{"text": "a"}', "text/plain", 415, "body: send it as JSON, with the header Content-Type"),
        (b"text=a", "application/x-www-form-urlencoded", 415, "body: send it as JSON"),
    ],
)
def test_a_body_that_is_not_plain_json_is_refused_naming_the_problem(client, content, content_type, status, detail):
    response = client.post("/v1/classify", content=content, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith(detail)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"text": "خبر", "title": "\ud800"}, "title: field 'title' holds a lone surrogate"),
        ({"texts": ["خبر"], "titles": ["\ud800"]}, "titles[0]: field 'title' holds a lone surrogate"),
    ],
)
def test_a_bad_title_is_reported_under_its_own_field(client, body, detail):
    content = json.dumps(body).encode()  # escaped: a lone surrogate cannot be sent as UTF-8
    response = client.post("/v1/classify", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"].startswith(detail)


def test_malformed_json_and_oversized_bodies_are_refused(client):
    response = client.post("/v1/classify", content=b'{"text": ', headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["detail"].startswith("body: not valid JSON")
    response = client.post("/v1/classify", json={"text": "خبر " * 80_000})
    assert response.status_code == 413
    assert response.json()["detail"].endswith("over the server limit of 300000")
    # A chunked body (no Content-Length) is counted as it arrives.
    chunks = (b"x" * 100_000 for _ in range(4))
    response = client.post("/v1/classify", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert client.get("/healthz").status_code == 200  # nothing stuck


def test_a_compressed_body_is_refused_naming_its_encoding(client):
    import gzip

    body = gzip.compress(json.dumps({"text": ARTICLE}).encode())
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    response = client.post("/v1/classify", content=body, headers=headers)
    assert response.status_code == 415
    assert response.json()["detail"] == "body: Content-Encoding gzip is not accepted; send the JSON uncompressed"
    headers["content-encoding"] = "identity"
    assert client.post("/v1/classify", json={"text": ARTICLE}, headers=headers).status_code == 200


def test_an_item_the_model_rejects_fails_alone():
    class Picky:
        labels = ["a", "b"]
        name, device, max_length, long_text = "picky", "cpu", 8, "windows"

        def predict(self, texts, batch_size, top_k):
            if any("بد" in text for text in texts):
                raise ValueError("text at index 0: cannot read this")
            return [[{"label": "a", "score": 0.75}, {"label": "b", "score": 0.25}] for _ in texts]

    with TestClient(create_app(ServedModels(classifier=Picky()))) as picky:
        results = picky.post("/v1/classify", json={"texts": ["خوب", "بد", "خوب"]}).json()["results"]
    assert results == [
        {"topic": "a", "score": 0.75, "topics": [{"label": "a", "score": 0.75}]},
        {"error": "topic: cannot read this"},
        {"topic": "a", "score": 0.75, "topics": [{"label": "a", "score": 0.75}]},
    ]


def test_one_bad_text_in_a_big_call_is_found_in_halves_not_text_by_text():
    calls = []

    class Picky:
        labels = ["a"]

        def predict(self, texts, batch_size, top_k):
            calls.append(len(texts))
            if "بد" in texts:
                raise ValueError("text at index 0: cannot read this")
            return [[{"label": "a", "score": 1.0}] for _ in texts]

    texts = ["خوب"] * 63 + ["بد"]
    results = ServedModels(classifier=Picky()).run_batch(("topic",), texts)

    assert [isinstance(r, ValueError) for r in results] == [False] * 63 + [True]
    assert len(calls) <= 2 * 6 + 1  # log2(64) levels of two halves, not 64 single calls


def test_an_absent_model_answers_404_naming_the_flag(models):
    with TestClient(create_app(ServedModels(classifier=models.classifier))) as only_topics:
        assert only_topics.post("/v1/classify", json={"text": ARTICLE}).status_code == 200
        for path in ("/v1/summarize", "/v1/analyze"):
            response = only_topics.post(path, json={"text": ARTICLE})
            assert response.status_code == 404
            assert response.json()["detail"] == "no summarizer is loaded: start khabar serve with --summarizer DIR"
        assert only_topics.get("/v1/models").json()["summarizer"] is None


def test_a_request_over_the_timeout_answers_504_and_the_server_goes_on(models):
    slow = ServedModels(classifier=models.classifier)
    original, done = slow.run_batch, threading.Event()

    def run_batch(key, texts):
        if any("کند" in text for text in texts):
            time.sleep(1)
            done.set()
        return original(key, texts)

    slow.run_batch = run_batch
    client = serve(slow, timeout_s=0.5)
    response = client.post("/v1/classify", json={"text": "کند"})
    assert response.status_code == 504 and response.json()["detail"].startswith("no answer within 0.5s")
    assert done.wait(10)  # the slow batch ends, and the worker takes the next one
    assert client.post("/v1/classify", json={"text": ARTICLE}).status_code == 200
    client.__exit__(None, None, None)


# --- micro-batching ------------------------------------------------------------------------------


def test_50_concurrent_requests_get_the_in_process_results_in_order(models, sample_articles):
    texts = [sample_articles[i % len(sample_articles)] for i in range(50)]
    expected_topics = models.classifier.predict(texts, top_k=2)
    expected_summaries = models.summarizer.summarize(texts, **SHORT_SUMMARY)
    batcher_calls = []
    counting = ServedModels(models.classifier, models.summarizer)
    original = counting.run_batch
    counting.run_batch = lambda key, items: batcher_calls.append(len(items)) or original(key, items)
    results: dict[int, dict] = {}

    with TestClient(create_app(counting, ServeSettings(max_batch=16, max_wait_ms=50))) as client:

        def ask(i: int) -> None:
            body = {"text": texts[i], "top_k": 2, **SHORT_SUMMARY}
            results[i] = client.post("/v1/analyze", json=body).json()["results"][0]

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    for i in range(50):
        assert [t["label"] for t in results[i]["topics"]] == [t["label"] for t in expected_topics[i]], i
        assert results[i]["score"] == pytest.approx(expected_topics[i][0]["score"], abs=1e-4)
        assert results[i]["summary"] == expected_summaries[i], i
    assert max(batcher_calls) > 1  # requests really shared model calls


def test_the_batcher_fills_calls_up_to_max_gather_and_keeps_keys_apart():
    calls = []

    def run_batch(key, items):
        calls.append((key, list(items)))
        return [f"{key}:{item}" for item in items]

    batcher = MicroBatcher(run_batch, max_batch=2, max_wait_ms=200, max_gather=3)

    async def requests():
        return await asyncio.gather(batcher.run("a", [1, 2]), batcher.run("b", [3]), batcher.run("a", [4]))

    assert asyncio.run(requests()) == [["a:1", "a:2"], ["b:3"], ["a:4"]]
    batcher.close()
    assert calls == [("a", [1, 2]), ("b", [3]), ("a", [4])]  # 3 items filled the first call


def test_texts_already_queued_join_a_call_beyond_max_batch_up_to_max_gather():
    calls, busy, release = [], threading.Event(), threading.Event()

    def run_batch(key, items):
        calls.append(list(items))
        busy.set()
        release.wait(10)  # the first call holds the worker while the queue fills
        return items

    batcher = MicroBatcher(run_batch, max_batch=2, max_wait_ms=0, max_gather=4)
    first = batcher.submit("k", 0)
    assert busy.wait(10)
    queued = [batcher.submit("k", i) for i in range(1, 7)]
    release.set()

    assert [future.result(timeout=10) for future in [first, *queued]] == list(range(7))
    batcher.close()
    assert calls == [[0], [1, 2], [3, 4], [5, 6]]  # one gather of four, run a model batch at a time


def test_a_given_up_request_stops_between_model_batches_of_a_gathered_call():
    calls, busy, release = [], threading.Event(), threading.Event()

    def run_batch(key, items):
        calls.append(list(items))
        busy.set()
        release.wait(10)
        return [item.upper() for item in items]

    batcher = MicroBatcher(run_batch, max_batch=2, max_wait_ms=50, max_gather=8)

    async def scenario():
        kept = asyncio.ensure_future(batcher.run("k", ["ccc"]))
        given_up = asyncio.ensure_future(batcher.run("k", ["a", "bb", "dddd", "eeeee"]))
        await asyncio.get_running_loop().run_in_executor(None, busy.wait, 10)  # the first model batch runs
        given_up.cancel()  # a 504 or a hang-up
        await asyncio.sleep(0.05)
        release.set()
        return await kept

    assert asyncio.run(scenario()) == ["CCC"]
    batcher.close()
    # Sorted by length: ["a", "bb"] was running; of the rest only the request still waited for ran.
    assert calls == [["a", "bb"], ["ccc"]]


def _answer_then_come_back(batcher: MicroBatcher, idle_s: float, gap_s: float) -> None:
    """A call of 4 texts, then (after ``idle_s``) its 4 clients send again: one at once, three ``gap_s`` later."""
    assert [f.result(timeout=10) for f in [batcher.submit("k", i) for i in range(4)]] == list(range(4))
    time.sleep(idle_s)
    first = batcher.submit("k", 4)
    time.sleep(gap_s)
    rest = [batcher.submit("k", i) for i in range(5, 8)]
    assert [f.result(timeout=10) for f in [first, *rest]] == list(range(4, 8))
    batcher.close()


@pytest.fixture
def slow_calls(monkeypatch):
    """Calls of 0.1 s (after the first) that each give their clients a 1 s window to come back in."""
    monkeypatch.setattr("inference.serve.batcher.RETURN_WINDOW_SHARE", 10.0)
    calls = []

    def run_batch(key, items):
        calls.append(list(items))
        time.sleep(0.1)
        return items

    return calls, run_batch


def test_texts_a_call_answered_coming_back_slower_than_max_wait_share_one_call(slow_calls):
    calls, run_batch = slow_calls
    batcher = MicroBatcher(run_batch, max_batch=4, max_wait_ms=5)
    batcher.submit("k", -1).result(timeout=10)  # an idle start: a call of one text
    _answer_then_come_back(batcher, idle_s=0, gap_s=0.2)  # 40x max_wait, within the 1 s window
    assert [len(call) for call in calls][-1] == 4


def test_after_one_request_of_many_texts_the_next_request_does_not_wait_for_more(slow_calls):
    calls, run_batch = slow_calls
    batcher = MicroBatcher(run_batch, max_batch=8, max_wait_ms=5)
    assert asyncio.run(batcher.run("k", [0, 1, 2, 3])) == [0, 1, 2, 3]  # one request: one client
    first = batcher.submit("k", 4)
    time.sleep(0.3)  # within the 1 s window, which waits for requests, not texts
    second = batcher.submit("k", 5)
    assert [first.result(timeout=10), second.result(timeout=10)] == [4, 5]
    batcher.close()
    assert calls == [[0, 1, 2, 3], [4], [5]]


def test_each_model_call_is_logged_with_its_size_and_time(caplog):
    caplog.set_level(logging.DEBUG, logger="inference.serve.batcher")
    batcher = MicroBatcher(lambda key, items: items, max_batch=4, max_wait_ms=200)

    async def two_requests():
        return await asyncio.gather(batcher.run("k", [1, 2]), batcher.run("k", [3]))

    assert asyncio.run(two_requests()) == [[1, 2], [3]]
    batcher.close()
    assert re.search(r"model call: 3 text\(s\) from 2 request\(s\) in \d+\.\d\d s", caplog.text)


@pytest.mark.parametrize(
    "max_wait_ms, idle_s",
    [(5, 1.3), (0, 0)],
    ids=["an idle server does not wait for them", "max-wait 0 never waits"],
)
def test_the_window_for_returning_texts_ends_and_can_be_turned_off(slow_calls, max_wait_ms, idle_s):
    calls, run_batch = slow_calls
    batcher = MicroBatcher(run_batch, max_batch=4, max_wait_ms=max_wait_ms)
    _answer_then_come_back(batcher, idle_s=idle_s, gap_s=0.2)
    assert calls[-2:] == [[4], [5, 6, 7]]


def test_health_is_answered_while_the_model_is_busy(models):
    busy = ServedModels(classifier=models.classifier)
    started, release = threading.Event(), threading.Event()
    original = busy.run_batch

    def run_batch(key, texts):
        if any("کند" in text for text in texts):
            started.set()
            release.wait(10)
        return original(key, texts)

    busy.run_batch = run_batch
    with TestClient(create_app(busy)) as client:
        worker = threading.Thread(target=lambda: client.post("/v1/classify", json={"text": "کند"}))
        worker.start()
        assert started.wait(10)
        began = time.monotonic()
        assert client.get("/healthz").status_code == 200
        assert time.monotonic() - began < 2
        release.set()
        worker.join()


# --- API key and CORS ----------------------------------------------------------------------------


def test_api_key_guards_v1_only(models):
    with TestClient(create_app(ServedModels(classifier=models.classifier), ServeSettings(api_key="s3cret"))) as client:
        body = {"text": ARTICLE}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            response = client.post("/v1/classify", json=body, headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["detail"].startswith("missing or wrong API key")
            assert response.headers["www-authenticate"] == "Bearer"
        assert client.get("/v1/models").status_code == 401
        ok = client.post("/v1/classify", json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200


def test_without_the_key_nothing_about_the_body_is_answered(models):
    # The key is checked from the headers before the body is read: a client without it cannot
    # probe which bodies the API would accept, nor make the server read a large one.
    settings = ServeSettings(api_key="s3cret", max_body_bytes=1024)
    with TestClient(create_app(ServedModels(classifier=models.classifier), settings)) as client:
        bodies = [
            {"content": b'{"text": ', "headers": {"Content-Type": "application/json"}},
            {"content": b"text=x", "headers": {"Content-Type": "text/plain"}},
            {"content": b'{"text": "' + b"x" * 4096 + b'"}', "headers": {"Content-Type": "application/json"}},
            {"json": {"text": ARTICLE, "unknown": 1}},
        ]
        for body in bodies:
            assert client.post("/v1/classify", **body).status_code == 401, body
        keyed = {"Authorization": "Bearer s3cret", "Content-Type": "application/json"}
        assert client.post("/v1/classify", content=b'{"text": ', headers=keyed).status_code == 400


def test_the_key_guards_v1_behind_a_root_path_and_under_a_parent_app(models):
    # Behind a proxy (--root-path /api) or mounted in a newsroom's own app, the path the server sees
    # carries that prefix; the key must still be asked for.
    from fastapi import FastAPI

    app = create_app(ServedModels(classifier=models.classifier), ServeSettings(api_key="s3cret"))
    parent = FastAPI()
    parent.mount("/khabar", app)
    with TestClient(parent) as client:
        assert client.post("/khabar/v1/classify", json={"text": ARTICLE}).status_code == 401
        assert client.get("/khabar/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        # Starlette does not run a mounted app's lifespan: a clear 503, not an internal error.
        keyed = client.post("/khabar/v1/classify", json={"text": ARTICLE}, headers={"Authorization": "Bearer s3cret"})
        assert keyed.status_code == 503 and "lifespan has not run" in keyed.json()["detail"]
    with TestClient(app, root_path="/api") as client:
        assert client.post("/api/v1/classify", json={"text": ARTICLE}).status_code == 401
        keyed = client.post("/api/v1/classify", json={"text": ARTICLE}, headers={"Authorization": "Bearer s3cret"})
        assert keyed.status_code == 200 and client.get("/api/healthz").status_code == 200


def test_without_a_key_v1_is_open(client):
    assert client.post("/v1/classify", json={"text": ARTICLE}).status_code == 200


def test_cors_is_off_unless_an_origin_is_given(models, client):
    preflight = {"Origin": "https://cms.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/v1/classify", headers=preflight).headers
    settings = ServeSettings(cors_origins=("https://cms.example",))
    with TestClient(create_app(ServedModels(classifier=models.classifier), settings)) as open_to_cms:
        response = open_to_cms.options("/v1/classify", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://cms.example"


def test_khabar_serve_without_a_model_is_a_usage_error(capsys, monkeypatch):
    from inference.cli import main

    monkeypatch.delenv("KHABAR_CLASSIFIER", raising=False)
    monkeypatch.delenv("KHABAR_SUMMARIZER", raising=False)
    assert main(["serve"]) == 2
    assert capsys.readouterr().err.strip() == (
        "khabar serve: error: no model to serve: give --classifier DIR and/or --summarizer DIR"
    )
    from serve_process import free_port

    assert main(["serve", "--classifier", "no/such/dir", "--port", str(free_port())]) == 2
    assert "no such model directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-wait-ms", "inf"], "--max-wait-ms inf: must be 0 to 10,000"),  # killed the batch worker
        (["--max-wait-ms", "nan"], "--max-wait-ms nan: must be 0 to 10,000"),
        (["--timeout", "inf"], "--timeout inf: must be over 0 and at most 86,400 seconds"),
        (["--api-key", "   "], "--api-key: is empty"),
        (["--api-key", "کلید"], "--api-key: must be printable ASCII"),  # a header could never carry it
    ],
)
def test_serve_settings_a_server_could_not_honour_are_refused_at_start(capsys, tiny_classifier_dir, flags, message):
    from inference.cli import main

    assert main(["serve", "--classifier", str(tiny_classifier_dir), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_port_in_use_is_refused_before_the_models_load(capsys, tiny_classifier_dir, monkeypatch):
    import socket

    from inference.cli import main

    monkeypatch.setattr("inference.commands.load_model", lambda *args: pytest.fail("loaded a model first"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--classifier", str(tiny_classifier_dir), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in err and len(err.splitlines()) == 1
    assert main(["serve", "--classifier", str(tiny_classifier_dir), "--host", "no-such-host.invalid"]) == 2
    assert "--host no-such-host.invalid: cannot be resolved" in capsys.readouterr().err
    # Where the models would load: settings a server could not honour are reported first.
    assert main(["serve", "--classifier", str(tiny_classifier_dir), "--port", str(port), "--timeout", "0"]) == 2
    assert "--timeout 0" in capsys.readouterr().err


def test_every_interface_as_uvicorn_takes_it_passes_the_port_check():
    from serve_process import free_port

    from inference.serve.cli import _check_can_listen

    _check_can_listen("", free_port())  # --host "": all interfaces, not "cannot be resolved"
    _check_can_listen("localhost", free_port())


def test_the_api_key_flag_is_stripped_like_the_environment_variable(monkeypatch):
    from inference.serve.cli import _api_key

    monkeypatch.setenv("KHABAR_API_KEY", " k ")
    assert _api_key(" k ") == _api_key(None) == "k"


# --- a real server process: SIGTERM while busy ---------------------------------------------------


@pytest.mark.slow  # starts a real server process: 10-30 s on a busy 2-core machine
def test_sigterm_while_busy_finishes_in_flight_requests_and_exits_0(tiny_classifier_dir, tiny_summarizer_dir):
    import httpx
    from serve_process import ServerProcess

    # Long enough that three are in flight at once on a fast core (8 articles, 2 beams, 32 tokens took 0.15 s).
    heavy = {"texts": [ARTICLE * 4] * 32, "num_beams": 4, "max_new_tokens": 64}
    with ServerProcess(classifier=tiny_classifier_dir, summarizer=tiny_summarizer_dir) as server:
        answers: list[tuple[int, float]] = []

        def ask() -> None:
            response = httpx.post(f"{server.url}/v1/summarize", json=heavy, timeout=120)
            answers.append((response.status_code, time.monotonic()))

        clients = [threading.Thread(target=ask) for _ in range(3)]
        for client in clients:
            client.start()
        server.wait_for_requests(3)  # all three are being worked on
        stopped_at = time.monotonic()
        server.terminate()
        for client in clients:
            client.join(120)
        code = server.wait(60)
    assert code == 0, server.log()
    assert [status for status, _ in answers] == [200, 200, 200]
    assert max(at for _, at in answers) > stopped_at  # at least one was still in flight at SIGTERM


def test_ctrl_c_twice_stops_at_once_and_says_so_with_exit_130(tiny_classifier_dir, tiny_summarizer_dir):
    import httpx
    from serve_process import ServerProcess

    heavy = {"texts": [ARTICLE * 8] * 64, "num_beams": 8, "max_new_tokens": 256}  # seconds of work, at the limits
    with ServerProcess(classifier=tiny_classifier_dir, summarizer=tiny_summarizer_dir) as server:
        client = threading.Thread(target=lambda: httpx.post(f"{server.url}/v1/summarize", json=heavy, timeout=120))
        client.start()
        server.wait_for_requests(1)
        server.process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        server.process.send_signal(signal.SIGINT)
        code = server.wait(60)
        client.join(120)
        log = server.log()
    assert code == 130, log
    assert "stopped at once (Ctrl-C twice)" in log


def test_khabar_serve_loads_its_models_through_the_predict_loader(fitted_classifier_dir):
    """Every option the shared loader reads exists on `khabar serve` (a missing one crashed at start-up)."""
    import argparse

    from inference.commands import load_model
    from inference.serve.cli import add_serve_command

    parser = add_serve_command(argparse.ArgumentParser().add_subparsers())
    args = parser.parse_args(["--classifier", str(fitted_classifier_dir), "--device", "cpu", "--dtype", "float32"])

    model = load_model("classifier", args)

    assert isinstance(model, Classifier) and model.precision == "torch float32"


@pytest.mark.parametrize(("beams", "calls"), [(1, [16, 4]), (4, [8, 8, 4])])
def test_served_summaries_run_in_calls_the_beams_run_fastest_within_max_batch(tiny_summarizer_dir, beams, calls):
    from inference.serve.models import summary_key

    summarizer = Summarizer.from_pretrained(tiny_summarizer_dir, device="cpu", backend="torch")
    seen, generate = [], summarizer.generate
    summarizer.generate = lambda sources, generation: seen.append(len(sources)) or generate(sources, generation)
    served = ServedModels(summarizer=summarizer, max_batch=64)  # a deep queue joined into one call
    assert len(served.run_batch(summary_key(beams, 2), [ARTICLE] * 20)) == 20
    assert seen == calls


def test_a_topic_request_does_not_wait_behind_a_long_summary_call(models):
    release, started = threading.Event(), threading.Event()
    release.set()  # the warm-up goes through
    summarize = models.summarizer.summarize

    def slow_summaries(*args, **kwargs):
        if not release.is_set():
            started.set()
            release.wait(20)  # a call of 64 summaries with 8 beams, say
        return summarize(*args, **kwargs)

    models.summarizer.summarize = slow_summaries
    try:
        with TestClient(create_app(models, ServeSettings())) as client:
            while client.get("/readyz").status_code != 200:
                time.sleep(0.05)
            release.clear()
            summary = threading.Thread(target=client.post, args=("/v1/summarize",), kwargs={"json": {"text": ARTICLE}})
            summary.start()
            assert started.wait(10)
            answered = client.post("/v1/classify", json={"text": ARTICLE})
            busy = summary.is_alive()
            release.set()
            summary.join(10)
    finally:
        models.summarizer.summarize = summarize
    assert answered.status_code == 200 and busy  # answered while the summary call was still running


def test_a_client_that_hangs_up_has_its_queued_texts_dropped(models):
    # A closed tab or a proxy's timeout used to leave its texts queued, run for nobody up to --timeout.
    slow = ServedModels(classifier=models.classifier)
    original, seen, busy, release = slow.run_batch, [], threading.Event(), threading.Event()

    def run_batch(key, texts):
        seen.extend(texts)
        if any("کند" in text for text in texts):
            busy.set()
            release.wait(10)
        return original(key, texts)

    slow.run_batch = run_batch
    client = serve(slow, max_wait_ms=0)
    blocker = threading.Thread(target=client.post, args=("/v1/classify",), kwargs={"json": {"text": "کند"}})
    blocker.start()
    assert busy.wait(10)
    sent: list[dict] = []

    async def hang_up_after_sending():
        body = json.dumps({"text": "رفته"}).encode()
        messages = iter([{"type": "http.request", "body": body, "more_body": False}])

        async def receive():
            message = next(messages, None)
            if message is None:
                await asyncio.sleep(0.2)  # the client waits a moment, then closes the connection
                return {"type": "http.disconnect"}
            return message

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/classify",
            "raw_path": b"/v1/classify",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        await client.app(scope, receive, send)

    asyncio.run(asyncio.wait_for(hang_up_after_sending(), 5))  # returns while the model is still busy
    release.set()
    blocker.join(10)
    assert client.post("/v1/classify", json={"text": ARTICLE}).status_code == 200
    client.__exit__(None, None, None)
    assert sent[0]["status"] == 499
    assert not [text for text in seen if "رفته" in text]  # never run


def test_behind_a_middleware_that_replays_the_body_requests_are_still_answered(models):
    # Such a middleware answers every receive() at once with the body again: watching it for a
    # hang-up spun forever and froze the server (health checks included).
    class ReplayBody:
        def __init__(self, app) -> None:
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.app(scope, receive, send)
            body, more = b"", True
            while more:
                message = await receive()
                body, more = body + message.get("body", b""), message.get("more_body", False)

            async def again():
                return {"type": "http.request", "body": body, "more_body": False}

            return await self.app(scope, again, send)

    app = create_app(ServedModels(classifier=models.classifier), ServeSettings())
    answers: list[int] = []
    with TestClient(ReplayBody(app)) as client:
        while client.get("/readyz").status_code != 200:
            time.sleep(0.02)
        asking = threading.Thread(
            target=lambda: answers.append(client.post("/v1/classify", json={"text": ARTICLE}).status_code), daemon=True
        )
        asking.start()
        asking.join(30)
    assert answers == [200]


def test_a_huge_list_or_many_fields_are_refused_before_item_by_item_validation(models) -> None:
    # 1,000,000 numbers (2 MB) took pydantic 8 s to reject one by one, on the event loop: every client waited.
    client = serve(ServedModels(classifier=models.classifier), max_texts=8)
    response = client.post("/v1/classify", json={"texts": [0] * 200_000})
    assert response.status_code == 413 and response.json()["detail"].startswith("texts: 200000 articles, over")
    response = client.post("/v1/classify", json={f"field{i}": 0 for i in range(5_000)})
    assert response.status_code == 422 and "5000 fields" in response.json()["detail"]
    assert client.post("/v1/classify", json={"texts": [ARTICLE] * 8}).status_code == 200
    client.__exit__(None, None, None)


def test_a_models_saved_decoding_over_the_servers_limits_is_capped(models) -> None:
    # --max-num-beams / --max-new-tokens bound what a request costs; the tiny summarizer saves 4 beams, 64 tokens.
    served = ServedModels(summarizer=models.summarizer)
    keys, original = [], served.run_batch
    served.run_batch = lambda key, texts: keys.append(key) or original(key, texts)
    client = serve(served, max_num_beams=1, max_new_tokens=8)
    assert client.post("/v1/summarize", json={"text": ARTICLE}).status_code == 200
    assert client.post("/v1/summarize", json={"text": ARTICLE, "num_beams": 1, "max_new_tokens": 4}).status_code == 200
    client.__exit__(None, None, None)
    assert keys[-2:] == [summary_key(1, 8), summary_key(1, 4)]


@pytest.mark.parametrize(
    "flags, environment, message",
    [
        (["--summarizer", "SUMMARIZER", "--classifier", ""], {}, "--classifier: is empty"),
        (["--classifier", "CLASSIFIER"], {"KHABAR_API_KEY": "  "}, "$KHABAR_API_KEY: is set but empty"),
    ],
)
def test_a_blank_model_or_key_is_refused_not_left_out(
    capsys, monkeypatch, tiny_classifier_dir, tiny_summarizer_dir, flags, environment, message
) -> None:
    # An unset $VAR in a service file served without the classifier, or without a key, silently.
    from inference.cli import main

    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    paths = {"CLASSIFIER": str(tiny_classifier_dir), "SUMMARIZER": str(tiny_summarizer_dir)}
    assert main(["serve", *[paths.get(flag, flag) for flag in flags]]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_port_taken_after_the_check_is_one_line_and_exit_1(capsys, tiny_classifier_dir, monkeypatch) -> None:
    import uvicorn

    from inference.cli import main

    class LostThePort:  # uvicorn.Server when the bind fails: it exits 3, having logged why
        started = False

        def __init__(self, config) -> None:
            pass

        def run(self) -> None:
            raise SystemExit(3)

    monkeypatch.setattr(uvicorn, "Server", LostThePort)
    monkeypatch.setattr(uvicorn, "Config", lambda *args, **kwargs: None)  # its logging setup would outlive the test
    monkeypatch.setattr("signal.signal", lambda *args: None)  # serve's handlers would outlive it too
    assert main(["serve", "--classifier", str(tiny_classifier_dir), "--device", "cpu"]) == 1
    assert "khabar serve: error: the server did not start" in capsys.readouterr().err


def test_a_title_over_the_text_limit_is_refused_and_models_name_their_engine(models) -> None:
    # A 300,000-character title was accepted, taking the classifier's text past the limit.
    client = serve(ServedModels(classifier=models.classifier))
    response = client.post("/v1/classify", json={"text": ARTICLE, "title": "خ" * 200_001})
    assert response.status_code == 413 and response.json()["detail"].startswith("title: title is 200,001 characters")
    described = client.get("/v1/models").json()
    client.__exit__(None, None, None)
    assert described["classifier"]["engine"] == models.classifier.precision != ""


def test_health_checks_and_the_page_answer_head_as_uptime_checkers_probe(client) -> None:
    for path in ("/healthz", "/readyz", "/"):
        response = client.head(path)
        assert response.status_code == 200 and response.content == b"", path
