"""The playground page at `/`, in a real browser (Playwright driving Debian's chromium), for each task
kind on a tiny model: type or pick an example, Ctrl+Enter, and the page shows what POST /predict
returns. Each test saves a screenshot (NLPFIT_SCREENSHOTS=docs writes docs/playground-<task>.png)."""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.request
from pathlib import Path

import pytest
from serve_models import tiny_model

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def post(base: str, body: dict) -> dict:
    req = urllib.request.Request(base + "/predict", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())["predictions"][0]


def open_page(browser, base: str):
    page = browser.new_page(viewport={"width": 1180, "height": 640})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda req: errors.append(f"{req.url}: {req.failure}"))
    page.goto(base + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)
    return page, errors


def run_and_wait(page, focus: str) -> dict:
    page.focus(focus)
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#status[data-state=done], #status[data-state=error]", timeout=60_000)
    assert page.get_attribute("#status", "data-state") == "done", page.text_content("#status")
    return json.loads(page.text_content("#raw"))


def screenshot(page, kind: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("NLPFIT_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"playground-{kind}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size < 200_000, f"{path}: {path.stat().st_size} bytes"


@pytest.fixture
def served(request, tiny_bert, tmp_path_factory):
    from nlpfit.serve import make_server

    out = tiny_model(request.param, tmp_path_factory, tiny_bert)
    with make_server(str(out), "127.0.0.1", 0, quiet=True) as srv:
        yield srv


def header_shows_the_model(page, srv, task: str) -> None:
    assert page.text_content("#task").startswith(task)
    assert page.text_content("#model-dir") == str(srv.predictor.out_dir)
    info = json.loads(urllib.request.urlopen(srv.url + "/info").read())
    shown = page.text_content("#metrics")
    assert info["eval"] and any(name in shown for name in info["eval"])


@pytest.mark.parametrize("served", ["ner"], indirect=True)
def test_token_classification_highlights_entities(served, browser, tmp_path):
    page, errors = open_page(browser, served.url)
    header_shows_the_model(page, served, "ner")
    page.click("#examples button >> nth=1")  # a built-in example, one click away
    text = page.input_value("#text")
    assert text == "Alice moved to Paris last year ."
    page.fill("#text", "Alice moved to Paris and works for Mozilla in Oslo .")
    row = run_and_wait(page, "#text")
    assert row == post(served.url, {"inputs": ["Alice moved to Paris and works for Mozilla in Oslo ."]})
    marks = page.query_selector_all("#tagged mark.ent")
    shown = [e for e in row["entities"]]
    assert shown and len(marks) == len(shown)
    for mark, entity in zip(marks, shown):
        assert mark.query_selector(".ent-text").text_content() == row["text"][entity["start"]:entity["end"]]
        assert mark.query_selector(".ent-label").text_content() == f"{entity['entity_group']} {entity['score']:.2f}"
    assert page.text_content("#tagged").replace("".join(
        m.query_selector(".ent-label").text_content() for m in marks), "") != ""
    # another option value is sent with the request
    page.select_option("#opt-aggregation", "none")
    row = run_and_wait(page, "#text")
    assert row == post(served.url, {"inputs": [row["text"]], "options": {"aggregation": "none"}})
    page.select_option("#opt-aggregation", "simple")
    run_and_wait(page, "#text")
    screenshot(page, "ner", tmp_path)
    assert not errors


@pytest.mark.parametrize("served", ["mlm"], indirect=True)
def test_fill_mask_lists_candidates(served, browser, tmp_path):
    page, errors = open_page(browser, served.url)
    header_shows_the_model(page, served, "mlm")
    page.fill("#text", "the [MASK] statement is executed when the loop ends .")
    page.fill("#opt-top_k", "4")
    row = run_and_wait(page, "#text")
    assert row == post(served.url, {"inputs": [row["text"]], "options": {"top_k": 4}})
    tokens = [el.text_content() for el in page.query_selector_all(".cand .tok")]
    scores = [float(el.text_content()) for el in page.query_selector_all(".cand .score")]
    assert tokens == [c["token"] for c in row["predictions"]] and len(tokens) == 4
    assert scores == [c["score"] for c in row["predictions"]]
    screenshot(page, "mlm", tmp_path)
    assert not errors


@pytest.mark.parametrize("served", ["translation", "summarization"], indirect=True)
def test_seq2seq_shows_the_output(served, browser, tmp_path):
    kind = served.predictor.name
    page, errors = open_page(browser, served.url)
    header_shows_the_model(page, served, kind)
    text = ("the red cat is here ." if kind == "translation" else
            "The statement is executed when the loop ends and the value of each name is bound.")
    page.fill("#text", text)
    row = run_and_wait(page, "#text")
    assert row == post(served.url, {"inputs": [text]})
    key = "translation_text" if kind == "translation" else "summary_text"
    assert page.text_content("#generated") == row[key]
    screenshot(page, kind, tmp_path)
    assert not errors


@pytest.mark.parametrize("served", ["clm"], indirect=True)
def test_text_generation_streams_the_continuation(served, browser, tmp_path):
    page, errors = open_page(browser, served.url)
    header_shows_the_model(page, served, "clm")
    for name in ("temperature", "top_p", "max_new_tokens", "seed"):
        assert page.query_selector(f"#opt-{name}") is not None
    assert page.get_attribute("#opt-temperature", "type") == "range"
    page.click("#example")
    assert page.input_value("#text") == "def fibonacci(n):\n"
    page.fill("#opt-max_new_tokens", "24")
    streamed = []  # the page's own requests: the continuation came over POST /predict/stream
    page.on("response", lambda r: streamed.append(r.headers.get("content-type", "")) if r.url.endswith("/predict/stream") else None)
    row = run_and_wait(page, "#text")
    assert row == post(served.url, {"inputs": ["def fibonacci(n):\n"], "options": {"max_new_tokens": 24}})
    assert streamed and streamed[0].startswith("text/event-stream")
    assert page.text_content("pre.code .gen") == row["completions"][0]
    assert page.text_content("pre.code .prompt") == "def fibonacci(n):\n"

    # sampling: the slider's value reaches the request
    page.eval_on_selector("#opt-temperature", "el => { el.value = '0.8'; el.dispatchEvent(new Event('input')); }")
    row = run_and_wait(page, "#text")
    assert row == post(served.url, {"inputs": ["def fibonacci(n):\n"], "options": {"max_new_tokens": 24, "temperature": 0.8}})
    page.eval_on_selector("#opt-temperature", "el => { el.value = '0'; el.dispatchEvent(new Event('input')); }")
    page.fill("#text", "def dumps(obj):")
    row = run_and_wait(page, "#text")
    assert page.text_content("pre.code .gen") == row["completions"][0]
    screenshot(page, "clm", tmp_path)
    assert not errors


@pytest.mark.parametrize("served", ["qa"], indirect=True)
def test_question_answering_highlights_the_answer(served, browser, tmp_path):
    page, errors = open_page(browser, served.url)
    header_shows_the_model(page, served, "qa")
    page.click("#examples button >> nth=1")
    question, context = page.input_value("#question"), page.input_value("#context")
    assert question == "What is the code?" and "red fox" in context
    row = run_and_wait(page, "#context")
    assert row == post(served.url, {"inputs": [{"question": question, "context": context}]})
    if row["answer"]:
        assert page.text_content("mark.answer .ent-text") == context[row["start"]:row["end"]] == row["answer"]
        assert re.search(rf"answer {row['score']:.2f}", page.text_content("mark.answer .ent-label"))
        assert page.text_content("#answered").startswith(context[:row["start"]])
    else:
        assert "No answer" in page.text_content("#output")
    screenshot(page, "qa", tmp_path)
    assert not errors


@pytest.mark.parametrize("served", ["ner"], indirect=True)
def test_errors_show_in_the_page_and_docs_render(served, browser):
    page, errors = open_page(browser, served.url)
    page.fill("#text", "x")
    page.fill("#text", "")
    page.focus("#text")
    page.keyboard.press("Control+Enter")
    assert page.get_attribute("#status", "data-state") == "error"
    page.goto(served.url + "/docs")
    page.wait_for_selector("body[data-ready=true]")
    body = page.text_content("body")
    assert "/predict" in body and "NerOptions" in body and "aggregation" in body
    assert not errors
