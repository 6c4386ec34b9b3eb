"""`nlpfit serve`: a trained model behind a JSON HTTP API (FastAPI on uvicorn), answering what
`nlpfit predict` prints; client mistakes get a 4xx and one line; dynamic batching; streaming."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from serve_models import tiny_model

from nlpfit import NlpfitError


def call(base: str, path: str, body=None, raw: bytes | None = None, headers: dict | None = None,
         method: str | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def raw_http(base: str, data: bytes, timeout: float = 30) -> bytes:
    """Send bytes on a fresh connection; everything the server answers until it closes (or `timeout`)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
                if b"\r\n\r\n" in out:
                    head, _, body = out.partition(b"\r\n\r\n")
                    length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")]
                    if length and len(body) >= length[0]:
                        break
        except socket.timeout:
            pass
        return out


@pytest.fixture(scope="module")
def ner_model(tiny_bert, tmp_path_factory):
    return tiny_model("ner", tmp_path_factory, tiny_bert)


@pytest.fixture(scope="module")
def server(ner_model):
    from nlpfit.serve import make_server

    with make_server(str(ner_model), "127.0.0.1", 0, quiet=True, max_wait_ms=0) as srv:  # each request alone
        yield srv.url


TEXTS = ["Alice moved to Paris last year .", "nothing special happened today", "Grace works for Mozilla in Oslo ."]


def test_predict_returns_the_rows_of_nlpfit_predict(server, ner_model, run_cli):
    status, body = call(server, "/health")
    assert (status, body) == (200, {"status": "ok", "task": "ner"})
    status, body = call(server, "/predict", {"inputs": TEXTS})
    assert status == 200
    res = run_cli("predict", ner_model, *TEXTS)
    assert body["predictions"] == [json.loads(line) for line in res.out.splitlines()]
    assert any(row["entities"] for row in body["predictions"])

    # per-request options override the defaults, checked as the command line checks them
    status, body = call(server, "/predict", {"inputs": TEXTS[0], "options": {"aggregation": "none"}})
    assert status == 200 and len(body["predictions"]) == 1
    assert all(e["entity_group"][:2] in ("B-", "I-") for e in body["predictions"][0]["entities"])
    res = run_cli("predict", ner_model, "--aggregation", "none", TEXTS[0])
    assert body["predictions"] == [json.loads(res.out)]

    status, body = call(server, "/info")
    assert status == 200 and body["task"] == "ner" and body["options"]["aggregation"] == "simple"
    assert "f1" in body["eval"] and body["auth"] is False and body["limits"]["max_request_inputs"] == 1024


QUESTION = {"question": "What is the code?",
            "context": "The loop ends when the value is bound. The code is red fox. A class body defines names."}
KIND_INPUTS = {"mlm": ["the [MASK] is executed when the loop ends .", "a <mask> body defines [MASK] attributes ."],
               "translation": ["the red cat is here .", "the small dog is here ."],
               "summarization": ["The statement is executed when the loop ends and the value of each name is bound."],
               "clm": ["def dumps(obj):"], "qa": [QUESTION]}


@pytest.mark.parametrize("kind", list(KIND_INPUTS))
def test_every_task_answers_the_rows_of_nlpfit_predict(kind, tiny_bert, tmp_path_factory, tmp_path, run_cli):
    from nlpfit.serve import make_server

    out = tiny_model(kind, tmp_path_factory, tiny_bert)
    inputs = KIND_INPUTS[kind]
    if kind == "qa":
        res = run_cli("predict", out, "--question", QUESTION["question"], "--context", QUESTION["context"])
    else:
        res = run_cli("predict", out, *inputs)
    assert res.code == 0, res.err
    with make_server(str(out), "127.0.0.1", 0, quiet=True) as srv:
        status, body = call(srv.url, "/predict", {"inputs": inputs})
        assert status == 200, body
        assert body["predictions"] == [json.loads(line) for line in res.out.splitlines()]
        schemas = srv.app.state.schemas
        for row in body["predictions"]:  # the rows are what /openapi.json says they are
            schemas.row.model_validate(row)
        examples = call(srv.url, "/examples")[1]
        assert examples["source"] == "built-in" and examples["examples"]
        status, body = call(srv.url, "/predict", {"inputs": examples["examples"][:2]})
        assert status == 200 and len(body["predictions"]) == 2  # the built-in examples are inputs of the task


