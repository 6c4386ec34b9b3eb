"""Causal LM end to end on tiny GPT-2s: train from scratch (tokenizer trained first) on real Python
source -> evaluate -> predict (seeded) -> transformers.pipeline; streaming + packing + the
keytoken-weighted loss when fine-tuning an existing model; both engines."""

from __future__ import annotations

import json
import math
import shutil
import sysconfig
from pathlib import Path

import pytest

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TINY = ["--n-layer", 1, "--n-embd", 32, "--n-head", 2, "--context-length", 32]


@pytest.fixture(scope="module")
def code_dir(tmp_path_factory) -> Path:
    """24 real Python modules from the standard library (json, csv-like helpers, email)."""
    folder = tmp_path_factory.mktemp("code")
    files = sorted((STDLIB / "json").glob("*.py")) + sorted((STDLIB / "email").glob("*.py"))
    for p in [p for p in files if p.stat().st_size > 200][:24]:
        shutil.copy(p, folder / p.name)
    return folder


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory, code_dir) -> Path:
    """A pretrained-looking causal LM folder (random weights) for --model."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from nlpfit.tokenizer_training import train_bpe

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tok = train_bpe((p.read_text(encoding="utf-8") for p in sorted(code_dir.glob("*.py"))), vocab_size=320)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                               bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("engine", ["accelerate", "trainer"])
def test_from_scratch_evaluate_predict(engine, code_dir, tmp_path, run_cli):
    out = tmp_path / f"out-{engine}"
    res = run_cli("train", "clm", "--data", code_dir, "--filter-keywords", "", "--vocab-size", 300, *TINY,
                  "--validation-split", 0.25, "--max-steps", 12, "--batch-size", 8,
                  "--lr", 5e-3, "--warmup-ratio", 0, "--eval-before", "--engine", engine,
                  "--output", out)
    assert res.code == 0, res.err
    assert "training a byte-level BPE tokenizer" in res.err and "dropped" in res.err
    for name in ("config.json", "model.safetensors", "tokenizer.json", "metrics.json", "run.json", "README.md"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == 300 and config["n_layer"] == 1 and config["n_embd"] == 32
    assert config["eos_token_id"] == config["bos_token_id"] == 0  # <|endoftext|> of the trained tokenizer
    assert config["activation_function"] == "gelu_pytorch_tanh"  # GPT-2's gelu_new, in one kernel
    metrics = json.loads((out / "metrics.json").read_text())
    ev = metrics["eval"]
    assert ev["perplexity"] == pytest.approx(math.exp(ev["loss"]))
    before = next(h["eval"]["loss"] for h in metrics["history"] if h["step"] == 0)
    assert before == pytest.approx(math.log(300), abs=0.5)  # a random model: about uniform over the vocabulary
    assert ev["loss"] < before - 0.5
    assert metrics["train"]["steps"] == 12
    card = (out / "README.md").read_text()
    assert "base_model" not in card and "random initialisation" in card

    res = run_cli("evaluate", out, "--split", "validation", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["loss"] == pytest.approx(ev["loss"], rel=1e-4)

    prompt = "def dumps(obj):"
    runs = [run_cli("predict", out, prompt, "--max-new-tokens", 12, "--temperature", 0.9, "--top-p", 0.95,
                    "--num-return-sequences", 2, "--seed", seed) for seed in (1, 1, 2)]
    assert all(r.code == 0 for r in runs), runs[0].err
    rows = [json.loads(r.out.splitlines()[0]) for r in runs]
    assert rows[0] == rows[1]  # same seed, same completions
    assert rows[0]["text"] == prompt and len(rows[0]["completions"]) == 2
    greedy = run_cli("predict", out, prompt, "--max-new-tokens", 8)
    assert greedy.code == 0 and len(json.loads(greedy.out)["completions"]) == 1
    bad = run_cli("predict", out, prompt, "--num-return-sequences", 2)
    assert bad.code == 2 and "--temperature" in bad.err

    from transformers import pipeline

    pipe = pipeline("text-generation", model=str(out))
    text = pipe(prompt, max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert text.startswith(prompt)


@pytest.mark.parametrize("engine", ["accelerate", "trainer"])
def test_streaming_packed_weighted_fine_tuning(engine, code_dir, tiny_gpt2_dir, tmp_path, run_cli):
    out = tmp_path / f"stream-{engine}"
    res = run_cli("train", "clm", "--data", code_dir, "--filter-keywords", "", "--model", tiny_gpt2_dir,
                  "--context-length", 32, "--streaming", "--pack", "--shuffle-buffer", 50,
                  "--max-stream-eval-files", 2, "--validation-split", 0.25, "--max-steps", 6, "--batch-size", 4, "--max-train-samples", 12,
                  "--keyword-weighted-loss", "self,return,def,if", "--keyword-alpha", 1.0, "--engine", engine,
                  "--output", out)
    assert res.code == 0, res.err
    assert "streaming the training files" in res.err and "nothing dropped" in res.err
    assert "--keyword-weighted-loss:" in res.err and "keyword tokens" in res.err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 6
    assert metrics["eval"]["tokens"] > 0 and math.isfinite(metrics["eval"]["loss"])
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["model"] == str(tiny_gpt2_dir) and run["task_data"]["config"] is None
