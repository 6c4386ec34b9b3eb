"""Masked-LM domain adaptation: text reading, chunking, masking, fixed eval masks, perplexity,
fill-mask prediction, both engines, bad input, and one real run of MiniLM on the Python docs."""

import json
import math

import pytest
import torch

from conftest import corpus_text


def _task(tiny_bert, data=(), seed=42, **options):
    from nlpfit.config import RunConfig
    from nlpfit.tasks import make_task

    cfg = RunConfig(task="mlm", model=str(tiny_bert), data=[str(d) for d in data], seed=seed, task_options=options)
    return make_task(cfg)


def _tokenizer(tiny_bert):
    from nlpfit.models import load_tokenizer

    return load_tokenizer(str(tiny_bert))


def _blocks(tiny_bert, n_docs=400, chunk=32):
    import datasets

    from nlpfit.data.text import chunk_corpus

    ds = datasets.Dataset.from_dict({"text": corpus_text()[:n_docs]})
    return chunk_corpus(ds, _tokenizer(tiny_bert), chunk)


class _Encoder(torch.nn.Module):
    """Stands for a model: make_collate keeps the columns its forward takes."""

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        raise NotImplementedError


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(corpus_text()), encoding="utf-8")
    return path


# ---- chunking ---------------------------------------------------------------------------------------
def test_chunking_cuts_the_token_stream_into_equal_blocks(tiny_bert):
    import datasets

    from nlpfit.data.text import block_size, chunk_corpus

    tok = _tokenizer(tiny_bert)
    texts = corpus_text()[:300]
    stream = [t for text in texts for t in tok(text)["input_ids"]]
    blocks = chunk_corpus(datasets.Dataset.from_dict({"text": texts}), tok, 50)
    assert len(blocks) == len(stream) // 50 and len(stream) % 50  # the remainder is dropped
    assert all(len(ids) == 50 for ids in blocks["input_ids"])
    assert [t for ids in blocks["input_ids"] for t in ids] == stream[: len(blocks) * 50]
    assert blocks["labels"] == blocks["input_ids"]  # labels are the inputs before masking
    special = set(tok.all_special_ids)
    for ids, words in zip(blocks["input_ids"], blocks["word_ids"]):
        assert [w == -1 for w in words] == [t in special for t in ids]
        numbered = [w for w in words if w >= 0]
        assert numbered == sorted(numbered) and numbered[0] == 0  # block-local word numbers
        # a word's tokens are contiguous and only its first one lacks the ## prefix
        for i in range(1, len(ids)):
            if words[i] >= 0 and words[i] == words[i - 1]:
                assert tok.convert_ids_to_tokens(ids[i]).startswith("##")
    assert block_size(1000, tok) == tok.model_max_length == 128  # never above the model's maximum


def test_text_readers(tmp_path, tiny_bert):
    from nlpfit.data.text import load_text

    (tmp_path / "a.jsonl").write_text('{"body": "first document here"}\n{"body": "second one"}\n', encoding="utf-8")
    (tmp_path / "b.csv").write_text('id,body\n1,"a third, with a comma"\n2,fourth\n', encoding="utf-8")
    raw = load_text([str(tmp_path / "a.jsonl"), str(tmp_path / "b.csv")], text_column="body", validation=0)
    assert sorted(raw["train"]["text"]) == ["a third, with a comma", "first document here", "fourth", "second one"]

    lines = tmp_path / "lines.txt"  # read into the datasets cache: an edited file must be read again
    lines.write_text("\ufeffone line\n\n  two lines  \n", encoding="utf-8")
    assert load_text([str(lines)], validation=0)["train"]["text"] == ["one line", "two lines"]
    lines.write_text("changed text\n", encoding="utf-8")
    assert load_text([str(lines)], validation=0)["train"]["text"] == ["changed text"]

    docs = tmp_path / "docs"
    for split, names in (("train", ["x", "y", "z"]), ("test", ["w"])):
        (docs / split).mkdir(parents=True)
        for name in names:
            (docs / split / f"{name}.txt").write_text(f"Document {name}.\nIts second line.\n", encoding="utf-8")
    raw = load_text([str(docs)], document_per_file=True, validation=0)
    assert sorted(raw) == ["test", "train"] and len(raw["train"]) == 3
    assert raw["test"]["text"] == ["Document w.\nIts second line."]