def same_rows(a: list[dict], b: list[dict]) -> bool:
    """Equal entities; scores equal to 3 decimals (batch composition may move the last digit)."""
    def key(rows):
        return [(r["text"], [(e["entity_group"], e["word"], e["start"], e["end"]) for e in r["entities"]]) for r in rows]
    scores = lambda rows: [e["score"] for r in rows for e in r["entities"]]  # noqa: E731
    return key(a) == key(b) and all(abs(x - y) < 1e-3 for x, y in zip(scores(a), scores(b)))


def test_concurrent_requests_get_their_own_answers(server):
    single = {t: call(server, "/predict", {"inputs": [t]})[1]["predictions"] for t in TEXTS}
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda t: call(server, "/predict", {"inputs": [t]}), TEXTS * 4))
    for t, (status, body) in zip(TEXTS * 4, results):
        assert status == 200 and same_rows(body["predictions"], single[t])


@pytest.fixture
def batching_server(ner_model):
    """A server that waits up to 300 ms for requests to join a batch; records the model calls; a
    request holding "BOOM" fails in the model (a task error, as a bad input would raise)."""
    from nlpfit.serve import make_server

    srv = make_server(str(ner_model), "127.0.0.1", 0, quiet=True, max_wait_ms=300)
    calls = []
    run = srv.predictor.run

    def recording_run(inputs, values):
        calls.append(list(inputs))
        if any("BOOM" in x for x in inputs):
            raise NlpfitError("this input makes the model fail: BOOM")
        return run(inputs, values)

    srv.predictor.batcher.run = recording_run
    with srv:
        yield srv.url, calls


def test_requests_arriving_together_share_a_batch(batching_server, server):
    base, calls = batching_server
    texts = TEXTS * 3
    alone = {t: call(server, "/predict", {"inputs": [t]})[1]["predictions"] for t in TEXTS}
    with ThreadPoolExecutor(len(texts)) as pool:
        results = list(pool.map(lambda t: call(base, "/predict", {"inputs": [t]}), texts))
    assert all(status == 200 for status, _ in results)
    for t, (_, body) in zip(texts, results):
        assert same_rows(body["predictions"], alone[t])  # each request gets its own rows
    assert sum(map(len, calls)) == len(texts) and len(calls) < len(texts)  # fewer model calls than requests
    status, text = get_text(base, "/metrics")
    assert status == 200 and 'nlpfit_batch_inputs_bucket{le="+Inf"}' in text


def test_batched_requests_keep_their_options_and_errors(batching_server, server):
    base, calls = batching_server
    requests = [{"inputs": [TEXTS[0]]}, {"inputs": [TEXTS[0]], "options": {"aggregation": "none"}},
                {"inputs": ["BOOM goes the model"]}, {"inputs": [TEXTS[2]]}]
    with ThreadPoolExecutor(len(requests)) as pool:
        results = list(pool.map(lambda body: call(base, "/predict", body), requests))
    assert [status for status, _ in results] == [200, 200, 422, 200]
    assert results[2][1] == {"error": "this input makes the model fail: BOOM"}  # only the bad request fails
    assert any(len(c) > 1 and "BOOM goes the model" in c for c in calls)  # it was merged, then re-run alone
    for body, (_, got) in zip(requests, results):
        if "error" not in got:
            assert same_rows(got["predictions"], call(server, "/predict", body)[1]["predictions"])
    none_tags = {e["entity_group"][:2] for e in results[1][1]["predictions"][0]["entities"]}
    assert none_tags <= {"B-", "I-"}  # the request with other options was not merged into the others


