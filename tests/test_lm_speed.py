"""The faster paths of the language-model tasks give what the plain ones give: batched greedy generation
against the text-generation pipeline one prompt at a time, the causal-LM loss computed in chunks
against the model's own loss, fill-mask on the masked positions only against the fill-mask pipeline."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _code() -> list[str]:
    files = sorted((STDLIB / "json").glob("*.py"))
    return [p.read_text(encoding="utf-8") for p in files if p.read_text(encoding="utf-8").strip()]


@pytest.fixture(scope="module")
def gpt2_pipe():
    """A tiny random GPT-2 whose end-of-text token is often the greedy choice (its tied embedding row
    scaled up), so that some completions stop early, as a text-generation pipeline."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, pipeline

    from nlpfit.tokenizer_training import train_bpe

    tokenizer = train_bpe(_code(), vocab_size=400)
    tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        model.transformer.wte.weight[tokenizer.eos_token_id] *= 4
    return pipeline("text-generation", model=model, tokenizer=tokenizer, device="cpu")


PROMPTS = ["def dumps(obj):\n", "import json\n", "", "class JSONDecodeError(ValueError):\n    def __init__(self",
           "x = 1", "for key, value in items:\n    if", "return", "    \"\"\"Serialize ``obj`` to a JSON formatted"]


def _popts(**values):
    from nlpfit.tasks.clm import PredictOptions

    return PredictOptions(**values)


def _task():
    from nlpfit.tasks import default_config, make_task

    return make_task(default_config("clm", output="unused"))


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_batched_greedy_is_the_pipeline_one_prompt_at_a_time(gpt2_pipe, batch_size):
    import torch

    plain = []
    for text in PROMPTS:
        if not text:
            plain.append([])
            continue
        with torch.inference_mode():
            out = gpt2_pipe(text, max_new_tokens=12, do_sample=False, return_full_text=False,
                            pad_token_id=gpt2_pipe.tokenizer.pad_token_id)
        plain.append([o["generated_text"] for o in out])
    ours = list(_task().predict_with(gpt2_pipe, PROMPTS, _popts(max_new_tokens=12, batch_size=batch_size)))
    assert [r["text"] for r in ours] == PROMPTS
    assert [r["completions"] for r in ours] == plain
    lengths = {len(gpt2_pipe.tokenizer(c[0])["input_ids"]) for c in plain if c}
    assert len(lengths) > 1  # some completions stopped at end-of-text, some ran to the limit


def test_the_position_limit_cuts_each_prompt_alone(gpt2_pipe):
    long = "x = [" + ", ".join(str(i) for i in range(20)) + "]"
    n = len(gpt2_pipe.tokenizer(long)["input_ids"])
    assert 40 < n < 64
    ours = list(_task().predict_with(gpt2_pipe, [long, "import json\n"], _popts(max_new_tokens=30, batch_size=4)))
    short = list(_task().predict_with(gpt2_pipe, ["import json\n"], _popts(max_new_tokens=30, batch_size=1)))
    assert ours[1] == short[0]  # the other prompt's budget is its own
    assert len(gpt2_pipe.tokenizer(ours[0]["completions"][0])["input_ids"]) <= 64 - n


def test_sampling_depends_on_the_seed_alone(gpt2_pipe):
    task = _task()
    opts = _popts(max_new_tokens=10, temperature=0.9, seed=3, batch_size=4)
    alone = list(task.predict_with(gpt2_pipe, ["import json\n"], opts))
    among = list(task.predict_with(gpt2_pipe, ["x = 1", "import json\n", "return"], opts))
    assert among[1] == alone[0]
    again = list(task.predict_with(gpt2_pipe, ["import json\n"], opts))
    assert again == alone


