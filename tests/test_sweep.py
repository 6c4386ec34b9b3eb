"""`nlpfit sweep`: trials as ordinary model folders, the summary table, best/, the report page,
pruning through `on_evaluate`, --resume, --parallel, and bad --search specs as one line."""

import csv
import json
import re

import pytest

from nlpfit.config import RunConfig


@pytest.fixture
def sweep_args(tiny_bert, ner_data):
    return ["--data", ner_data, "--model", tiny_bert, "--max-steps", 2, "--eval-steps", 1, "--eval-batch-size", 64]


def _rows(out):
    with open(out / "sweep.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("engine", ["accelerate", "trainer"])
def test_on_evaluate_stops_training_after_that_evaluation(engine, tiny_bert, ner_data, tmp_path):
    from nlpfit import run

    seen = []

    def on_evaluate(step, metrics):
        seen.append((step, sorted(metrics)))
        return True  # stop at the first evaluation

    cfg = RunConfig(task="ner", data=[str(ner_data)], model=str(tiny_bert), output=str(tmp_path / "out"),
                    max_steps=6, eval_steps=2, eval_batch_size=64, engine=engine)
    result = run.train(cfg, on_evaluate=on_evaluate)
    assert seen[0][0] == 2 and "f1" in seen[0][1]
    assert result["metrics"]["train"]["steps"] == 2  # not 6: it ended there, cleanly saved
    assert (tmp_path / "out" / "metrics.json").is_file() and not (tmp_path / ".out.nlpfit-tmp").exists()


def test_a_parallel_sweep_from_a_config_file_writes_trials_table_best_and_report(sweep_args, tmp_path, run_cli):
    data, model = sweep_args[1], sweep_args[3]
    f = tmp_path / "sweep.yaml"
    f.write_text(f"task: ner\ndata: [{data}]\nmodel: {model}\nmax_steps: 2\neval_steps: 1\neval_batch_size: 64\n"
                 "sweep:\n  trials: 3\n  parallel: 2\n  search:\n    lr: 1e-4:1e-2:log\n    batch_size: [8, 16]\n")
    out = tmp_path / "SW"
    res = run_cli("sweep", "--config", f, "--output", out)
    assert res.code == 0, res.err
    rows = _rows(out)
    assert [r["trial"] for r in rows] == ["0", "1", "2"]
    assert {r["state"] for r in rows} <= {"complete", "pruned"} and rows[0]["state"] == "complete"
    assert {r["batch_size"] for r in rows} <= {"8", "16"} and all(1e-4 <= float(r["lr"]) <= 1e-2 for r in rows)
    for r in rows:  # every trial is an ordinary model folder with its own sampled options
        trial = out / r["output"]
        run = json.loads((trial / "run.json").read_text())
        saved = run["config"]
        assert run["command"][0].endswith("sweep.py")  # trained by a worker process (--parallel 2)
        assert saved["lr"] == pytest.approx(float(r["lr"])) and saved["batch_size"] == int(r["batch_size"])
        assert (trial / "config.yaml").is_file() and (trial / "model.safetensors").is_file()
        assert json.loads((trial / "metrics.json").read_text())["eval"]["f1"] == pytest.approx(float(r["f1"]))
    finished = [r for r in rows if r["state"] == "complete"]
    best = max(finished, key=lambda r: float(r["f1"]))
    assert [r["trial"] for r in rows if r["best"] == "*"] == [best["trial"]]
    assert json.loads((out / "best" / "metrics.json").read_text()) == \
        json.loads((out / best["output"] / "metrics.json").read_text())
    assert "trial" in res.out and f"best: trial {int(best['trial']):03d}" in res.out  # the printed table
    assert res.out.count("\n") >= 5
    page = (out / "report.html").read_text()
    assert "<table>" in page and page.count("<tr") == 4
    assert "<svg" in page or "need at least two finished trials" in page
    assert "<script" not in page and not re.findall(r'(?:src|href)="(?!#)', page)  # nothing fetched
    assert (out / "sweep.db").is_file()
    # the sweep saved itself as a config file; `nlpfit train` ignores its sweep: section
    saved = (out / "sweep.yaml").read_text()
    assert "sweep:" in saved and "lr: 1e-4:1e-2:log" in saved
    assert run_cli("train", "--config", out / "sweep.yaml", "--output", tmp_path / "one", "--lr", 1e-3).code == 0


def test_resume_reruns_the_interrupted_trial_and_keeps_the_finished(sweep_args, tmp_path, run_cli, monkeypatch):
    from nlpfit import run

    out = tmp_path / "SW"
    args = ["sweep", "ner", *sweep_args, "--output", out, "--trials", 2, "--search", "lr=1e-4:1e-2:log",
            "--no-prune"]
    real, calls = run.train, []

    def interrupted_second(cfg, **kwargs):
        calls.append(cfg.lr)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(cfg, **kwargs)

    monkeypatch.setattr(run, "train", interrupted_second)
    assert run_cli(*args).code == 130
    first = (out / "trials" / "000" / "metrics.json").read_text()
    monkeypatch.setattr(run, "train", lambda cfg, **kw: (calls.append(cfg.lr), real(cfg, **kw))[1])
    res = run_cli(*args)
    assert res.code == 2 and "--resume" in res.err  # OUT holds a sweep: say how to continue it
    res = run_cli(*args, "--resume")
    assert res.code == 0, res.err
    assert calls[2:] == [calls[1]]  # only the cut-short trial ran again, with its parameters
    rows = _rows(out)
    assert [(r["state"]) for r in rows] == ["complete", "fail", "complete"]
    assert float(rows[2]["lr"]) == pytest.approx(calls[1])
    assert (out / "trials" / "000" / "metrics.json").read_text() == first
    res = run_cli("sweep", "ner", *sweep_args, "--output", out, "--trials", 2, "--search", "lr=1e-5:1e-2:log",
                  "--resume")
    assert res.code == 2 and "the search space" in res.err


BAD_SEARCH = [
    (["--search", "lr"], "--search lr: expected NAME=LOW:HIGH, NAME=LOW:HIGH:log or NAME=A,B,C"),
    (["--search", "lr=1e-3:1e-5"], "--search lr=1e-3:1e-5: the range's low end must be below its high end"),
    (["--search", "lr=0:1e-3:log"], "--search lr=0:1e-3:log: lr 0.0: must be above 0"),
    (["--search", "lr=1e-5:1e-3:sqrt"], "expected NAME=LOW:HIGH"),
    (["--search", "batch_size=0,8"], "--search batch_size=0,8: batch_size 0: must be at least 1"),
    (["--search", "batch_size=8,x"], "--search batch_size=8,x: 'x' is not an integer (batch_size)"),
    (["--search", "scheduler=linear:cosine"], "a range needs a numeric option"),
    (["--search", "scheduler=linear,exp"], "scheduler exp: must be one of linear, cosine, constant"),
    (["--search", "dropout=0.1,0.2"], "dropout is not an option of this task"),
    (["--search", "output=a,b"], "output is not a hyperparameter"),
    (["--search", "lr=1e-4"], "one value is not a search"),
    (["--lr", "1e-3", "--search", "lr=1e-4:1e-2"], "lr is also given as --lr"),
    (["--search", "lr=1e-4:1e-2", "--search", "lr=1e-5:1e-3"], "lr is searched twice"),
    (["--trials", 0], "--trials 0: must be at least 1"),
    (["--parallel", 0], "--parallel 0: must be at least 1"),
]


@pytest.mark.parametrize("args,message", BAD_SEARCH, ids=[m[:40] for _, m in BAD_SEARCH])
def test_a_bad_search_is_one_line_and_writes_nothing(args, message, tmp_path, run_cli):
    res = run_cli("sweep", "ner", "--output", tmp_path / "SW", *args)
    assert res.code == 2 and "Traceback" not in res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.err
    assert list(tmp_path.iterdir()) == []
