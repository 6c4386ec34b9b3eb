"""Every numeric option has a declared range, checked before anything loads: a bad value is one
`error:` line naming the option as the user wrote it, exit status 2, no traceback, nothing on disk.
The same checker serves the command line, config files and the Python API."""

import json
import shutil

import pytest

import nlpfit
from nlpfit.tasks.base import Task

FP16_OK = False
try:
    import torch

    FP16_OK = torch.cuda.is_available() or torch.backends.mps.is_available()
except ImportError:  # pragma: no cover
    pass


def _fake_out(folder, task, tokenizer_from=None):
    """A model folder with run.json only (and a tokenizer): enough for the checks, which must
    come before any model is loaded."""
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"task": task, "config": {"task": task, "eval_batch_size": 8}}))
    if tokenizer_from is not None:
        for f in tokenizer_from.iterdir():
            if f.name.startswith(("tokenizer", "vocab", "special_tokens")):
                shutil.copy(f, folder / f.name)
    return folder


@pytest.fixture(scope="module")
def outs(tmp_path_factory, tiny_bert):
    root = tmp_path_factory.mktemp("outs")
    return {task: _fake_out(root / task, task, tiny_bert if task == "mlm" else None)
            for task in ("ner", "clm", "translation", "mlm")}


@pytest.fixture
def nothing_loads(monkeypatch):
    """Loading a model or resolving the data fails the test: the checks must fire first."""
    def loaded(*args, **kwargs):
        raise AssertionError("a model or data was loaded before the options were checked")

    monkeypatch.setattr(Task, "load_predictor", loaded)
    monkeypatch.setattr(Task, "load_trained", loaded)
    monkeypatch.setattr("nlpfit.run.resolve", loaded)
    monkeypatch.setattr("nlpfit.tokenizer_training.train_tokenizer_folder", loaded)


