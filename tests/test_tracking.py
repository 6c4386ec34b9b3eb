"""Tracking, log lines, progress and the hub strategy: the same TensorBoard scalars from both engines
(read back from the event files), metrics.json's `log`, checkpoint uploads in the background with
huggingface_hub's client replaced by a recording fake, and one error line for every bad new flag."""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

LOG_KEYS = ["step", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_second", "tokens_seen"]


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def scalars(runs: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the TensorBoard event files under `runs`: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    found: dict[str, list] = {}
    for path in sorted(runs.rglob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    found.setdefault(value.tag, []).append((event.step, value.tensor.float_val[0]
                                                           if value.tensor.float_val else value.simple_value))
    return found


def test_both_engines_write_the_same_scalars_and_log_lines(tiny_bert, ner_data, tmp_path, run_cli, one_thread):
    written = {}
    for engine in ("accelerate", "trainer"):
        out = tmp_path / engine
        res = run_cli("train", "ner", "--data", ner_data, "--model", tiny_bert, "--output", out, "--engine", engine,
                      "--max-steps", 6, "--batch-size", 16, "--logging-steps", 2, "--eval-steps", 3,
                      "--report-to", "tensorboard")
        assert res.code == 0, res.err
        assert "tok_s=" in res.err and "lr=" in res.err and "loss=" in res.err  # the progress bar's figures
        assert not (tmp_path / f".{engine}.nlpfit-tmp").exists()
        metrics = json.loads((out / "metrics.json").read_text())
        log = metrics["log"]
        assert [list(e) for e in log] == [LOG_KEYS] * 3 and [e["step"] for e in log] == [2, 4, 6]
        assert all(e["loss"] > 0 and e["grad_norm"] > 0 and e["tokens_per_second"] > 0 for e in log)
        seen = [e["tokens_seen"] for e in log]  # real tokens so far: growing, the run's total at its end
        assert 0 < seen[0] < seen[1] < seen[2]
        train = metrics["train"]  # the run's tokens/s times its runtime, both rounded (runtime_s to 10 ms)
        assert seen[2] == pytest.approx(train["tokens_per_second"] * train["runtime_s"],
                                        abs=train["tokens_per_second"] * 0.006)
        tags = scalars(out / "runs" / engine)  # OUT/runs/<OUT's name>/
        assert [s for s, _ in tags["train/loss"]] == [2, 4, 6]
        assert [v for _, v in tags["train/loss"]] == pytest.approx([e["loss"] for e in log], rel=1e-5)
        assert [v for _, v in tags["train/learning_rate"]] == pytest.approx([e["learning_rate"] for e in log])
        assert [s for s, _ in tags["eval/f1"]] == [h["step"] for h in metrics["history"]] == [3, 6]
        assert [v for _, v in tags["eval/f1"]] == pytest.approx([h["eval"]["f1"] for h in metrics["history"]])
        written[engine] = set(tags)
    assert written["accelerate"] == written["trainer"] == {
        "train/loss", "train/learning_rate", "train/grad_norm", "train/tokens_per_second", "train/tokens_seen",
        "train/epoch",
        "eval/loss", "eval/precision", "eval/recall", "eval/f1", "eval/accuracy"}


@pytest.fixture
def hub_calls(monkeypatch) -> list:
    """huggingface_hub.HfApi with its network calls replaced: records them (with what each uploaded folder
    held and whether it ran on the main thread); the upload of checkpoint-4 fails.  `run_as_future`, the
    background queue, is the real one."""
    import huggingface_hub

    calls: list = []

    class RecordingHfApi(huggingface_hub.HfApi):
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id))
            return SimpleNamespace(repo_id=repo_id)

        def upload_folder(self, *, folder_path, repo_id, path_in_repo=None, **kwargs):
            files = sorted(p.name for p in Path(folder_path).iterdir())
            calls.append(("upload_folder", Path(folder_path).name, path_in_repo, files,
                          threading.current_thread() is threading.main_thread()))
            if Path(folder_path).name == "checkpoint-4":
                raise ConnectionError("502 Bad Gateway\nmore detail")

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingHfApi)
    return calls