def test_hub_splits_chosen_with_train_split(monkeypatch):
    import datasets

    import nlpfit.data.text as text

    fake = datasets.DatasetDict({s: datasets.Dataset.from_dict({"text": [f"{s} {i}" for i in range(n)],
                                                               "label": [0] * n})
                                 for s, n in (("train", 10), ("test", 4), ("unsupervised", 20))})
    monkeypatch.setattr(text, "load_hub", lambda spec, config: fake)
    raw = text.load_text(["imdb"], train_splits=["train", "unsupervised"], validation=0.1)
    assert len(raw["train"]) + len(raw["validation"]) == 30 and len(raw["test"]) == 4
    raw = text.load_text(["imdb"], validation=0)
    assert len(raw["train"]) == 10 and "unsupervised" not in raw


# ---- masking ----------------------------------------------------------------------------------------
def test_random_masking_rate_and_labels(tiny_bert):
    from nlpfit.engines.loop import make_collate

    task = _task(tiny_bert)
    tok = _tokenizer(tiny_bert)
    blocks = _blocks(tiny_bert, n_docs=None)
    collate = make_collate(task.collator(tok, None), _Encoder())
    torch.manual_seed(0)
    batch = collate([blocks[i] for i in range(len(blocks))])
    ids = torch.tensor(blocks["input_ids"])
    special = torch.isin(ids, torch.tensor(tok.all_special_ids))
    chosen = batch["labels"] != -100
    assert not (chosen & special).any()
    assert torch.equal(batch["labels"][chosen], ids[chosen])
    rate = chosen.sum().item() / (~special).sum().item()
    assert chosen.sum() > 1500 and abs(rate - 0.15) < 0.015
    share = (batch["input_ids"][chosen] == tok.mask_token_id).float().mean().item()
    assert abs(share - 0.8) < 0.04  # 80% [MASK]
    assert torch.equal(batch["input_ids"][~chosen], ids[~chosen])


def test_whole_word_masking_masks_words_together(tiny_bert):
    from nlpfit.engines.loop import make_collate

    task = _task(tiny_bert, masking="whole-word", mask_only=True)
    assert task.probability == 0.2  # the whole-word default
    tok = _tokenizer(tiny_bert)
    blocks = _blocks(tiny_bert, n_docs=None)
    model = _Encoder()  # takes no word ids: the collator's input_columns keep them
    collate = make_collate(task.collator(tok, model), model)
    torch.manual_seed(0)
    batch = collate([blocks[i] for i in range(len(blocks))])
    ids, words = torch.tensor(blocks["input_ids"]), torch.tensor(blocks["word_ids"])
    chosen = batch["labels"] != -100
    assert torch.equal(batch["labels"][chosen], ids[chosen])
    assert (batch["input_ids"][chosen] == tok.mask_token_id).all()  # --mask-only
    assert torch.equal(batch["input_ids"][~chosen], ids[~chosen])
    n_words = masked_words = multi = 0
    for r in range(len(ids)):
        for w in range(int(words[r].max()) + 1):
            pos = words[r] == w
            state = chosen[r][pos]
            assert state.all() or not state.any(), "a word was partly masked"
            n_words += 1
            masked_words += bool(state.all())
            multi += bool(state.all()) and int(pos.sum()) > 1
    assert multi > 50 and not chosen[words < 0].any()
    assert abs(masked_words / n_words - 0.2) < 0.02


def test_eval_masks_are_fixed(tiny_bert, text_file):
    def features(seed):
        task = _task(tiny_bert, [text_file], seed=seed)
        raw, facts = task.load_data()
        model, tok = task.build(raw, facts)
        return task.preprocess(raw, tok, model.config, facts, training=True)[0]["validation"]

    a, b = features(1), features(99)
    assert a["input_ids"] == b["input_ids"] and a["labels"] == b["labels"]
    labels = torch.tensor(a["labels"])
    original = torch.tensor(a["word_ids"])
    chosen = labels != -100
    assert chosen.float().mean().item() == pytest.approx(0.15 * (original >= 0).float().mean().item(), abs=0.03)