TRAIN = [  # (task, flags, fragments of the one error line)
    ("ner", ["--batch-size", 0], "--batch-size 0: must be at least 1"),
    ("ner", ["--batch-size", -4], "--batch-size -4: must be at least 1"),
    ("ner", ["--grad-accum", 0], "--grad-accum 0: must be at least 1"),
    ("ner", ["--lr", -1], "--lr -1.0: must be above 0"),
    ("ner", ["--lr", 0], "--lr 0.0: must be above 0"),
    ("ner", ["--lr", "nan"], "--lr nan: must be a finite number"),
    ("ner", ["--lr", "inf"], "--lr inf: must be a finite number"),
    ("ner", ["--eval-batch-size", 0], "--eval-batch-size 0: must be at least 1"),
    ("ner", ["--max-train-samples", -3], "--max-train-samples -3: must be at least 0"),
    ("ner", ["--max-eval-samples", -1], "--max-eval-samples -1: must be at least 0"),
    ("ner", ["--epochs", 0], "--epochs 0.0: must be above 0"),
    ("ner", ["--epochs", -2], "--epochs -2.0: must be above 0"),
    ("ner", ["--max-steps", -2], "--max-steps -2: must be at least -1"),
    ("ner", ["--eval-steps", -1], "--eval-steps -1: must be at least 0"),
    ("ner", ["--warmup-ratio", 2], "--warmup-ratio 2.0: must be at least 0 and at most 1"),
    ("ner", ["--warmup-ratio", -0.1], "--warmup-ratio -0.1: must be at least 0 and at most 1"),
    ("ner", ["--weight-decay", -1], "--weight-decay -1.0: must be at least 0"),
    ("ner", ["--max-grad-norm", -1], "--max-grad-norm -1.0: must be at least 0"),
    ("ner", ["--validation-split", -0.2], "--validation-split -0.2: must be at least 0 and below 1"),
    ("ner", ["--validation-split", 1], "--validation-split 1.0: must be at least 0 and below 1"),
    ("ner", ["--test-split", 1.5], "--test-split 1.5: must be at least 0 and below 1"),
    ("ner", ["--seed", -1], "--seed -1: must be at least 0 and at most 4294967295"),
    ("ner", ["--seed", 2**32], "--seed 4294967296: must be at least 0"),
    ("ner", ["--split-seed", -5], "--split-seed -5: must be at least 0"),
    ("ner", ["--max-length", -1], "--max-length -1: must be at least 0"),
    ("pos", ["--max-length", -8], "--max-length -8: must be at least 0"),
    ("translation", ["--num-beams", 0], "--num-beams 0: must be at least 1"),
    ("translation", ["--max-source-length", 0], "--max-source-length 0: must be at least 1"),
    ("translation", ["--max-target-length", 0], "--max-target-length 0: must be at least 1"),
    ("translation", ["--max-new-tokens", -1], "--max-new-tokens -1: must be at least 0"),
    ("translation", ["--scratch-dim", 0], "--scratch-dim 0: must be at least 8"),
    ("translation", ["--scratch-dim", 200], "--scratch-dim 200: a 200-wide model has 3 heads"),
    ("translation", ["--scratch-layers", 0], "--scratch-layers 0: must be at least 1"),
    ("translation", ["--vocab-size", 5], "--vocab-size 5: must be at least 100"),
    ("summarization", ["--max-source-length", 0], "--max-source-length 0: must be at least 1"),
    ("summarization", ["--max-target-length", -1], "--max-target-length -1: must be at least 1"),
    ("summarization", ["--num-beams", -3], "--num-beams -3: must be at least 1"),
    ("clm", ["--context-length", 0], "--context-length 0: must be at least 2"),
    ("clm", ["--context-length", 1], "--context-length 1: must be at least 2"),
    ("clm", ["--vocab-size", 5], "--vocab-size 5: must be at least 258"),
    ("clm", ["--n-layer", -1], "--n-layer -1: must be at least 0"),
    ("clm", ["--n-embd", -1], "--n-embd -1: must be at least 0"),
    ("clm", ["--n-head", -1], "--n-head -1: must be at least 0"),
    ("clm", ["--shuffle-buffer", -1], "--shuffle-buffer -1: must be at least 0"),
    ("clm", ["--max-stream-eval-files", -1], "--max-stream-eval-files -1: must be at least 0"),
    ("clm", ["--keyword-alpha", -1], "--keyword-alpha -1.0: must be at least 0"),
    ("clm", ["--keyword-alpha", "nan"], "--keyword-alpha nan: must be a finite number"),
    ("mlm", ["--chunk-size", 0], "--chunk-size 0: must be at least 1"),
    ("mlm", ["--mlm-probability", 0], "--mlm-probability 0.0: must be above 0 and below 1"),
    ("mlm", ["--mlm-probability", 1], "--mlm-probability 1.0: must be above 0 and below 1"),
    ("mlm", ["--train-size", -1], "--train-size -1: must be at least 0"),
    ("mlm", ["--test-size", -1], "--test-size -1: must be at least 0"),
    ("qa", ["--max-length", -1], "--max-length -1: must be at least 0"),
    ("qa", ["--stride", -1], "--stride -1: must be at least 0"),
    ("qa", ["--n-best", 0], "--n-best 0: must be at least 1"),
    ("qa", ["--max-answer-length", 0], "--max-answer-length 0: must be at least 1"),
    ("qa", ["--null-threshold", "nan"], "--null-threshold nan: must be a finite number"),
    # click's own usage errors, as one line too
    ("ner", ["--batch-size", "abc"], "--batch-size: 'abc' is not a valid integer"),
    ("ner", ["--lr", "fast"], "--lr: 'fast' is not a valid float"),
    ("ner", ["--engine", "bogus"], "--engine: 'bogus' is not one of 'accelerate', 'trainer'"),
    ("ner", ["--bogus-flag", 1], "no such option '--bogus-flag'"),
    ("ner", ["--max-steps"], "'--max-steps' requires an argument"),
    ("ner", ["--top-k", 3], "no such option '--top-k'"),
]
if not FP16_OK:
    TRAIN.append(("ner", ["--mixed-precision", "fp16"], "--mixed-precision fp16: needs a GPU"))