# ---- fill-mask on the masked positions only ----------------------------------------------------------------
@pytest.fixture(scope="module")
def bert_pipe(tmp_path_factory):
    import torch
    from transformers import BertForMaskedLM, pipeline

    from conftest import build_tiny_bert

    folder = build_tiny_bert(tmp_path_factory.mktemp("tiny-bert-mlm"))
    torch.manual_seed(1)
    model = BertForMaskedLM.from_pretrained(folder).eval()  # a new head, random
    from transformers import AutoTokenizer

    return pipeline("fill-mask", model=model, tokenizer=AutoTokenizer.from_pretrained(folder), device="cpu")


FILL = ["the [MASK] statement is executed .", "Alice moved to [MASK] last year .", "[MASK] .",
        "the [MASK] is [MASK] here , said the weather report of the day in Paris and London .",
        "nothing special happened today , said the [MASK] report .", "a [MASK]"]


@pytest.mark.parametrize("batch_size", [1, 4])
def test_fill_masks_is_the_pipeline_on_each_text(bert_pipe, batch_size):
    from nlpfit.tasks.mlm import fill_masks

    ours = fill_masks(bert_pipe.model, bert_pipe.tokenizer, FILL, batch_size, top_k=4)
    for text, got in zip(FILL, ours):
        want = bert_pipe(text, top_k=4)
        flat_want = want if isinstance(want[0], list) else [want]
        flat_got = got if isinstance(got[0], list) else [got]
        assert isinstance(got[0], list) == isinstance(want[0], list)
        for w_mask, g_mask in zip(flat_want, flat_got, strict=True):
            assert [c["token"] for c in g_mask] == [c["token"] for c in w_mask]
            assert [c["token_str"] for c in g_mask] == [c["token_str"] for c in w_mask]
            assert [c["sequence"] for c in g_mask] == [c["sequence"] for c in w_mask]
            assert [c["score"] for c in g_mask] == pytest.approx([c["score"] for c in w_mask], abs=1e-6)


def test_fill_mask_prediction_in_bf16_keeps_the_best_fillers(bert_pipe):
    from nlpfit.tasks.mlm import PredictOptions, fill_masks

    fp32 = fill_masks(bert_pipe.model, bert_pipe.tokenizer, FILL[:3], 4, top_k=3)
    bf16 = fill_masks(bert_pipe.model, bert_pipe.tokenizer, FILL[:3], 4, precision="bf16", top_k=3)
    assert [len(r) for r in bf16] == [len(r) for r in fp32]
    assert all(0 < c["score"] <= 1 for r in bf16 for c in r)
    assert PredictOptions(precision="bf16").top_k == 5


# ---- the causal-LM token losses ------------------------------------------------------------------------------
def test_token_losses_are_the_shifted_cross_entropy():
    import torch

    from nlpfit.tasks.clm import token_losses

    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11)
    labels = torch.randint(0, 11, (3, 7))
    labels[2, 4:] = -100
    loss, counted = token_losses(logits, labels)
    want = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="none")
    assert loss.shape == (3, 6) and torch.equal(counted, labels[:, 1:] != -100)
    assert torch.allclose(loss, want, atol=1e-6)
    assert torch.all(loss[2, 3:] == 0)
    bf16, _ = token_losses(logits.bfloat16(), labels)
    assert bf16.dtype == torch.float32


def test_evaluation_loss_is_the_model_loss(gpt2_pipe):
    import torch

    from nlpfit.tasks.clm import causal_lm_collator

    task, tok = _task(), gpt2_pipe.tokenizer
    blocks = [{"input_ids": ids} for ids in tok(["def dumps(obj):\n    return x", "import json\nx = 1"])["input_ids"]]
    batch = causal_lm_collator(tok)(blocks)
    with torch.no_grad():
        out = task.eval_step(gpt2_pipe.model, batch)
        model_loss = gpt2_pipe.model(**batch).loss
    assert float(out["loss_sum"].sum() / out["n_tokens"].sum()) == pytest.approx(float(model_loss), rel=1e-5)
