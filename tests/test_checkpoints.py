"""Checkpoints every N steps and exact resume after SIGKILL, on both engines.

The killed runs are real processes killed with SIGKILL (no exception, no clean-up): once at a
random moment after a checkpoint, once while a checkpoint is being written.  `--resume` must then
end with the weights and metrics.json of a run that was never interrupted.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SRC = Path(__file__).parents[1] / "src"

# from step FROM on, a checkpoint's files are written, then the process sleeps before the checkpoint is
# renamed into place: the test kills it there
SLOW_SAVE = """
import sys, time
import accelerate, transformers

FROM = int(sys.argv.pop(1))

def slow(save, step):
    def wrapper(self, *args, **kwargs):
        save(self, *args, **kwargs)
        if step(self, *args) >= FROM:
            time.sleep(120)
    return wrapper

accelerate.Accelerator.save_state = slow(accelerate.Accelerator.save_state,
                                         lambda self, path, *a: int(str(path).rsplit("-", 1)[1]))
transformers.Trainer._save_checkpoint = slow(transformers.Trainer._save_checkpoint,
                                             lambda self, *a: self.state.global_step)
from nlpfit.cli import main
main(sys.argv[1:])
"""


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "OMP_NUM_THREADS": "1"}


@pytest.fixture
def one_thread():
    """In-process runs on one thread, like the killed processes (OMP_NUM_THREADS=1): same arithmetic,
    and far faster than two threads on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def start(args, tmp_path: Path, slow_save_from: int | None = None, launch: list | None = None) -> subprocess.Popen:
    """`nlpfit ARGS` in a new process group (with `launch`: under `accelerate launch LAUNCH`)."""
    if slow_save_from is not None:
        runner = tmp_path / "slow_save.py"
        runner.write_text(SLOW_SAVE)
        cmd = [str(runner), str(slow_save_from)]
    else:
        cmd = ["-m", "nlpfit"]
    cmd = [sys.executable, *(["-m", "accelerate.commands.launch", *map(str, launch)] if launch else []), *cmd]
    return subprocess.Popen(cmd + [str(a) for a in args], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "killed.err", "ab"), start_new_session=True)