# ---- perplexity ---------------------------------------------------------------------------------------
def test_perplexity_matches_a_hand_computation(tiny_bert, text_file):
    from nlpfit.engines.loop import evaluate

    task = _task(tiny_bert, [text_file])
    raw, facts = task.load_data()
    model, tok = task.build(raw, facts)
    features, facts = task.preprocess(raw, tok, model.config, facts, training=True)
    feats = features["validation"]
    metrics = evaluate(task, model, tok, feats, raw["validation"], facts, batch_size=7).metrics
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for ex in feats:
            logits = model(input_ids=torch.tensor([ex["input_ids"]])).logits[0]
            logp = torch.log_softmax(logits.double(), -1)
            for pos, label in enumerate(ex["labels"]):
                if label != -100:
                    total -= logp[pos, label].item()
                    n += 1
    assert metrics["masked_tokens"] == n
    assert metrics["loss"] == pytest.approx(total / n, rel=1e-4)
    assert metrics["perplexity"] == pytest.approx(math.exp(total / n), rel=1e-3)
    assert evaluate(task, model, tok, feats, raw["validation"], facts, batch_size=64).metrics["perplexity"] == \
        pytest.approx(metrics["perplexity"], rel=1e-5)
    huge = task.compute_metrics({"loss_sum": [1e6], "n_tokens": [10]}, None, None, facts, tok).metrics
    assert huge["perplexity"] == math.inf


# ---- end to end -------------------------------------------------------------------------------------
def _train(run_cli, tiny_bert, data, out, engine, *extra):
    res = run_cli("train", "mlm", "--data", data, "--model", tiny_bert, "--output", out, "--engine", engine,
                  "--epochs", 2, "--batch-size", 16, "--lr", 3e-3, "--chunk-size", 32, "--train-size", 192,
                  "--test-size", 48, *extra)
    assert res.code == 0, res.err
    return res, json.loads((out / "metrics.json").read_text())