@pytest.mark.parametrize("engine", ["accelerate", "trainer"])
def test_every_save_uploads_each_checkpoint_in_the_background(engine, tiny_bert, ner_data, tmp_path, run_cli,
                                                              hub_calls, one_thread):
    out = tmp_path / "model"
    res = run_cli("train", "ner", "--data", ner_data, "--model", tiny_bert, "--output", out, "--engine", engine,
                  "--max-steps", 8, "--batch-size", 16, "--save-steps", 2, "--push-to-hub", "--hub-strategy",
                  "every-save", "--hub-model-id", "someone/model")
    assert res.code == 0, res.err
    uploads = [c[1:] for c in hub_calls if c[0] == "upload_folder"]
    # checkpoints 2, 4, 6 (none after the last step), in order, off the main thread; then OUT itself
    assert [(u[0], u[1]) for u in uploads] == [("checkpoint-2", "last-checkpoint"), ("checkpoint-4", "last-checkpoint"),
                                               ("checkpoint-6", "last-checkpoint"), ("model", None)]
    assert [u[3] for u in uploads] == [False, False, False, True]
    assert {"model.safetensors", "optimizer.pt" if engine == "trainer" else "optimizer.bin",
            "state.json"} <= set(uploads[0][2])
    assert "config.json" in uploads[3][2] and "metrics.json" in uploads[3][2]
    warnings = [l for l in res.err.splitlines() if l.startswith("warning: --hub-strategy")]
    assert warnings == ["warning: --hub-strategy every-save: uploading checkpoint-4 to someone/model failed "
                        "(502 Bad Gateway); training goes on"]
    assert json.loads((out / "metrics.json").read_text())["train"]["steps"] == 8
    assert "pushed" in res.err and not (tmp_path / ".model.nlpfit-tmp").exists()


def test_every_save_offline_warns_per_checkpoint_and_fails_in_one_line(tiny_bert, ner_data, tmp_path, run_cli,
                                                                      one_thread):
    out = tmp_path / "offline"
    res = run_cli("train", "ner", "--data", ner_data, "--model", tiny_bert, "--output", out, "--max-steps", 5,
                  "--batch-size", 16, "--save-steps", 2, "--push-to-hub", "--hub-strategy", "every-save")
    assert res.code == 2
    lines = res.err.splitlines()
    assert sum(l.startswith("warning: --hub-strategy every-save: uploading checkpoint-") for l in lines) == 2
    errors = [l for l in lines if l.startswith("error:")]
    assert len(errors) == 1 and "--push-to-hub" in errors[0] and "is saved" in errors[0]
    assert (out / "model.safetensors").is_file() and "Traceback" not in res.err


@pytest.mark.parametrize("flags, fragment", [
    (["--save-steps", "-1"], "--save-steps -1"),
    (["--save-total-limit", "0"], "--save-total-limit 0"),
    (["--logging-steps", "0"], "--logging-steps 0"),
    (["--report-to", "tensorbored"], "--report-to"),
    (["--report-to", "none", "--report-to", "tensorboard"], "--report-to none"),
    (["--hub-strategy", "x"], "--hub-strategy"),
    (["--hub-strategy", "every-save"], "needs --push-to-hub"),
    (["--report-to", "wandb"], 'pip install "nlpfit[wandb]"'),
    (["--report-to", "mlflow"], 'pip install "nlpfit[mlflow]"'),
])
def test_bad_run_options_fail_in_one_line_before_anything_loads(flags, fragment, tmp_path, run_cli):
    if "pip install" in fragment and importlib.util.find_spec(flags[1]) is not None:
        pytest.skip(f"{flags[1]} is installed")
    out = tmp_path / "out"
    # --data and --model do not exist: the option is refused before either is read
    res = run_cli("train", "ner", "--data", tmp_path / "missing.conll", "--model", tmp_path / "nope", "--output", out,
                  *flags)
    assert res.code == 2 and "Traceback" not in res.err
    errors = [l for l in res.err.strip().splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], res.err
    assert res.err.strip().startswith("error:")  # nothing before it: no model or data was looked at
    assert not out.exists() and not (tmp_path / ".out.nlpfit-tmp").exists()
