"""`nlpfit report OUT`: one self-contained HTML page per run (OUT/report.html).

One real tiny NER training, plus run folders written in the format `nlpfit train` saves for the
other tasks; the page is checked for what it must hold and opened in chromium."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import make_ner_sentences, write_conll


@pytest.fixture(scope="module")
def ner_run(tiny_bert, tmp_path_factory) -> Path:
    """A real NER run folder: a tiny BERT trained for 2 short epochs (train, validation and test splits)."""
    from nlpfit.cli import main

    root = tmp_path_factory.mktemp("report-ner")
    data = root / "data"
    data.mkdir()
    write_conll(data / "train.conll", make_ner_sentences(64, seed=1))
    write_conll(data / "dev.conll", make_ner_sentences(24, seed=2))
    write_conll(data / "test.conll", make_ner_sentences(24, seed=3))
    out = root / "ner-run"
    try:
        main(["train", "ner", "--data", str(data), "--model", str(tiny_bert), "--output", str(out),
              "--epochs", "2", "--batch-size", "16", "--lr", "3e-3"])
    except SystemExit as exc:
        assert not exc.code, "training failed"
    return out


def _copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("run.json", "metrics.json"):
        shutil.copyfile(src / name, dst / name)
    return dst


def _run_json(task: str, pipeline: str, **config) -> dict:
    cfg = {"data": ["some/data"], "data_config": None, "model": "some/model", "output": f"runs/{task}",
           "engine": "accelerate", "epochs": 2.0, "batch_size": 16, "lr": 5e-5, "seed": 42, "task": task,
           "task_options": {}}
    cfg.update(config)
    return {"task": task, "pipeline": pipeline, "config": cfg, "task_data": {}, "seed": 42,
            "versions": {"nlpfit": "0.1.0", "python": "3.11.7", "torch": "2.13.0+cpu"},
            "command": ["/x/nlpfit/__main__.py", "train", task], "started": "2026-01-02T03:04:05",
            "runtime_s": 83.2, "num_processes": 1, "device": "cpu"}


def _metrics(evals: list[dict], final: dict, test: dict | None = None, steps_per_epoch: int = 10,
             eval_before: bool = False) -> dict:
    history = []
    if eval_before:
        history.append({"epoch": 0, "step": 0, "eval": evals.pop(0)})
    for i, e in enumerate(evals, 1):
        history.append({"epoch": i, "step": i * steps_per_epoch, "train_loss": 3.0 / i, "eval": e})
    m = {"train": {"loss": 3.0 / len(evals), "steps": len(evals) * steps_per_epoch, "epochs": len(evals),
                   "runtime_s": 61.5, "samples_per_second": 40.1, "tokens_per_second": 5120.4, "num_processes": 1},
         "eval": final, "history": history}
    if test is not None:
        m["test"] = test
    return m


def _write(folder: Path, run: dict, metrics: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(run, indent=2))
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return folder


def _self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # nothing to fetch: no src/href to a network address, no stylesheet or script files, no @import
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"<link\b|<script\b|@import|url\(\s*['\"]?(?:https?:)?//", page, re.I)
    assert "<svg" in page


def _text(page: str) -> str:
    """The page's visible text, tags stripped, entities decoded."""
    import html

    page = re.sub(r"<(style|svg)\b.*?</\1>", " ", page.replace("<wbr>", ""), flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


# ---- a real run ---------------------------------------------------------------------------------------
def test_report_of_a_real_ner_run(ner_run, run_cli):
    res = run_cli("report", ner_run)
    assert res.code == 0, res.err
    path = ner_run / "report.html"
    assert res.out.strip() == str(path)
    page = path.read_text(encoding="utf-8")
    _self_contained(page)
    metrics = json.loads((ner_run / "metrics.json").read_text())
    text = _text(page)
    # header: task, model, headline metric (test f1)
    assert "ner" in text and "token-classification" in text
    assert str(json.loads((ner_run / "run.json").read_text())["config"]["model"]) in text
    assert f"{metrics['test']['f1']:.4f}" in text and "test f1" in text
    # curves: the loss plot and the f1 at each evaluation
    assert page.count("<svg") >= 2
    if "log" not in metrics:
        assert 'no per-step log (metrics.json "log")' in text
    # per-type table from metrics.json, with the overall row
    table = re.search(r'<table class="num per-type">.*?</table>', page, re.S).group(0)
    for name, scores in metrics["test"]["per_type"].items():
        assert f"<td>{name}</td>" in table and f"{scores['f1']:.3f}" in table
    assert "overall" in table
    # the run wrote confusion.json: the matrix is drawn; without it, a note instead
    assert (ner_run / "confusion.json").is_file() and "predicted type" in page
    (ner_run / "confusion.json").unlink()
    assert run_cli("report", ner_run).code == 0
    assert "No confusion matrix" in _text((ner_run / "report.html").read_text(encoding="utf-8"))
    # configuration table, versions, timing
    config = re.search(r'<table class="kv wide config">.*?</table>', page, re.S).group(0)
    for key in ("batch_size", "lr", "engine", "seed"):
        assert f"<th>{key}</th>" in config
    assert "<th>label_column</th>" in page and "<th>transformers</th>" in page
    assert "training tokens / s" in text and "device" in text


def test_write_report_with_step_log_confusion_and_samples(ner_run, tmp_path):
    """The per-step log with the learning rate, the confusion matrix and samples, when OUT has them."""
    from nlpfit.metrics.tagging import type_confusion
    from nlpfit.report.html import write_report

    out = _copy_run(ner_run, tmp_path / "run")
    metrics = json.loads((out / "metrics.json").read_text())
    steps = metrics["train"]["steps"]
    metrics["log"] = [{"step": s, "epoch": s / steps * 2, "loss": 2.0 / s, "learning_rate": 3e-3 * (1 - s / steps),
                       "grad_norm": 1.0 + s % 3, "tokens_per_second": 1000.0 + s} for s in range(1, steps + 1)]
    (out / "metrics.json").write_text(json.dumps(metrics))
    conf = type_confusion([["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]],
                          [["B-PER", "O", "O", "B-PER"], ["O", "B-ORG"]])
    assert conf == {"labels": ["O", "LOC", "ORG", "PER"],
                    "matrix": [[2, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [1, 0, 0, 1]]}
    (out / "confusion.json").write_text(json.dumps(conf))
    calls = []

    def samples(folder):
        calls.append(folder)
        return [{"input": "Alice moved to <Paris>", "output": [{"token_str": "Paris", "score": 0.9}, "Lima"]}]

    path = write_report(out, samples=samples)
    assert path == out / "report.html" and calls == [out]
    page = path.read_text()
    _self_contained(page)
    text = _text(page)
    assert "no per-step log" not in text
    assert "learning rate" in page  # the second axis (SVG text is kept as text)
    assert "Gradient norm" in text and "tokens / s per logging step (median)" in text
    assert "No confusion matrix" not in text and "predicted type" in page and page.count("<svg") >= 4
    assert "Alice moved to &lt;Paris&gt;" in page and "<Paris>" not in page
    assert "0.9000" in text and "Lima" in text

    # samples.json stands in for the callable; a corrupt optional file is a note, not a failure
    (out / "samples.json").write_text(json.dumps([{"input": "def f(", "output": "def f(x):\n    return x"}]))
    (out / "confusion.json").write_text('{"labels": ["A", "O"], "matrix": [[1]]}')
    text = _text(write_report(out).read_text())
    assert "def f(x):" in text and "No confusion matrix" in text and "confusion.json is not" in text
    (out / "confusion.json").write_text("{oops")
    text = _text(write_report(out).read_text())
    assert "confusion.json could not be read" in text


# ---- the other tasks, in the format `nlpfit train` saves -------------------------------------------------
def test_report_translation_with_predictions(tmp_path):
    from nlpfit.report.html import write_report

    evals = [{"loss": 2.1, "bleu": 12.5, "chrf": 30.1, "gen_len": 9.0}, {"loss": 1.7, "bleu": 18.25, "chrf": 41.0,
                                                                          "gen_len": 10.0}]
    final = {**evals[-1], "bleu_details": {"precisions": [50.0, 25.0, 12.0, 6.0], "bp": 1.0}}
    rows = [{"source": f"source {i} <i>", "reference": f"reference {i}", "prediction": f"prediction {i} & co"}
            for i in range(25)]
    out = _write(tmp_path / "mt", _run_json("translation", "translation", model="Helsinki-NLP/opus-mt-en-fr"),
                 _metrics(copy.deepcopy(evals), final, test={**final, "bleu": 17.75}))
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = write_report(out).read_text()
    _self_contained(page)
    text = _text(page)
    assert "test bleu" in text and "17.75" in text and "18.25" in text
    assert "Validation bleu at each evaluation" in text
    assert "source 0 <i>" in text and "source 0 &lt;i&gt;" in page and "prediction 0 & co" in text
    assert "source 9 " in text and "source 10 " not in text  # the first ten
    assert "The first 10 of 25 predictions" in text
    assert "Helsinki-NLP/opus-mt-en-fr" in text


def test_report_summarization_picks_rougeL(tmp_path):
    from nlpfit.report.html import main_metric, write_report

    evals = [{"loss": 3.0, "rouge1": 20.0, "rouge2": 5.0, "rougeL": 17.5, "rougeLsum": 18.0, "gen_len": 30.0}]
    metrics = _metrics(copy.deepcopy(evals), evals[-1])
    assert main_metric("summarization", metrics) == "rougeL"
    out = _write(tmp_path / "sum", _run_json("summarization", "summarization"), metrics)
    text = _text(write_report(out).read_text())
    assert "validation rougeL" in text and "17.50" in text


def test_report_qa_predictions_both_forms(tmp_path):
    from nlpfit.report.html import write_report

    evals = [{"exact_match": 20.0, "f1": 35.5, "total": 54, "windows": 60},
             {"exact_match": 30.0, "f1": 48.25, "total": 54, "windows": 60}]
    out = _write(tmp_path / "qa", _run_json("qa", "question-answering"), _metrics(copy.deepcopy(evals), evals[-1]))
    (out / "predictions.json").write_text(json.dumps({"q1": "Denver Broncos", "q2": ""}))
    page = write_report(out).read_text()
    text = _text(page)
    assert "validation f1" in text and "48.25" in text
    assert "q1" in text and "Denver Broncos" in text and "(no answer)" in text
    assert "reference answers" not in text  # references are not stored in the plain form
    (out / "predictions.json").write_text(json.dumps(
        {"q1": {"prediction": "Denver", "references": ["Denver Broncos", "Broncos"]}}))
    text = _text(write_report(out).read_text())
    assert "reference answers" in text and "Denver Broncos | Broncos" in text


def test_report_mlm_and_clm_perplexity(tmp_path):
    from nlpfit.report.html import write_report

    evals = [{"loss": 3.2, "perplexity": 24.5, "masked_tokens": 900}, {"loss": 2.5, "perplexity": 12.18,
                                                                        "masked_tokens": 900},
             {"loss": 2.3, "perplexity": 9.97, "masked_tokens": 900}]
    out = _write(tmp_path / "mlm", _run_json("mlm", "fill-mask"),
                 _metrics(copy.deepcopy(evals), evals[-1], eval_before=True))
    (out / "samples.json").write_text(json.dumps([{"input": "This is a great [MASK].", "output": [
        {"sequence": "this is a great film.", "score": 0.41, "token_str": "film"},
        {"sequence": "this is a great movie.", "score": 0.2, "token_str": "movie"}]}]))
    text = _text(write_report(out).read_text())
    assert "validation perplexity (lower is better)" in text and "9.97" in text
    assert "Fill-mask candidates" in text and "film" in text and "0.4100" in text

    evals = [{"loss": 9.0, "perplexity": 8103.08, "tokens": 4000}, {"loss": 2.0, "perplexity": 7.39, "tokens": 4000}]
    out = _write(tmp_path / "clm", _run_json("clm", "text-generation"),
                 _metrics(copy.deepcopy(evals), evals[-1], eval_before=True))
    (out / "samples.json").write_text(json.dumps([{"input": "import pandas as pd", "output": "import pandas as pd\n"
                                                   "import numpy as np"}]))
    page = write_report(out).read_text()
    _self_contained(page)
    text = _text(page)
    assert "Generations" in text and "import numpy as np" in text and "7.39" in text


def test_report_without_evaluations(tmp_path):
    """A run with no history (no validation split) still gets a page, without curves."""
    from nlpfit.report.html import write_report

    metrics = {"train": {"loss": 1.5, "steps": 5, "epochs": 1, "runtime_s": 2.0}, "eval": {}, "history": []}
    out = _write(tmp_path / "bare", _run_json("clm", "text-generation"), metrics)
    text = _text(write_report(out).read_text())
    assert "No losses were recorded" in text and "Configuration" in text


# ---- bad OUT ------------------------------------------------------------------------------------------
def test_report_bad_folders(tmp_path, run_cli):
    res = run_cli("report", tmp_path / "missing")
    assert res.code == 2 and res.err.strip() == f"error: {tmp_path / 'missing'}: no such folder"
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run_cli("report", empty)
    assert res.code == 2 and res.err.strip() == f"error: {empty}: not an nlpfit folder (no run.json)"
    bad = _write(tmp_path / "bad", _run_json("ner", "token-classification"), {})
    (bad / "metrics.json").write_text('{"train": {"loss": 1.0},\n  "eval": }')
    res = run_cli("report", bad)
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1
    assert res.err.startswith(f"error: {bad / 'metrics.json'}: invalid JSON (line 2")
    (bad / "metrics.json").write_text("[1, 2]")
    res = run_cli("report", bad)
    assert res.code == 2 and "metrics.json: expected a JSON object" in res.err
    (bad / "metrics.json").unlink()
    res = run_cli("report", bad)
    assert res.code == 2 and "metrics.json: no such file" in res.err
    (bad / "run.json").write_text("not json")
    res = run_cli("report", bad)
    assert res.code == 2 and f"{bad / 'run.json'}: invalid JSON" in res.err
    assert not (bad / "report.html").exists()


# ---- in a browser -------------------------------------------------------------------------------------
def test_report_renders_in_chromium(ner_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("no chromium on PATH (`make browser` installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    import numpy as np
    from PIL import Image

    from nlpfit.report.html import write_report

    path = write_report(ner_run)
    shot = tmp_path / "report.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            requests = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.resolve().as_uri())
            page.screenshot(path=str(shot), full_page=True)
            svgs = page.locator("svg.plot").count()
            widths = page.evaluate("[...document.querySelectorAll('svg.plot')]"
                                   ".map(s => s.getBoundingClientRect().width)")
            title = page.title()
        finally:
            browser.close()
    assert all(u.startswith("file:") for u in requests), requests  # loads nothing but itself
    assert svgs >= 2 and all(w > 200 for w in widths), widths
    assert "nlpfit report" in title
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    height, width, _ = pixels.shape
    assert width == 1200 and height > 1500  # the whole page, not one screen
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 200  # text, plots, the header's gradient: not a blank page
    top = pixels[: height // 20]
    assert (top[..., 2].astype(int) - top[..., 0].astype(int)).mean() > 60  # the blue header is drawn


def test_report_title_is_the_folder_name(tmp_path):
    """The page is named after OUT; while train writes OUT aside (.OUT.nlpfit-tmp/final), after OUT."""
    from nlpfit.report.html import write_report

    metrics = _metrics([{"loss": 1.0, "f1": 0.5}], {"loss": 1.0, "f1": 0.5})
    moved = _write(tmp_path / "renamed", _run_json("ner", "token-classification", output="runs/first"), metrics)
    assert "<h1>renamed</h1>" in write_report(moved).read_text()
    staging = _write(tmp_path / ".wnut.nlpfit-tmp" / "final",
                     _run_json("ner", "token-classification", output="runs/wnut"), metrics)
    assert "<h1>wnut</h1>" in write_report(staging).read_text()