def test_a_large_request_does_not_hold_up_the_small_ones(batching_server):
    """700 inputs are served a chunk (the batch size, 64) at a time: a small request arriving
    meanwhile is answered between two chunks, long before the large one ends."""
    base, calls = batching_server
    big = [f"{TEXTS[i % 3]} number {i}" for i in range(700)]
    done = {}

    def send(name, inputs):
        status, body = call(base, "/predict", {"inputs": inputs})
        done[name] = time.monotonic()
        return status, body

    with ThreadPoolExecutor(2) as pool:
        large = pool.submit(send, "large", big)
        while not calls:
            time.sleep(0.01)
        small = pool.submit(send, "small", ["Hiro flew from Lima to Tokyo on Monday ."])
        (status_big, body_big), (status_small, _) = large.result(), small.result()
    assert status_big == status_small == 200
    assert [row["text"] for row in body_big["predictions"]] == big  # in input order, though run longest first
    assert done["small"] < done["large"]
    assert max(map(len, calls)) <= 256
    small_call = next(i for i, c in enumerate(calls) if "Hiro flew from Lima to Tokyo on Monday ." in c)
    assert small_call < len(calls) - 1  # chunks of the large request ran after it


def get_text(base: str, path: str, headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(base + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.mark.parametrize("body,raw,status,message", [
    (None, b"{not json", 400, "not UTF-8 JSON"),
    (None, b"\xff\xfe", 400, "not UTF-8 JSON"),
    (None, b"", 400, "needs a JSON body"),
    (None, b'{"inputs": ["\\ud800"]}', 400, "lone UTF-16 surrogate"),
    (None, b'{"inputs": ["a\\udc00b"]}', 400, "surrogate"),
    (None, b"[" * 100_000, 400, "nested too deep"),
    (None, b'{"inputs": ' + b'{"a": ' * 100_000, 400, "nested too deep"),
    ({"texts": ["a"]}, None, 422, 'with "inputs"'),
    ([["a"]], None, 422, "must be an object"),
    ({"inputs": ["a"], "extra": 1}, None, 422, "unknown field in the request: extra"),
    ({"inputs": []}, None, 422, "non-empty list"),
    ({"inputs": [{"question": "q"}]}, None, 422, "inputs[0]: ner predicts on texts"),
    ({"inputs": [["a"]]}, None, 422, "inputs[0]: ner predicts on texts"),
    ({"inputs": ["a"], "options": {"beams": 2}}, None, 422, "option 'beams': ner has no such prediction option"),
    ({"inputs": ["a"], "options": {"aggregation": "mean"}}, None, 422, "option aggregation: input should be 'simple'"),
    ({"inputs": ["a"], "options": {"precision": 16}}, None, 422, "option precision: input should be"),
    ({"inputs": ["a"], "options": {"batch_size": 0}}, None, 422, "option batch_size: input should be greater"),
    ({"inputs": ["a"], "options": {"batch_size": True}}, None, 422, "option batch_size: input should be a valid integer"),
    ({"inputs": ["a"], "options": ["none"]}, None, 422, '"options" must be an object'),
    ({"inputs": ["a"] * 1025}, None, 413, "over the limit of 1024 per request"),
])
def test_bad_requests_get_a_4xx_and_one_line(server, body, raw, status, message):
    got_status, got = call(server, "/predict", body, raw)
    assert got_status == status and message in got["error"] and "\n" not in got["error"], got
    assert list(got) == ["error"]
    assert call(server, "/health")[0] == 200  # still serving


def test_content_type_size_and_method(server):
    status, got = call(server, "/predict", raw=b'{"inputs": ["a"]}', headers={"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in got["error"]
    status, got = call(server, "/predict", raw=b'{"inputs": ["a"]}',
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415
    status, got = call(server, "/predict", raw=b'{"inputs": ["a"]}', headers={"Content-Type": "application/json; charset=latin-1"})
    assert status == 415 and "UTF-8" in got["error"]
    status, got = call(server, "/predict", {"inputs": ["Alice moved to Paris ."]}, headers={"Content-Type": "application/json; charset=utf-8"})
    assert status == 200

    # a body over the limit is refused from its Content-Length, before it is read
    reply = raw_http(server, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 20000000\r\n\r\n{")
    assert reply.startswith(b"HTTP/1.1 413") and b"byte limit" in reply

    assert call(server, "/nope")[0] == 404
    status, body = call(server, "/health", {"inputs": ["a"]})  # POST to a GET endpoint
    assert status == 405 and "takes GET" in body["error"]
    status, body = call(server, "/predict", method="GET")
    assert status == 405 and "takes POST" in body["error"]
    status, body = call(server, "/predict/stream", {"inputs": ["a"]})  # ner does not generate text
    assert status == 404 and "POST /predict" in body["error"]


def test_a_body_shorter_than_its_content_length_does_not_hold_the_server(ner_model):
    from nlpfit.serve import make_server

    with make_server(str(ner_model), "127.0.0.1", 0, quiet=True, body_timeout=1.0, max_body=2000) as srv:
        slow = ThreadPoolExecutor(1).submit(raw_http, srv.url, b"POST /predict HTTP/1.1\r\nHost: x\r\n"
                                            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\"", 20)
        time.sleep(0.2)
        start = time.monotonic()
        assert call(srv.url, "/predict", {"inputs": [TEXTS[0]]})[0] == 200  # served meanwhile
        reply = slow.result()
        assert reply.startswith(b"HTTP/1.1 408") and b"Content-Length larger than the body" in reply
        assert time.monotonic() - start < 10
        # a chunked body (no Content-Length) is cut off once it passes the limit
        chunk = b'{"inputs": ["' + b"a" * 3000 + b'"]}'
        reply = raw_http(srv.url, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 413") and b"2000 byte limit" in reply


def test_clients_that_go_away_leave_no_traceback(ner_model, capfd):
    from nlpfit.serve import make_server

    with make_server(str(ner_model), "127.0.0.1", 0, quiet=False) as srv:
        host, port = srv.server_address
        body = json.dumps({"inputs": [TEXTS[0]] * 50}).encode()
        for n in range(5):  # send a request, leave before the answer
            with socket.create_connection((host, port)) as sock:
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body) + body)
        with socket.create_connection((host, port)) as sock:  # and one that leaves half-way through its body
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        with socket.create_connection((host, port)) as sock:  # not HTTP at all
            sock.sendall(b"\x16\x03\x01 hello\r\n\r\n")
            sock.recv(1000)
        time.sleep(1.0)
        assert call(srv.url, "/predict", {"inputs": [TEXTS[0]]})[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception" not in err
    assert len(err.splitlines()) < 20  # an access-log line each, a warning for the bytes that are not HTTP


def test_api_key(ner_model, monkeypatch):
    from nlpfit.serve import make_server

    with make_server(str(ner_model), "127.0.0.1", 0, quiet=True, api_key="s3cret") as srv:
        body = {"inputs": [TEXTS[0]]}
        status, got = call(srv.url, "/predict", body)
        assert status == 401 and "Authorization: Bearer" in got["error"]
        status, got = call(srv.url, "/predict", body, headers={"Authorization": "Bearer nope"})
        assert status == 401 and "wrong API key" in got["error"]
        status, got = call(srv.url, "/predict", body, headers={"Authorization": "Basic s3cret"})
        assert status == 401
        status, got = call(srv.url, "/predict", body, headers={"Authorization": "Bearer s3cret"})
        assert status == 200 and got["predictions"][0]["text"] == TEXTS[0]
        assert call(srv.url, "/health")[0] == 200 and call(srv.url, "/info")[1]["auth"] is True


def test_openapi_describes_each_endpoint_and_the_task(server):
    status, doc = call(server, "/openapi.json")
    assert status == 200
    paths = doc["paths"]
    assert {"/", "/docs", "/predict", "/health", "/info", "/examples", "/metrics"} <= set(paths)
    assert "/predict/stream" not in paths  # ner does not generate text
    schemas = doc["components"]["schemas"]
    ref = paths["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = schemas[ref.split("/")[-1]]
    assert ref.endswith("/NerPredictRequest") and request["required"] == ["inputs"]
    assert request["properties"]["inputs"]["items"] == {"type": "string"}
    assert request["properties"]["inputs"]["maxItems"] == 1024
    options = schemas["NerOptions"]["properties"]
    assert options["aggregation"]["enum"] == ["simple", "first", "average", "max", "none"]
    assert options["aggregation"]["default"] == "simple"
    assert "sub-token" in options["aggregation"]["description"]
    assert schemas["NerOptions"]["additionalProperties"] is False
    assert set(options) == {"aggregation", "precision", "batch_size"}
    responses = paths["/predict"]["post"]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/NerPredictResponse")
    assert {"400", "401", "413", "415", "422"} <= set(responses)
    row = schemas["NerRow"]["properties"]
    assert set(row) == {"text", "entities"} and set(schemas["NerEntity"]["properties"]) == \
        {"entity_group", "score", "word", "start", "end"}

    status, page = get_text(server, "/docs")  # offline: the page renders /openapi.json itself
    assert status == 200 and "/openapi.json" in page and "http://" not in page and "https://" not in page
    status, page = get_text(server, "/")
    assert status == 200 and "/static/playground.js" in page and "https://" not in page


def test_openapi_of_qa_and_clm(tiny_bert, tmp_path_factory):
    from nlpfit.serve import make_server

    with make_server(str(tiny_model("qa", tmp_path_factory, tiny_bert)), "127.0.0.1", 0, quiet=True) as srv:
        doc = call(srv.url, "/openapi.json")[1]
        item = doc["components"]["schemas"]["QaPredictRequest"]["properties"]["inputs"]["items"]
        qa_input = doc["components"]["schemas"][item["$ref"].split("/")[-1]]
        assert qa_input["required"] == ["question", "context"]
        assert set(doc["components"]["schemas"]["QaRow"]["properties"]) == {"id", "question", "answer", "score", "start", "end"}
        status, got = call(srv.url, "/predict", {"inputs": [{"question": "q"}]})
        assert status == 422 and "context" in got["error"]
    with make_server(str(tiny_model("clm", tmp_path_factory, tiny_bert)), "127.0.0.1", 0, quiet=True) as srv:
        doc = call(srv.url, "/openapi.json")[1]
        assert "text/event-stream" in doc["paths"]["/predict/stream"]["post"]["responses"]["200"]["content"]
        options = doc["components"]["schemas"]["ClmOptions"]["properties"]
        assert {"temperature", "top_p", "max_new_tokens", "num_return_sequences", "seed"} <= set(options)
        assert options["temperature"]["type"] == "number" and options["max_new_tokens"]["type"] == "integer"
        assert "ClmStreamEvent" in doc["components"]["schemas"]


@pytest.mark.parametrize("kind,options,message", [
    ("clm", {"seed": -1}, "option seed: input should be greater than or equal to 0"),
    ("clm", {"top_p": 1.5, "temperature": 0.7}, "option top_p: input should be less than or equal to 1"),
    ("clm", {"max_new_tokens": 10**6}, "option max_new_tokens: input should be less than or equal to 1024"),
    ("translation", {"max_new_tokens": 10**6}, "less than or equal to 129"),  # the decoder's 130 positions
    ("translation", {"num_beams": -1}, "option num_beams"),
    ("mlm", {"top_k": 10**6}, "option top_k: input should be less than or equal to 600"),  # the vocabulary
])
def test_option_values_the_model_cannot_take_get_422(kind, options, message, tiny_bert, tmp_path_factory):
    from nlpfit.serve import make_server

    with make_server(str(tiny_model(kind, tmp_path_factory, tiny_bert)), "127.0.0.1", 0, quiet=True) as srv:
        status, got = call(srv.url, "/predict", {"inputs": [KIND_INPUTS[kind][0]], "options": options})
        assert status == 422 and message in got["error"], got
        name = next(iter(options))
        bounds = call(srv.url, "/openapi.json")[1]["components"]["schemas"][f"{kind.capitalize()}Options"]["properties"][name]
        assert "minimum" in bounds or "maximum" in bounds


def test_metrics_are_prometheus_text(server):
    call(server, "/predict", {"inputs": [TEXTS[0]]})
    call(server, "/predict", {"inputs": []})
    status, text = get_text(server, "/metrics")
    assert status == 200
    assert 'nlpfit_requests_total{endpoint="/predict",method="POST",status="200"}' in text
    assert 'nlpfit_requests_total{endpoint="/predict",method="POST",status="422"}' in text
    assert 'nlpfit_request_errors_total{endpoint="/predict",kind="client"}' in text
    assert 'nlpfit_request_duration_seconds_bucket{endpoint="/predict",le="0.005"}' in text
    assert 'nlpfit_request_duration_seconds_count{endpoint="/predict"}' in text
    assert "# TYPE nlpfit_batch_inputs histogram" in text and "nlpfit_queued_inputs 0" in text
    for line in text.splitlines():  # every sample line is NAME{LABELS} VALUE
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            float(value)
            assert name.startswith("nlpfit_")


def sse_events(base: str, body: dict, headers: dict | None = None, limit: int = 10_000) -> tuple[int, str, list]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/predict/stream", json.dumps(body), {"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    events = []
    if resp.status == 200:
        data = resp.read().decode()
        for block in data.split("\n\n"):
            if block.startswith("data: "):
                events.append(json.loads(block[len("data: "):]))
            if len(events) >= limit:
                break
    else:
        events.append(json.loads(resp.read()))
    conn.close()
    return resp.status, resp.getheader("Content-Type"), events


def test_clm_streams_tokens_then_the_row_of_predict(tiny_bert, tmp_path_factory):
    from nlpfit.serve import make_server

    out = tiny_model("clm", tmp_path_factory, tiny_bert)
    with make_server(str(out), "127.0.0.1", 0, quiet=True) as srv:
        body = {"inputs": ["def dumps(obj):"], "options": {"max_new_tokens": 12}}
        status, ctype, events = sse_events(srv.url, body)
        assert status == 200 and ctype.startswith("text/event-stream")
        tokens = [e["token"] for e in events[:-1]]
        assert len(tokens) > 1 and all(isinstance(t, str) and t for t in tokens)
        assert events[-1]["done"] is True
        row = call(srv.url, "/predict", body)[1]["predictions"][0]
        assert events[-1]["row"] == row  # the same generation as POST /predict
        assert "".join(tokens) == row["completions"][0]
        srv.app.state.schemas.stream_event.model_validate(events[-1])

        # several sampled sequences are not streamed: the row alone
        sampled = {"inputs": "def dumps(obj):", "options": {"max_new_tokens": 6, "temperature": 0.8,
                                                            "num_return_sequences": 2, "seed": 3}}
        status, _, events = sse_events(srv.url, sampled)
        assert status == 200 and len(events) == 1 and len(events[0]["row"]["completions"]) == 2
        assert events[0]["row"] == call(srv.url, "/predict", sampled)[1]["predictions"][0]

        status, _, events = sse_events(srv.url, {"inputs": ["a", "b"]})
        assert status == 422 and "takes one input" in events[0]["error"]
        status, _, events = sse_events(srv.url, {"inputs": ["a"], "options": {"num_return_sequences": 2}})
        assert status == 422 and "--temperature" in events[0]["error"]  # the task's own check, before the stream

        # a client that leaves mid-stream: the generation stops, the server goes on
        conn = http.client.HTTPConnection(*srv.server_address, timeout=30)
        conn.request("POST", "/predict/stream", json.dumps({"inputs": ["def f():"], "options": {"max_new_tokens": 30}}),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.readline().startswith(b"data: ")
        conn.close()
        assert call(srv.url, "/predict", body)[1]["predictions"][0] == row


def test_seq2seq_streams_too(tiny_bert, tmp_path_factory):
    from nlpfit.serve import make_server

    out = tiny_model("translation", tmp_path_factory, tiny_bert)
    with make_server(str(out), "127.0.0.1", 0, quiet=True) as srv:
        assert call(srv.url, "/info")[1]["stream"] is True
        status, _, events = sse_events(srv.url, {"inputs": ["the red cat is here ."]})
        assert status == 200 and events[-1]["done"] is True
        row = call(srv.url, "/predict", {"inputs": ["the red cat is here ."]})[1]["predictions"][0]
        assert events[-1]["row"] == row
        tokens = [e["token"] for e in events[:-1]]  # token by token, as generated
        assert len(tokens) > 1 and "".join(tokens).strip() == row["translation_text"]


def test_examples_come_from_the_model_folder(ner_model, tmp_path):
    from nlpfit.serve import make_server

    out = tmp_path / "model"
    shutil.copytree(ner_model, out)
    (out / "examples.json").write_text(json.dumps(["Hiro works for Acme Corp .", 42, {"text": "no"}, "Emma met Bob ."]))
    with make_server(str(out), "127.0.0.1", 0, quiet=True) as srv:
        assert call(srv.url, "/examples")[1] == {"source": "examples.json",
                                                 "examples": ["Hiro works for Acme Corp .", "Emma met Bob ."]}
    (out / "examples.json").write_text("not json")
    with make_server(str(out), "127.0.0.1", 0, quiet=True) as srv:
        assert call(srv.url, "/examples")[1]["source"] == "built-in"


def test_cli_serve_starts_and_answers(ner_model):
    env = dict(os.environ, HF_HUB_OFFLINE="1", NLPFIT_API_KEY="k3y")
    proc = subprocess.Popen([sys.executable, "-m", "nlpfit", "serve", str(ner_model), "--port", "0",
                             "--aggregation", "first", "--max-request-inputs", "4"], stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        base, deadline = None, time.time() + 120
        while base is None and time.time() < deadline:
            line = proc.stderr.readline()
            if "serving ner model" in line:
                base = line.split(" on ")[1].split()[0]
            elif not line and proc.poll() is not None:
                break
        assert base, "the server did not start"
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        status, body = call(base, "/info")
        assert status == 200 and body["options"]["aggregation"] == "first"  # the flag is the default
        assert body["auth"] is True and body["limits"]["max_request_inputs"] == 4
        key = {"Authorization": "Bearer k3y"}
        status, body = call(base, "/predict", {"inputs": ["Carol works for Google in Lima ."]}, headers=key)
        assert status == 200 and body["predictions"][0]["text"].startswith("Carol")
        assert call(base, "/predict", {"inputs": ["a"] * 5}, headers=key)[0] == 413
        assert call(base, "/predict", {"inputs": ["a"]})[0] == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_bad_model_folder_and_port_exit_2(tmp_path, ner_model, run_cli):
    res = run_cli("serve", tmp_path / "missing")
    assert res.code == 2 and "no such model folder" in res.err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        res = run_cli("serve", ner_model, "--port", taken.getsockname()[1])
        assert res.code == 2 and "cannot listen there" in res.err


def test_predict_batch_size_reaches_the_task(ner_model):
    from nlpfit.run import load_run, predict, predict_options
    from nlpfit.tasks import make_task

    task = make_task(load_run(str(ner_model))[0])
    popts = predict_options(task, {"batch_size": 2, "aggregation": "first"})
    assert popts.batch_size == 2 and popts.aggregation == "first"
    assert predict_options(task, {}).batch_size == task.cfg.eval_batch_size  # 0: the training run's
    assert list(predict(str(ner_model), TEXTS, {"batch_size": 1})) == list(predict(str(ner_model), TEXTS, {}))