def _one_error(res, *fragments):
    assert res.code == 2, (res.code, res.err)
    assert "Traceback" not in res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _nothing_written(tmp_path, out):
    assert not out.exists() and not (out.parent / f".{out.name}.nlpfit-tmp").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.parametrize("task,flags,message", TRAIN, ids=[f"{t} {' '.join(map(str, f))}" for t, f, _ in TRAIN])
def test_bad_train_option(task, flags, message, run_cli, tmp_path, nothing_loads):
    out = tmp_path / "OUT"
    _one_error(run_cli("train", task, "--output", out, *flags), message)
    _nothing_written(tmp_path, out)


def test_usage_errors_without_a_task(run_cli, tmp_path, nothing_loads):
    _one_error(run_cli("train", "nerx", "--output", tmp_path / "o"), "unknown task 'nerx'", "ner, pos")
    _one_error(run_cli("train", "--lr", 1), "name the task first")
    _one_error(run_cli("frobnicate"), "no such command 'frobnicate'")
    _one_error(run_cli("evaluate"), "missing argument MODEL_DIR")
    _one_error(run_cli("tokenizer", "train"), "missing option --output")
    assert [p.name for p in tmp_path.iterdir()] == []


USE = [  # (command, model task or None, arguments, message)
    ("predict", "ner", ["a text", "--batch-size", -2], "--batch-size -2: must be at least 0"),
    ("predict", "ner", ["a text", "--top-k", 3], "--top-k: ner models have no such prediction option"),
    ("predict", "clm", ["def f():", "--temperature", -1], "--temperature -1.0: must be at least 0"),
    ("predict", "clm", ["def f():", "--top-p", 5], "--top-p 5.0: must be above 0 and at most 1"),
    ("predict", "clm", ["def f():", "--top-p", 0], "--top-p 0.0: must be above 0 and at most 1"),
    ("predict", "clm", ["def f():", "--num-return-sequences", 0], "--num-return-sequences 0: must be at least 1"),
    ("predict", "clm", ["def f():", "--max-new-tokens", -1], "--max-new-tokens -1: must be at least 0"),
    ("predict", "clm", ["def f():", "--seed", -1], "--seed -1: must be at least 0"),
    ("predict", "mlm", ["a [MASK] text", "--top-k", 0], "--top-k 0: must be at least 1"),
    ("predict", "translation", ["a text", "--num-beams", -1], "--num-beams -1: must be at least 0"),
    ("predict", "translation", ["a text", "--max-new-tokens", -5], "--max-new-tokens -5: must be at least 0"),
    ("serve", "ner", ["--port", 70000], "--port 70000: must be at least 0 and at most 65535"),
    ("serve", "ner", ["--port", -1], "--port -1: must be at least 0"),
    ("serve", "ner", ["--max-wait-ms", -1], "--max-wait-ms -1.0: must be at least 0"),
    ("serve", "ner", ["--max-wait-ms", "nan"], "--max-wait-ms nan: must be a finite number"),
    ("serve", "ner", ["--max-batch-inputs", 0], "--max-batch-inputs 0: must be at least 1"),
    ("serve", "ner", ["--batch-size", -1], "--batch-size -1: must be at least 0"),
    ("serve", "clm", ["--top-p", 2], "--top-p 2.0: must be above 0 and at most 1"),
    ("evaluate", "ner", ["--batch-size", 0], "--batch-size 0: must be at least 1"),
    ("evaluate", "ner", ["--batch-size", -3], "--batch-size -3: must be at least 1"),
    ("tokenizer", None, ["--vocab-size", 5], "--vocab-size 5: must be at least 258"),
    ("tokenizer", None, ["--min-frequency", -1], "--min-frequency -1: must be at least 0"),
    ("tokenizer", None, ["--max-files", -1], "--max-files -1: must be at least 0"),
    ("tokenizer", None, ["--compare-files", -1], "--compare-files -1: must be at least 0"),
    ("tokenizer", None, ["--validation-split", 1], "--validation-split 1.0: must be at least 0 and below 1"),
    ("tokenizer", None, ["--split-seed", -1], "--split-seed -1: must be at least 0"),
    ("baseline", None, ["--max-eval-samples", -1], "--max-eval-samples -1: must be at least 0"),
    ("baseline", None, ["--validation-split", 2], "--validation-split 2.0: must be at least 0 and below 1"),
]


