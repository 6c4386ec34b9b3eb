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


AUTO = {"ner": "AutoModelForTokenClassification", "mlm": "AutoModelForMaskedLM", "translation": "AutoModelForSeq2SeqLM",
        "summarization": "AutoModelForSeq2SeqLM", "clm": "AutoModelForCausalLM", "qa": "AutoModelForQuestionAnswering"}


@pytest.mark.parametrize("task", TASKS)
def test_bf16_weight_copies_give_autocasts_results_bit_for_bit(task, tiny_models):
    """`inference.autocast("bf16", device, model)` computes the linear layers with bfloat16 copies of
    their weights made once: the outputs are plain autocast's exactly, and on exit the model holds its
    own fp32 parameters again, tied weights still tied."""
    import torch
    import transformers

    from nlpfit.inference import autocast

    model = getattr(transformers, AUTO[task]).from_pretrained(str(tiny_models(task))).eval()
    params = {name: p for name, p in model.named_parameters()}
    ids = torch.randint(5, model.config.vocab_size, (3, 11), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if model.config.is_encoder_decoder:
        inputs["decoder_input_ids"] = ids[:, :7]
    with torch.inference_mode():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain = model(**inputs)
        with autocast("bf16", "cpu", model):
            assert any(p.dtype == torch.bfloat16 for p in model.parameters())
            copies = model(**inputs)
    keys = [k for k in ("logits", "start_logits", "end_logits") if getattr(plain, k, None) is not None]
    assert keys
    for key in keys:
        assert torch.equal(getattr(plain, key), getattr(copies, key)), key
    assert all(p is params[name] for name, p in model.named_parameters()) and len(params) == len(list(model.parameters()))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    out_layer = model.get_output_embeddings()
    if out_layer is not None and model.config.tie_word_embeddings:
        assert out_layer.weight is model.get_input_embeddings().weight


def test_summed_token_losses_are_the_per_example_cross_entropy():
    import torch

    from nlpfit.inference import summed_token_losses

    logits = torch.randn(4, 9, 50, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 50, (4, 9), generator=torch.Generator().manual_seed(2))
    labels[1, 5:] = -100
    labels[3, :] = -100
    want = [sum(float(torch.nn.functional.cross_entropy(logits[b, t], labels[b, t])) for t in range(9)
                if labels[b, t] != -100) for b in range(4)]
    got = summed_token_losses(logits, labels)
    assert got.shape == (4,) and got.dtype == torch.float32
    assert got.tolist() == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert float(got[3]) == 0.0
