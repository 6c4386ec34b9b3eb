"""--precision bf16 on every task: `nlpfit evaluate` and `nlpfit predict` run under bfloat16 autocast
and give the fp32 results up to rounding."""

import json

import pytest

import nlpfit

TASKS = ["ner", "mlm", "translation", "summarization", "clm", "qa"]
INPUTS = {"ner": ["Alice moved to Paris ."], "mlm": ["the [MASK] is here ."], "translation": ["the red cat is here ."],
          "summarization": ["Alice moved to Paris . It was seen on day 3 . Nothing else happened ."],
          "clm": ["import json"], "qa": [{"question": "Who moved?", "context": "Alice moved to Paris."}]}


@pytest.mark.parametrize("task", TASKS)
def test_evaluate_in_bf16_is_fp32_up_to_rounding(task, tiny_models, run_cli):
    out = tiny_models(task)
    runs = {}
    for precision in ("fp32", "bf16"):
        result = run_cli("evaluate", str(out), "--split", "validation", "--json", "--precision", precision)
        assert result.code == 0, result.err
        runs[precision] = json.loads(result.out)
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert set(fp32) == set(bf16)
    if "loss" in fp32:
        assert bf16["loss"] == pytest.approx(fp32["loss"], rel=0.05)


@pytest.mark.parametrize("task", TASKS)
def test_predict_in_bf16_gives_the_same_kind_of_rows(task, tiny_models):
    out = tiny_models(task)
    fp32 = list(nlpfit.predict(out, INPUTS[task]))
    bf16 = list(nlpfit.predict(out, INPUTS[task], precision="bf16"))
    assert len(bf16) == len(fp32) == 1 and set(bf16[0]) == set(fp32[0])


def test_evaluation_runs_its_steps_under_bf16_autocast(tiny_models, monkeypatch):
    import torch

    from nlpfit.tasks.token_classification import TokenClassification

    seen = []
    step = TokenClassification.eval_step

    def recording(self, model, batch):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return step(self, model, batch)

    monkeypatch.setattr(TokenClassification, "eval_step", recording)
    nlpfit.evaluate(tiny_models("ner"), split="validation", precision="bf16")
    assert seen and all(seen)
    seen.clear()
    nlpfit.evaluate(tiny_models("ner"), split="validation")
    assert seen and not any(seen)


def test_an_unknown_precision_is_one_line(tiny_models, run_cli):
    result = run_cli("evaluate", str(tiny_models("ner")), "--precision", "fp8")
    assert result.code == 2 and "fp8" in result.err and "Traceback" not in result.err
