"""The REST server on a tiny trained model: endpoints, limits, bad input, API key, batching, metrics."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from mlbert.classifier import MultiLabelClassifier
from mlbert.server import MicroBatcher, ServeSettings, choose, create_app


@pytest.fixture(scope="module")
def clf(trained_dir):
    return MultiLabelClassifier.load(trained_dir)


@pytest.fixture(scope="module")
def client(clf):
    with TestClient(create_app(clf, ServeSettings(max_texts=8, max_chars=500, max_body_bytes=20_000))) as c:
        yield c


def test_predict_matches_the_python_api(client, clf):
    texts = ["I was charged twice for my subscription", "the app crashes when I log in"]
    r = client.post("/v1/predict", json={"texts": texts})
    assert r.status_code == 200
    got = [[x["label"] for x in p["labels"]] for p in r.json()["predictions"]]
    assert got == clf.predict(texts)
    probs = clf.predict_proba(texts)
    for row, p in zip(probs, r.json()["predictions"]):
        for x in p["labels"]:
            assert x["score"] == pytest.approx(float(row[clf.labels_.index(x["label"])]), abs=1e-5)


def test_threshold_and_top_k(client, clf):
    r = client.post("/v1/predict", json={"texts": ["refund please"], "threshold": 0.0, "top_k": 3})
    labels = r.json()["predictions"][0]["labels"]
    assert len(labels) == 3
    assert [x["score"] for x in labels] == sorted((x["score"] for x in labels), reverse=True)
    r = client.post("/v1/predict", json={"texts": ["refund please"], "threshold": 1.0})
    assert r.json()["predictions"][0]["labels"] == [] or all(
        x["score"] >= 1.0 for x in r.json()["predictions"][0]["labels"]
    )


def test_labels_health_ready_metrics(client, clf):
    body = client.get("/v1/labels").json()
    assert body["labels"] == clf.labels_ and len(body["thresholds"]) == len(clf.labels_)
    assert body["max_texts"] == 8
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    client.post("/v1/predict", json={"texts": ["hello"]})
    text = client.get("/metrics").text
    assert 'mlbert_requests_total{path="/v1/predict",status="200"}' in text
    assert "mlbert_batch_texts_bucket" in text and "mlbert_request_seconds_bucket" in text


@pytest.mark.parametrize(
    "body, status",
    [
        ({"texts": []}, 422),
        ({"texts": ["ok", "   "]}, 422),
        ({"texts": "one string"}, 422),
        ({"texts": [1, 2]}, 422),
        ({"texts": ["a"], "threshold": 1.5}, 422),
        ({"texts": ["a"], "threshold": -0.1}, 422),
        ({"texts": ["a"], "top_k": 0}, 422),
        ({"texts": ["a"], "surprise": 1}, 422),
        ({}, 422),
        ({"texts": ["a"] * 9}, 422),
        ({"texts": ["x" * 501]}, 422),
    ],
)
def test_bad_requests_are_4xx_with_a_message(client, body, status):
    r = client.post("/v1/predict", json=body)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["error"], str) and r.json()["error"]


@pytest.mark.parametrize(
    "raw, content_type",
    [
        (b"\xff\xfe not utf-8", "application/json"),
        (b'{"texts": ["a"', "application/json"),
        (b'{"texts": [NaN], "threshold": NaN}', "application/json"),
        (b"texts=a", "application/x-www-form-urlencoded"),
        (b'{"texts": ["\\ud800 lone surrogate"]}', "application/json"),
    ],
)
def test_malformed_bodies_are_4xx(client, raw, content_type):
    r = client.post("/v1/predict", content=raw, headers={"Content-Type": content_type})
    assert 400 <= r.status_code < 500, r.text


def test_huge_body_is_413_before_parsing(client):
    r = client.post(
        "/v1/predict", content=b'{"texts": ["' + b"a" * 30_000 + b'"]}', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413 and "bytes" in r.json()["error"]


def test_api_key_is_required_when_set(clf):
    with TestClient(create_app(clf, ServeSettings(api_key="s3cret"))) as c:
        assert c.post("/v1/predict", json={"texts": ["a"]}).status_code == 401
        assert c.post("/v1/predict", json={"texts": ["a"]}, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/v1/predict", json={"texts": ["a"]}, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200  # probes stay open


def test_no_cors_unless_asked(clf):
    with TestClient(create_app(clf)) as c:
        r = c.options("/v1/predict", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in r.headers
    with TestClient(create_app(clf, ServeSettings(cors_origins=("http://ok.example",)))) as c:
        r = c.options("/v1/predict", headers={"Origin": "http://ok.example", "Access-Control-Request-Method": "POST"})
        assert r.headers.get("access-control-allow-origin") == "http://ok.example"


def test_concurrent_requests_share_a_batch(clf):
    """Many clients at once: fewer model batches than requests, and each gets its own rows back."""
    settings = ServeSettings(max_batch=64, max_wait_ms=50)
    texts = [f"charged twice on invoice {i}" if i % 2 else f"app crashes at step {i}" for i in range(24)]
    expected = clf.predict_proba(texts)
    with TestClient(create_app(clf, settings)) as c:
        results = [None] * len(texts)

        def call(i):
            results[i] = c.post("/v1/predict", json={"texts": [texts[i]], "threshold": 0.0}).json()

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        metrics = c.get("/metrics").text
    batches = [line for line in metrics.splitlines() if line.startswith("mlbert_batch_texts_count")]
    n_batches = float(batches[0].split()[-1]) - 1  # minus the warm-up batch
    assert n_batches < len(texts) / 2
    for i, r in enumerate(results):
        scores = {x["label"]: x["score"] for x in r["predictions"][0]["labels"]}
        assert scores == pytest.approx({name: float(p) for name, p in zip(clf.labels_, expected[i])}, abs=1e-5)


def test_micro_batcher_gathers_and_splits():
    calls = []

    def score(texts):
        calls.append(len(texts))
        time.sleep(0.01)
        return np.array([[len(t)] for t in texts], dtype=np.float32)

    async def scenario(enabled):
        batcher = MicroBatcher(score, max_batch=10, max_wait_ms=30, enabled=enabled)
        await batcher.start()
        outs = await asyncio.gather(*(batcher.submit(["x" * (i + 1)] * 2) for i in range(8)))
        await batcher.stop()
        return outs

    outs = asyncio.run(scenario(True))
    assert [o[:, 0].tolist() for o in outs] == [[i + 1, i + 1] for i in range(8)]
    assert max(calls) <= 10 and len(calls) < 8
    calls.clear()
    asyncio.run(scenario(False))
    assert calls == [2] * 8


def test_model_errors_fail_the_request_not_the_batcher():
    def score(texts):
        if "boom" in texts:
            raise RuntimeError("boom")
        return np.zeros((len(texts), 1))

    async def scenario():
        batcher = MicroBatcher(score, max_batch=1, max_wait_ms=0, enabled=True)
        await batcher.start()
        with pytest.raises(RuntimeError):
            await batcher.submit(["boom"])
        ok = await batcher.submit(["fine"])
        await batcher.stop()
        return ok

    assert asyncio.run(scenario()).shape == (1, 1)


def test_choose_orders_and_caps():
    row = np.array([0.2, 0.9, 0.6])
    assert [x["label"] for x in choose(row, np.full(3, 0.5), ["a", "b", "c"], None)] == ["b", "c"]
    assert [x["label"] for x in choose(row, np.zeros(3), ["a", "b", "c"], 1)] == ["b"]


def test_settings_are_validated():
    from mlbert.errors import ConfigError

    with pytest.raises(ConfigError):
        ServeSettings(max_batch=0)
    with pytest.raises(ConfigError):
        ServeSettings(max_wait_ms=-1)


def test_the_blank_text_rule_is_the_python_api_rule_in_every_regex_engine():
    # The request schema's pattern is checked by pydantic's Rust engine on the server and read as ECMA-262 by
    # clients and schema fuzzers; Python's `re` stands in for the ECMA reading here. All must say what
    # check_texts says: a text is blank when str.isspace holds for all of it.
    import re

    from pydantic import TypeAdapter, ValidationError

    from mlbert.server.schema import NOT_BLANK, request_model

    docs = TypeAdapter(request_model(max_texts=1, max_chars=10))
    for code in [*range(0x3100), 0xFEFF, 0x10FFFF]:
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        blank = char.isspace()
        assert (re.search(NOT_BLANK, char) is None) == blank, hex(code)
        try:
            docs.validate_python({"texts": [char]})
            accepted = True
        except ValidationError:
            accepted = False
        assert accepted != blank, hex(code)


# -- hostile requests (issue 22): the documented error shape, the key before the body, strict types ------
@pytest.mark.parametrize(
    "method, path, raw",
    [
        ("GET", "/no-such-path", None),
        ("DELETE", "/v1/predict", None),
        ("POST", "/v1/predict", b'{"texts": ["caf\xe9"]}'),  # not UTF-8
        ("POST", "/v1/predict", b"[" * 100_000 + b"]" * 100_000),  # nested past any parser's depth
    ],
)
def test_every_error_answers_with_an_error_field(client, method, path, raw):
    r = client.request(method, path, content=raw, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500 and set(r.json()) == {"error"}, (r.status_code, r.text[:200])


def test_without_the_key_a_bad_body_is_401_not_422(clf):
    with TestClient(create_app(clf, ServeSettings(api_key="s3cret"))) as c:
        assert c.post("/v1/predict", json={"texts": []}).status_code == 401
        assert (
            c.post("/v1/predict", content=b"not json", headers={"Content-Type": "application/json"}).status_code == 401
        )
        assert c.post("/v1/predict", json={"texts": []}, headers={"X-API-Key": "s3cret"}).status_code == 422


@pytest.mark.parametrize("body", [{"threshold": "0.5"}, {"threshold": True}, {"top_k": "2"}, {"top_k": True}])
def test_wrong_types_are_422_not_coerced(client, body):
    assert client.post("/v1/predict", json={"texts": ["a"], **body}).status_code == 422


def test_whole_numbers_written_as_floats_are_whole_numbers(client):
    # JSON Schema's integer includes 2.0; schema-driven clients send it.
    assert client.post("/v1/predict", json={"texts": ["a"], "top_k": 2.0, "threshold": 0}).status_code == 200


def test_a_client_that_leaves_mid_body_is_not_counted_as_a_server_error(clf):
    app = create_app(clf)

    async def go():
        messages = iter(
            [{"type": "http.request", "body": b'{"texts": [', "more_body": True}, {"type": "http.disconnect"}]
        )
        sent = []

        async def receive():
            return next(messages)

        async def send(message):
            sent.append(message)

        headers = [(b"content-type", b"application/json")]
        scope = {"type": "http", "method": "POST", "path": "/v1/predict", "headers": headers, "query_string": b""}
        await app(scope, receive, send)
        return sent

    assert asyncio.run(go()) == []  # nothing could be answered
    rendered = app.state.metrics.render().decode()
    assert 'status="499"' in rendered and 'status="500"' not in rendered


# -- shapes people send (issue 21) -------------------------------------------------------------------------
def test_one_text_may_be_sent_as_text(client):
    one = client.post("/v1/predict", json={"text": "I was charged twice", "threshold": 0})
    many = client.post("/v1/predict", json={"texts": ["I was charged twice"], "threshold": 0})
    assert one.status_code == 200 and one.json() == many.json() and len(one.json()["predictions"]) == 1


@pytest.mark.parametrize("body", [{}, {"text": "a", "texts": ["b"]}, {"threshold": 0.5}])
def test_exactly_one_of_text_and_texts(client, body):
    r = client.post("/v1/predict", json=body)
    assert r.status_code == 422 and '"texts"' in r.json()["error"] and '"text"' in r.json()["error"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_not_sent_as_json_is_told_so(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post("/v1/predict", content=b'{"texts": ["a"]}', headers=headers)
    assert r.status_code == 415 and "Content-Type: application/json" in r.json()["error"]
    ok = client.post(
        "/v1/predict", content=b'{"texts": ["a"]}', headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert ok.status_code == 200


def test_explain_gives_words_per_label_within_its_limits(clf):
    settings = ServeSettings(max_explain_texts=2, max_explain_labels=1)
    with TestClient(create_app(clf, settings)) as c:
        texts = ["i was charged twice for my subscription", "the app crashes, refund please"]
        r = c.post("/v1/predict", json={"texts": texts, "explain": True, "threshold": 0.0, "top_k": 2})
        assert r.status_code == 200
        for text, prediction in zip(texts, r.json()["predictions"]):
            first, second = prediction["labels"]
            assert "words" not in second  # max_explain_labels=1: the best label only
            assert first["words"] == [
                w.to_dict() for w in clf.explain([text], labels=[first["label"]])[0][first["label"]]
            ]
            assert all(text[w["start"] : w["end"]] == w["text"] for w in first["words"])
        plain = c.post("/v1/predict", json={"texts": texts}).json()
        assert all("words" not in x for p in plain["predictions"] for x in p["labels"])
        r = c.post("/v1/predict", json={"texts": ["a", "b", "c"], "explain": True})
        assert r.status_code == 422 and "explain takes at most 2 texts" in r.json()["error"]
        assert c.post("/v1/predict", json={"texts": ["a", "b", "c"], "explain": False}).status_code == 200
        assert c.post("/v1/predict", json={"text": "a", "explain": "yes"}).status_code == 422
        assert c.get("/v1/labels").json()["max_explain_texts"] == 2
