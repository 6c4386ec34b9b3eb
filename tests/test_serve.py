"""`nlpfit serve`: a trained model behind a JSON HTTP API, answering what `nlpfit predict` prints."""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest


def call(base: str, path: str, body=None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def ner_model(tiny_bert, tmp_path_factory):
    from conftest import make_ner_sentences, write_conll

    from nlpfit.cli import main

    folder = tmp_path_factory.mktemp("serve")
    write_conll(folder / "train.conll", make_ner_sentences(160, seed=1))
    write_conll(folder / "dev.conll", make_ner_sentences(40, seed=2))
    out = folder / "out"
    try:
        main(["train", "ner", "--data", str(folder), "--model", str(tiny_bert), "--output", str(out),
              "--epochs", "3", "--batch-size", "8", "--lr", "3e-3"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return out


@pytest.fixture(scope="module")
def server(ner_model):
    from nlpfit.serve import make_server

    srv = make_server(str(ner_model), "127.0.0.1", 0, quiet=True, max_wait_ms=0)  # each request alone
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


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
    assert "f1" in body["eval"]


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
    """A server that waits up to 300 ms for requests to join a batch; counts the model calls."""
    from nlpfit.serve import make_server

    srv = make_server(str(ner_model), "127.0.0.1", 0, quiet=True, max_wait_ms=300)
    predictor = srv.RequestHandlerClass.predictor
    calls = []
    run = predictor.run

    def counting_run(inputs, values):
        calls.append(len(inputs))
        return run(inputs, values)

    predictor.batcher.run = counting_run
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", calls
    srv.shutdown()
    srv.server_close()


def test_requests_arriving_together_share_a_batch(batching_server, server):
    base, calls = batching_server
    texts = TEXTS * 3
    alone = {t: call(server, "/predict", {"inputs": [t]})[1]["predictions"] for t in TEXTS}
    with ThreadPoolExecutor(len(texts)) as pool:
        results = list(pool.map(lambda t: call(base, "/predict", {"inputs": [t]}), texts))
    assert all(status == 200 for status, _ in results)
    for t, (_, body) in zip(texts, results):
        assert same_rows(body["predictions"], alone[t])  # each request gets its own rows
    assert sum(calls) == len(texts) and len(calls) < len(texts)  # fewer model calls than requests


def test_batched_requests_keep_their_options_and_errors(batching_server, server):
    base, calls = batching_server
    requests = [{"inputs": [TEXTS[0]]}, {"inputs": [TEXTS[0]], "options": {"aggregation": "none"}},
                {"inputs": [{"question": "not a text"}]}, {"inputs": [TEXTS[2]]}]
    with ThreadPoolExecutor(len(requests)) as pool:
        results = list(pool.map(lambda body: call(base, "/predict", body), requests))
    assert [status for status, _ in results] == [200, 200, 400, 200]
    assert "token classification predicts on texts" in results[2][1]["error"]  # only the bad request fails
    for body, (_, got) in zip(requests, results):
        if "error" not in got:
            assert same_rows(got["predictions"], call(server, "/predict", body)[1]["predictions"])
    none_tags = {e["entity_group"][:2] for e in results[1][1]["predictions"][0]["entities"]}
    assert none_tags <= {"B-", "I-"}  # the request with other options was not merged into the others


@pytest.mark.parametrize("body,raw,status,message", [
    (None, b"{not json", 400, "not UTF-8 JSON"),
    (None, b"\xff\xfe", 400, "not UTF-8 JSON"),
    ({"texts": ["a"]}, None, 400, 'with "inputs"'),
    ({"inputs": ["a"], "extra": 1}, None, 400, "unknown field(s) in the request: extra"),
    ({"inputs": []}, None, 400, "non-empty list"),
    ({"inputs": [{"question": "q"}]}, None, 400, "token classification predicts on texts"),
    ({"inputs": ["a"], "options": {"beams": 2}}, None, 400, "option 'beams': ner has no such prediction option"),
    ({"inputs": ["a"], "options": {"aggregation": "mean"}}, None, 400, "option aggregation: \"mean\" is not one of"),
    ({"inputs": ["a"], "options": {"precision": 16}}, None, 400, "option precision: expected str"),
    ({"inputs": ["a"], "options": {"batch_size": 0}}, None, 400, "batch_size: a positive integer"),
    ({"inputs": ["a"], "options": ["none"]}, None, 400, '"options" must be an object'),
])
def test_bad_requests_get_one_line_and_status_400(server, body, raw, status, message):
    got_status, got = call(server, "/predict", body, raw)
    assert got_status == status and message in got["error"] and "\n" not in got["error"]
    assert call(server, "/health")[0] == 200  # still serving


def test_unknown_endpoints(server):
    assert call(server, "/nope")[0] == 404
    status, body = call(server, "/health", {"inputs": ["a"]})  # POST to a GET endpoint
    assert status == 404 and "POST /predict" in body["error"]


def test_cli_serve_starts_and_answers(ner_model):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "nlpfit", "serve", str(ner_model), "--port", "0",
                             "--aggregation", "first"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        base, deadline = None, time.time() + 120
        while base is None and time.time() < deadline:
            line = proc.stderr.readline()
            if "serving ner model" in line:
                base = line.split(" on ")[1].split()[0]
            elif not line and proc.poll() is not None:
                break
        assert base, "the server did not start"
        status, body = call(base, "/info")
        assert status == 200 and body["options"]["aggregation"] == "first"  # the flag is the default
        status, body = call(base, "/predict", {"inputs": ["Carol works for Google in Lima ."]})
        assert status == 200 and body["predictions"][0]["text"].startswith("Carol")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_bad_model_folder_exits_2(tmp_path, run_cli):
    res = run_cli("serve", tmp_path / "missing")
    assert res.code == 2 and "no such model folder" in res.err


def test_predict_batch_size_reaches_the_task(ner_model):
    from nlpfit.run import load_run, predict, predict_options
    from nlpfit.tasks import make_task

    task = make_task(load_run(str(ner_model))[0])
    popts = predict_options(task, {"batch_size": 2, "aggregation": "first"})
    assert popts.batch_size == 2 and popts.aggregation == "first"
    assert predict_options(task, {}).batch_size == task.cfg.eval_batch_size  # 0: the training run's
    assert list(predict(str(ner_model), TEXTS, {"batch_size": 1})) == list(predict(str(ner_model), TEXTS, {}))