@pytest.mark.parametrize("command,task,args,message", USE,
                         ids=[f"{c} {t} {' '.join(map(str, a))}" for c, t, a, _ in USE])
def test_bad_use_option(command, task, args, message, run_cli, outs, tmp_path, nothing_loads, monkeypatch):
    monkeypatch.setattr("nlpfit.baseline.lead3", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    before = sorted(p.name for p in outs[task].iterdir()) if task else None
    if command == "tokenizer":
        res = run_cli("tokenizer", "train", "--output", tmp_path / "TOK", *args)
    elif command == "baseline":
        res = run_cli("baseline", "lead3", *args)
    else:
        res = run_cli(command, outs[task], *args)
    _one_error(res, message)
    assert [p.name for p in tmp_path.iterdir()] == []
    if task:
        assert sorted(p.name for p in outs[task].iterdir()) == before


def test_the_same_checker_names_options_as_the_api_and_config_files_write_them(tmp_path, outs, nothing_loads):
    with pytest.raises(nlpfit.NlpfitError, match=r"^batch_size=0: must be at least 1$"):
        nlpfit.train("ner", output=str(tmp_path / "o"), batch_size=0)
    with pytest.raises(nlpfit.NlpfitError, match=r"^lr=nan: must be a finite number$"):
        nlpfit.train("ner", output=str(tmp_path / "o"), lr=float("nan"))
    with pytest.raises(nlpfit.NlpfitError, match=r"^temperature=-1: must be at least 0$"):
        nlpfit.predict(outs["clm"], "def f():", temperature=-1)
    with pytest.raises(nlpfit.NlpfitError, match=r"^batch_size=0: must be at least 1$"):
        nlpfit.evaluate(outs["ner"], batch_size=0)
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("task: ner\noutput: %s\n\nbatch-size: 0\n" % (tmp_path / "o"))
    with pytest.raises(nlpfit.NlpfitError, match=rf"^{run_yaml}:4: batch_size 0: must be at least 1$"):
        nlpfit.train(config=run_yaml)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]


def test_the_server_checks_each_request_with_the_same_checker(outs, monkeypatch):
    from nlpfit.serve import Predictor
    from nlpfit.tasks.clm import CausalLM

    monkeypatch.setattr(CausalLM, "load_predictor", lambda self, out_dir: object())  # no model needed to check
    predictor = Predictor(str(outs["clm"]), {"temperature": 0.5}, max_wait_ms=0)
    predictor.check_options({**predictor.defaults, "top_p": 0.9})
    for options, message in [({"top_p": 5}, "option top_p 5: must be above 0 and at most 1"),
                             ({"temperature": -1}, "option temperature -1: must be at least 0"),
                             ({"num_return_sequences": 0}, "option num_return_sequences 0: must be at least 1"),
                             ({"max_new_tokens": 1.5}, "option max_new_tokens 1.5: expected")]:
        with pytest.raises(nlpfit.NlpfitError) as err:
            predictor.check_options({**predictor.defaults, **options})
        assert str(err.value) == message or str(err.value).startswith(message), str(err.value)
    with pytest.raises(nlpfit.NlpfitError, match=r"^--top-p 2.0: must be above 0 and at most 1$"):
        Predictor(str(outs["clm"]), {"top_p": 2.0})  # the server's own defaults (its flags)


def test_top_k_beyond_the_vocabulary_is_one_line_before_the_model_loads(tiny_models, run_cli):
    res = run_cli("predict", tiny_models("mlm"), "a [MASK] text", "--top-k", 100000000)
    assert res.code == 2 and res.err.strip().splitlines() == [res.err.strip()]
    assert "--top-k 100000000: more candidates than the model's vocabulary" in res.err