def test_both_engines_train_evaluate_predict(tiny_bert, text_file, tmp_path, run_cli):
    runs = {}
    for engine in ("accelerate", "trainer"):
        res, metrics = _train(run_cli, tiny_bert, text_file, tmp_path / engine, engine)
        assert "no masked-LM head" in res.err and "tied to the input embeddings" in res.err
        history = metrics["history"]
        assert history[0]["step"] == 0  # perplexity before training, by default
        ppl = [h["eval"]["perplexity"] for h in history]
        assert len(ppl) == 3 and ppl[-1] < ppl[0] * 0.7
        runs[engine] = metrics
    # same fixed eval masks and seeded head: both engines start from the same perplexity
    assert runs["accelerate"]["history"][0]["eval"] == pytest.approx(runs["trainer"]["history"][0]["eval"])

    out = tmp_path / "accelerate"
    res = run_cli("evaluate", out, "--split", "validation", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["perplexity"] == pytest.approx(runs["accelerate"]["eval"]["perplexity"], rel=1e-5)
    other = tmp_path / "other.txt"  # a new file: fixed masks too, and the run's --test-size (48 blocks)
    other.write_text("\n".join(corpus_text()[-300:]), encoding="utf-8")
    res = run_cli("evaluate", out, "--data", other, "--json")
    assert res.code == 0, res.err
    m = json.loads(res.out)
    n_tokens = 48 * 32
    assert 1.5 < m["perplexity"] < 1000 and 0.1 * n_tokens < m["masked_tokens"] < 0.2 * n_tokens

    res = run_cli("predict", out, "the [MASK] statement is executed .", "--top-k", 3)
    assert res.code == 0, res.err
    row = json.loads(res.out)
    assert len(row["predictions"]) == 3
    scores = [p["score"] for p in row["predictions"]]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
    assert all("[MASK]" not in p["sequence"] for p in row["predictions"])

    res = run_cli("predict", out, "the <mask> is [MASK] .", "--top-k", 2)  # either spelling; one list per mask
    per_mask = json.loads(res.out)["predictions"]
    assert [len(c) for c in per_mask] == [2, 2] and not per_mask[0][0]["sequence"].startswith("[CLS]")

    res = run_cli("predict", out, "no mask token here .")
    assert res.code == 2 and res.err.count("\n") == 1 and "no mask token" in res.err

    from transformers import pipeline

    pipe = pipeline("fill-mask", model=str(out))
    assert len(pipe("the [MASK] is here .")) == 5


def test_whole_word_masking_with_the_trainer(tiny_bert, text_file, tmp_path, run_cli):
    res, metrics = _train(run_cli, tiny_bert, text_file, tmp_path / "ww", "trainer", "--masking", "whole-word",
                          "--epochs", 1, "--no-eval-before", "--train-size", 64, "--test-size", 20)
    assert metrics["history"][0]["step"] > 0 and metrics["eval"]["perplexity"] < 1000
    assert "train 64, validation 20" in res.err
    card = json.loads((tmp_path / "ww" / "run.json").read_text())["task_data"]
    assert card["masking"] == "whole-word" and card["mlm_probability"] == 0.2


def test_two_processes_give_the_same_perplexity(tiny_bert, text_file, tmp_path):
    """`torchrun --nproc_per_node 2` on CPU: the fixed eval masks and summed losses give one figure."""
    from conftest import torchrun_then_evaluate

    out = tmp_path / "ddp"
    args = ["train", "mlm", "--data", text_file, "--model", tiny_bert, "--output", out, "--epochs", 1,
            "--batch-size", 8, "--lr", 3e-3, "--chunk-size", 32, "--train-size", 32, "--test-size", 21,
            "--eval-batch-size", 4, "--no-eval-before"]
    metrics, single = torchrun_then_evaluate(args, out, 29531)
    assert metrics["eval"]["masked_tokens"] == single["masked_tokens"]
    assert metrics["eval"]["perplexity"] == pytest.approx(single["perplexity"], rel=1e-5)


# ---- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["column", "empty", "bytes", "probability", "docfile"])
def test_bad_input_is_one_line(case, tiny_bert, tmp_path, run_cli):
    extra = []
    if case == "column":
        data = tmp_path / "d.jsonl"
        data.write_text('{"review": "good film"}\n{"review": "bad film"}\n', encoding="utf-8")
        expect = "--text-column"
    elif case == "empty":
        data = tmp_path / "d.txt"
        data.write_text("\n  \n\n", encoding="utf-8")
        expect = "empty corpus"
    elif case == "bytes":
        data = tmp_path / "d.txt"
        data.write_bytes("line one\nline two\nbad \xff byte\n".encode("latin-1"))
        expect = f"{data}:3: not UTF-8"
    elif case == "probability":
        data = tmp_path / "d.txt"
        data.write_text("some text\n" * 10, encoding="utf-8")
        extra, expect = ["--mlm-probability", 1.5], "--mlm-probability"
    else:
        data = tmp_path / "d.txt"
        data.write_text("some text\n" * 10, encoding="utf-8")
        extra, expect = ["--document-per-file"], "--document-per-file"
    res = run_cli("train", "mlm", "--data", data, "--model", tiny_bert, "--output", tmp_path / "out", *extra)
    assert res.code == 2, res.err
    assert res.err.startswith("error: ") and res.err.count("\n") == 1 and expect in res.err, res.err


# ---- the real model -----------------------------------------------------------------------------------
def test_minilm_perplexity_drops_on_the_python_docs(tmp_path, run_cli):
    """The offline default: packaged MiniLM (new MLM head) on CPython's documentation prose."""
    out = tmp_path / "minilm"
    res = run_cli("train", "mlm", "--output", out, "--max-steps", 8, "--batch-size", 16, "--lr", 2e-4,
                  "--chunk-size", 64, "--test-size", 48, "--eval-batch-size", 48)
    assert res.code == 0, res.err
    history = json.loads((out / "metrics.json").read_text())["history"]
    before, after = history[0]["eval"]["perplexity"], history[-1]["eval"]["perplexity"]
    assert history[0]["step"] == 0 and history[-1]["step"] == 8
    assert after < before / 3, (before, after)