def wait_for(proc: subprocess.Popen, found, timeout: float = 240):
    """Poll until `found()` is true (and return what it returned); fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = found()
        if path:
            return path
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("timed out")


def sigkill(proc: subprocess.Popen) -> None:
    """SIGKILL to the run's processes (a launcher and its workers: the whole process group)."""
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def free_port() -> int:
    """A port that nothing listens on now (for the processes' rendezvous on 127.0.0.1)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def assert_same_run(full: Path, resumed: Path) -> None:
    a, b = weights(full), weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    m, r = (json.loads((p / "metrics.json").read_text()) for p in (full, resumed))
    assert [h["step"] for h in r["history"]] == [h["step"] for h in m["history"]]
    for h, g in zip(m["history"], r["history"]):
        assert g["epoch"] == pytest.approx(h["epoch"]) and g.get("train_loss") == pytest.approx(h.get("train_loss"))
        assert g["eval"] == pytest.approx(h["eval"], rel=1e-6)
    assert ("test" in r) == ("test" in m)
    for split in [s for s in ("eval", "test") if s in m]:
        flat = {k: v for k, v in m[split].items() if not isinstance(v, (dict, list))}
        assert {k: r[split][k] for k in flat} == pytest.approx(flat, rel=1e-6), split
        assert r[split].get("per_type") == m[split].get("per_type")
    assert r["train"]["steps"] == m["train"]["steps"] and r["train"]["epochs"] == m["train"]["epochs"]
    assert r["train"]["loss"] == pytest.approx(m["train"]["loss"], rel=1e-6)
    assert r["train"]["tokens_per_second"] > 0
    keys = ("step", "epoch", "loss", "learning_rate", "grad_norm")
    assert [e["step"] for e in r["log"]] == [e["step"] for e in m["log"]]
    for e, f in zip(m["log"], r["log"]):
        assert {k: f[k] for k in keys} == pytest.approx({k: e[k] for k in keys}, rel=1e-6), e["step"]
        assert f["tokens_per_second"] > 0


@pytest.mark.parametrize("engine", ["accelerate", "trainer"])
def test_sigkill_then_resume_gives_the_uninterrupted_run(engine, tiny_bert, ner_data, tmp_path, run_cli, one_thread):
    args = ["train", "ner", "--data", ner_data, "--model", tiny_bert, "--engine", engine, "--epochs", 2,
            "--batch-size", 16, "--lr", 3e-3, "--seed", 7, "--save-steps", 3, "--save-total-limit", 2,
            "--logging-steps", 2]  # 10 steps per epoch: checkpoints at 3, 6, 9, 12, 15, 18 (mid-epoch and across)
    full = tmp_path / "full"
    res = run_cli(*args, "--output", full)
    assert res.code == 0, res.err

    out = tmp_path / "out"
    ckpts = tmp_path / ".out.nlpfit-tmp" / "checkpoints"
    args += ["--output", out]

    # 1. killed at a random moment between its second checkpoint and its fourth
    proc = start(args, tmp_path)
    wait_for(proc, lambda: (ckpts / "checkpoint-6" / "state.json").is_file())
    deadline = time.monotonic() + random.Random(engine).uniform(0.0, 1.0)
    wait_for(proc, lambda: time.monotonic() > deadline or (ckpts / "checkpoint-12").exists())
    sigkill(proc)
    assert not out.exists()
    done = checkpoints_in(ckpts)
    # --save-total-limit 2, or 3 when killed between renaming a checkpoint into place and deleting the oldest
    assert 1 <= len(done) <= 3 and set(done) <= {3, 6, 9, 12} and max(done) >= 6

    # 2. resumed, then killed while writing its next checkpoint (files written, not yet renamed)
    proc = start(args + ["--resume"], tmp_path, slow_save_from=0)
    partial = wait_for(proc, lambda: next((ckpts / ".partial").glob("checkpoint-*"), None))
    time.sleep(0.2)
    sigkill(proc)
    newest = max(int(p.name.split("-")[1]) for p in ckpts.glob("checkpoint-*"))
    assert partial.is_dir() and int(partial.name.split("-")[1]) > newest  # the half-saved one is not in place
    assert not (ckpts / partial.name).exists()

    # 3. resumed from the newest complete checkpoint, to the end
    res = run_cli(*args, "--resume")
    assert res.code == 0, res.err
    assert f"resuming from checkpoint-{newest}" in res.err
    assert_same_run(full, out)
    assert not (tmp_path / ".out.nlpfit-tmp").exists()


@pytest.fixture(scope="module")
def code_dir(tmp_path_factory) -> Path:
    """Real Python modules of the standard library (json, email)."""
    import shutil
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    folder = tmp_path_factory.mktemp("code")
    files = sorted((stdlib / "json").glob("*.py")) + sorted((stdlib / "email").glob("*.py"))
    for p in [p for p in files if p.stat().st_size > 200][:24]:
        shutil.copy(p, folder / p.name)
    return folder


@pytest.mark.parametrize("engine", ["accelerate", "trainer"])
def test_streamed_training_resumes_at_its_position_in_the_stream(engine, code_dir, tmp_path, run_cli, one_thread):
    """`clm --streaming`: a checkpoint records how many batches of the stream were consumed; the resumed run
    skips that many and goes on with the same batches."""
    args = ["train", "clm", "--data", code_dir, "--filter-keywords", "", "--vocab-size", 300, "--n-layer", 1,
            "--n-embd", 32, "--n-head", 2, "--context-length", 32, "--streaming", "--pack", "--shuffle-buffer", 20,
            "--max-stream-eval-files", 2, "--validation-split", 0.25, "--max-steps", 12, "--batch-size", 4,
            "--lr", 5e-3, "--save-steps", 4, "--logging-steps", 2, "--engine", engine]
    full = tmp_path / "full"
    res = run_cli(*args, "--output", full)
    assert res.code == 0, res.err
    out = tmp_path / "out"
    ckpts = tmp_path / ".out.nlpfit-tmp" / "checkpoints"
    proc = start(args + ["--output", out], tmp_path, slow_save_from=8)  # killed while it writes checkpoint-8
    wait_for(proc, lambda: next((ckpts / ".partial").glob("checkpoint-8"), None))
    sigkill(proc)
    assert checkpoints_in(ckpts) == [4]
    res = run_cli(*args, "--output", out, "--resume")
    assert res.code == 0, res.err
    assert "resuming from checkpoint-4" in res.err
    assert_same_run(full, out)


def checkpoints_in(folder: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("checkpoint-*"))


def test_two_processes_under_accelerate_launch_resume_exactly(tiny_bert, ner_data, tmp_path):
    """The README's recipes on this CPU machine (gloo): `accelerate launch --multi_gpu --num_processes 2`
    starts two processes, each saving its own RNG state in the checkpoint; killed during a save and
    resumed with docs/accelerate/ddp.yaml, the run ends as the uninterrupted one, which ran with
    docs/accelerate/multi-node.yaml as two "machines" of one process each on 127.0.0.1."""
    configs = Path(__file__).parents[1] / "docs" / "accelerate"
    args = ["train", "ner", "--data", ner_data, "--model", tiny_bert, "--epochs", 2, "--batch-size", 8, "--lr", 3e-3,
            "--seed", 7, "--save-steps", 3, "--logging-steps", 2]  # 10 steps per epoch on two processes
    full, out = tmp_path / "full", tmp_path / "out"
    port = free_port()
    nodes = [start(args + ["--output", full], tmp_path,
                   launch=["--config_file", configs / "multi-node.yaml", "--num_processes", 2, "--machine_rank", rank,
                           "--main_process_ip", "127.0.0.1", "--main_process_port", port]) for rank in (0, 1)]
    assert [node.wait(timeout=300) for node in nodes] == [0, 0], (tmp_path / "killed.err").read_text()[-3000:]

    ckpts = tmp_path / ".out.nlpfit-tmp" / "checkpoints"
    proc = start(args + ["--output", out], tmp_path, slow_save_from=9,
                 launch=["--multi_gpu", "--num_processes", 2, "--main_process_port", free_port()])
    wait_for(proc, lambda: next((ckpts / ".partial").glob("checkpoint-9"), None))
    time.sleep(0.3)
    sigkill(proc)
    assert checkpoints_in(ckpts) == [6]
    assert {p.name for p in (ckpts / "checkpoint-6").glob("random_states_*")} == {"random_states_0.pkl",
                                                                               "random_states_1.pkl"}
    proc = start(args + ["--output", out, "--resume"], tmp_path,
                 launch=["--config_file", configs / "ddp.yaml", "--main_process_port", free_port()])
    assert proc.wait(timeout=300) == 0, (tmp_path / "killed.err").read_text()[-3000:]
    for folder in (full, out):
        assert json.loads((folder / "metrics.json").read_text())["train"]["num_processes"] == 2
    assert_same_run(full, out)
