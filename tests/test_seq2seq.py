"""Translation / summarization core: metrics wiring, gettext catalogs, data operations, features."""

import json

import pytest

from nlpfit import NlpfitError
from nlpfit.config import RunConfig


def make_task(cls_name="Translation", data=(), **options):
    from nlpfit.tasks import make_task as task_for

    return task_for(RunConfig(data=[str(d) for d in data], task=cls_name.lower(), task_options=options,
                              validation_split=0.0))


def load(task):
    return task.load_data()[0]


# ---- metrics: values documented by the libraries ---------------------------------------------------
def test_bleu_chrf_match_sacrebleu_documented_example():
    from nlpfit.metrics.generation import bleu_chrf

    # sacreBLEU's README: BLEU = 48.53, chrF2 = 59.73 for this system and two reference streams
    refs = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
            ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    per_example = [list(r) for r in zip(*refs)]
    scores = bleu_chrf(hyps, per_example)
    assert round(scores["bleu"], 2) == 48.53
    assert round(scores["chrf"], 2) == 59.73
    assert scores["bleu_details"]["signature"].startswith("nrefs:2|")
    single = bleu_chrf(hyps, refs[0])  # one reference per example, as strings
    assert single["bleu_details"]["signature"].startswith("nrefs:1|") and single["bleu"] < scores["bleu"]
    assert bleu_chrf(["a b c d"], ["a b c d"])["bleu"] == pytest.approx(100.0)


def test_rouge_matches_rouge_score_readme_and_lsum_uses_sentences():
    from nlpfit.metrics.generation import rouge

    # rouge-score's README (stemmed): rouge1 F 0.7059, rougeL F 0.5882
    s = rouge(["The quick brown dog jumps on the log."], ["The quick brown fox jumps over the lazy dog"])
    assert s["rouge1"] == pytest.approx(70.588, abs=1e-3)
    assert s["rougeL"] == pytest.approx(58.824, abs=1e-3)
    # the same two sentences in the other order: LCS over the whole text is half, per sentence it is all
    s = rouge(["Cats sleep all day. Dogs bark at night."], ["Dogs bark at night. Cats sleep all day."])
    assert s["rouge1"] == pytest.approx(100.0)
    assert s["rougeL"] == pytest.approx(50.0)
    assert s["rougeLsum"] == pytest.approx(100.0)
    # stemming: "running" / "runs" share the stem "run"
    assert rouge(["He runs"], ["He running"])["rouge1"] == pytest.approx(100.0)


def test_lead3_uses_pysbd_sentences():
    from nlpfit.metrics.generation import lead, sentences

    text = "Mr. Smith went to Washington. He arrived at 3 p.m. on Monday. It rained. Nobody came."
    assert sentences(text)[0] == "Mr. Smith went to Washington."
    assert lead(text).split("\n") == ["Mr. Smith went to Washington.", "He arrived at 3 p.m. on Monday.", "It rained."]


# ---- gettext catalogs -------------------------------------------------------------------------------
def write_catalog(path):
    import polib

    po = polib.POFile()
    po.metadata = {"Language": "fr", "Content-Type": "text/plain; charset=UTF-8",
                   "Plural-Forms": "nplurals=3; plural=(n == 0 || n == 1) ? 0 : n != 0 && n % 1000000 == 0 ? 1 : 2;"}
    po.append(polib.POEntry(msgid="&Open file", msgstr="&Ouvrir le fichier"))
    po.append(polib.POEntry(msgid="Save _As", msgstr="Enregistrer _sous"))
    po.append(polib.POEntry(msgid='Line one\nSay "hi"\tnow', msgstr='Ligne un\nDites « salut »\tmaintenant'))
    po.append(polib.POEntry(msgid="Fuzzy one", msgstr="Flou", flags=["fuzzy"]))
    po.append(polib.POEntry(msgid="Untranslated", msgstr=""))
    po.append(polib.POEntry(msgid="Gone", msgstr="Parti", obsolete=True))
    po.append(polib.POEntry(msgid="%(n)s file", msgid_plural="%(n)s files",
                            msgstr_plural={0: "%(n)s fichier", 1: "%(n)s de fichiers", 2: "%(n)s fichiers"}))
    po.append(polib.POEntry(msgid="Tom &amp; Jerry", msgstr="Tom &amp; Jerry"))
    po.save(str(path))
    return po


def test_po_catalog_pairs(tmp_path):
    from nlpfit.data.gettext import catalog_rows, read_catalog

    path = tmp_path / "app.po"
    write_catalog(path)
    # the escapes were written as \n \" \t in the file, and come back as characters
    assert r'"Line one\n"' in path.read_text() and r'Say \"hi\"\tnow' in path.read_text()
    pairs, meta = read_catalog(path)
    assert meta["skipped"] == {"obsolete": 1, "fuzzy": 1, "untranslated": 1}
    rows = [(r["translation"]["en"], r["translation"]["fr"]) for r in catalog_rows(path, "en", "fr")]
    assert rows == [
        ("Open file", "Ouvrir le fichier"),
        ("Save As", "Enregistrer sous"),
        ('Line one\nSay "hi"\tnow', "Ligne un\nDites « salut »\tmaintenant"),
        # n=1 -> form 0; n=2 -> form 2 under this rule (form 1 is for millions)
        ("%(n)s file", "%(n)s fichier"),
        ("%(n)s files", "%(n)s fichiers"),
        ("Tom &amp; Jerry", "Tom &amp; Jerry"),
    ]
    # the other direction from the same French catalog
    rev = catalog_rows(path, "fr", "en")
    assert rev[0]["translation"] == {"fr": "Ouvrir le fichier", "en": "Open file"}
    # keeping accelerators
    kept = catalog_rows(path, "en", "fr", accelerators="")
    assert kept[0]["translation"]["en"] == "&Open file"


def test_mo_catalog_pairs(tmp_path):
    from nlpfit.data.gettext import catalog_rows

    po = write_catalog(tmp_path / "app.po")
    po.save_as_mofile(str(tmp_path / "app.mo"))
    from_po = catalog_rows(tmp_path / "app.po", "en", "fr")
    from_mo = catalog_rows(tmp_path / "app.mo", "en", "fr")
    key = lambda rows: sorted(json.dumps(r, sort_keys=True) for r in rows)  # noqa: E731
    assert key(from_mo) == key(from_po)


def test_strip_accelerators_and_plural_rules():
    from nlpfit.data.gettext import plural_indices, strip_accelerators

    cases = {"&File": "File", "Sa&ve": "Save", "R&&D": "R&D", "_Open": "Open", "snake_case": "snake_case",
             "%(field_name)s": "%(field_name)s", "&lt;b&gt;": "&lt;b&gt;", "ファイル(&F)": "ファイル",
             "Datei (&D)": "Datei", "fish & chips": "fish & chips"}
    for text, expected in cases.items():
        assert strip_accelerators(text) == expected, text
    assert plural_indices("nplurals=2; plural=(n > 1);") == (0, 1)
    assert plural_indices("nplurals=1; plural=0;") == (0, 0)
    assert plural_indices(None) == (0, 1)


def test_bad_catalog(tmp_path):
    from nlpfit.data.gettext import catalog_rows

    bad = tmp_path / "bad.po"
    bad.write_text('msgid "unterminated\nmsgstr 12\n', encoding="utf-8")
    with pytest.raises(NlpfitError, match="bad.po"):
        catalog_rows(bad, "en", "fr")
    empty = tmp_path / "empty.po"
    empty.write_text('msgid ""\nmsgstr ""\n"Language: fr\\n"\n\nmsgid "a"\nmsgstr ""\n', encoding="utf-8")
    with pytest.raises(NlpfitError, match="no translated entries"):
        catalog_rows(empty, "en", "fr")


# ---- data operations ----------------------------------------------------------------------------------
def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def reviews(lang, n):
    cats = ["book", "digital_ebook_purchase", "kitchen"]
    return [{"review_body": f"{lang} body {i} " + "word " * (i % 5), "review_title": ("t " * (1 + i % 4)).strip(),
             "product_category": cats[i % 3]} for i in range(n)]


def test_filter_min_words_and_concatenation(tmp_path):
    en = write_jsonl(tmp_path / "en.jsonl", reviews("en", 30))
    es = write_jsonl(tmp_path / "es.jsonl", reviews("es", 30))
    task = make_task("Summarization", [en, es], text_column="review_body", summary_column="review_title",
                     filter=["product_category=book,digital_ebook_purchase"], min_words=["review_title=3"])
    raw = load(task)
    src = raw["train"]["source"]
    # concatenated: both languages; shuffled: not all English first
    assert {s[:2] for s in src} == {"en", "es"}
    assert [s[:2] for s in src] != sorted(s[:2] for s in src)
    # filter: 2 of 3 categories; min-words: titles of 3 or 4 words (i % 4 in {2, 3})
    kept = [i for i in range(30) if i % 3 != 2 and i % 4 >= 2]
    assert len(src) == 2 * len(kept)
    assert all(len(t.split()) >= 3 for t in raw["train"]["target"])

    with pytest.raises(NlpfitError, match="--filter"):
        make_task("Summarization", [en], text_column="review_body", summary_column="review_title",
                  filter=["product_category"]).load_data()
    with pytest.raises(NlpfitError, match="no such column"):
        make_task("Summarization", [en], text_column="review_body", summary_column="review_title",
                  filter=["stars=5"]).load_data()
    with pytest.raises(NlpfitError, match="--min-words review_title=x"):
        make_task("Summarization", [en], text_column="review_body", summary_column="review_title",
                  min_words=["review_title=x"]).load_data()
    with pytest.raises(NlpfitError, match="--text-column"):
        make_task("Summarization", [en]).load_data()


def test_translation_columns_and_dedupe(tmp_path):
    rows = [{"translation": {"en": f"item {i}", "fr": f"article {i}"}} for i in range(20)]
    rows += [{"translation": {"en": "item 1", "fr": "article 1"}}]  # a repeated pair
    dict_file = write_jsonl(tmp_path / "pairs.jsonl", rows)
    raw = load(make_task("Translation", [dict_file]))
    assert len(raw["train"]) == 20
    assert raw["train"][0] == {"source": "item 0", "target": "article 0"}
    raw = load(make_task("Translation", [dict_file], dedupe=False))
    assert len(raw["train"]) == 21

    csv = tmp_path / "pairs.csv"
    csv.write_text("en,fr\nhello,bonjour\n,vide\nthanks,merci\n", encoding="utf-8")
    raw = load(make_task("Translation", [csv]))
    assert raw["train"]["source"] == ["hello", "thanks"]  # the empty source is dropped

    with pytest.raises(NlpfitError, match="no en/de pair"):
        make_task("Translation", [dict_file], target_lang="de").load_data()
    with pytest.raises(NlpfitError, match="no 'translation' column and no columns 'en' and 'de'"):
        make_task("Translation", [csv], target_lang="de").load_data()


# ---- features ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_tok():
    from nlpfit.tokenizer_training import train_unigram

    texts = [f"the cat number {i} sat on the mat" for i in range(50)] + [f"le chat {i} est sur le tapis" for i in range(50)]
    return train_unigram(texts, 120)


def test_preprocess_labels_prefix_truncation(tiny_tok):
    import datasets

    # limits that fit the short pair exactly and cut the long one
    n_src = len(tiny_tok("translate the cat")["input_ids"])
    n_tgt = len(tiny_tok("le chat")["input_ids"])
    task = make_task("Translation", source_prefix="translate ", max_source_length=n_src, max_target_length=n_tgt)
    raw = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"source": ["the cat", "the cat number 12 sat on the mat"], "target": ["le chat", "le chat 12 est sur le tapis"]})})
    feats = task.preprocess(raw, tiny_tok, None, task.Facts(), training=True)[0]["train"]
    eos = tiny_tok.eos_token_id
    short = feats[0]
    assert tiny_tok.decode(short["input_ids"], skip_special_tokens=True) == "translate the cat"
    assert short["input_ids"][-1] == eos
    assert short["labels"] == tiny_tok("le chat")["input_ids"] and short["labels"][-1] == eos
    long = feats[1]
    assert len(long["input_ids"]) == n_src and len(long["labels"]) == n_tgt  # truncated, still ending with </s>
    assert long["input_ids"][-1] == eos and long["labels"][-1] == eos
    assert tiny_tok.decode(long["labels"], skip_special_tokens=True) != "le chat 12 est sur le tapis"


def test_collator_pads_labels_and_builds_decoder_inputs(tiny_tok):
    from nlpfit.models import scratch_seq2seq

    model = scratch_seq2seq(tiny_tok, 16, 1, 32)
    task = make_task("Translation")
    coll = task.collator(tiny_tok, model)
    batch = coll([{"input_ids": [5, 6, 1], "attention_mask": [1, 1, 1], "labels": [7, 1]},
                  {"input_ids": [5, 1], "attention_mask": [1, 1], "labels": [7, 8, 9, 1]}])
    pad = tiny_tok.pad_token_id
    assert batch["input_ids"].tolist() == [[5, 6, 1], [5, 1, pad]]
    assert batch["labels"].tolist() == [[7, 1, -100, -100], [7, 8, 9, 1]]
    # decoder inputs: labels shifted right after the decoder start token, -100 replaced by pad
    start = model.config.decoder_start_token_id
    assert batch["decoder_input_ids"].tolist() == [[start, 7, 1, pad], [start, 7, 8, 9]]


def test_decode_treats_minus_100_as_padding(tiny_tok):
    from nlpfit.tasks.seq2seq import decode

    ids = tiny_tok("le chat est sur le tapis")["input_ids"]
    padded = [ids + [-100, -100], [tiny_tok.pad_token_id] + ids[:2] + [-100] * 6]
    texts = decode(tiny_tok, padded)
    assert texts[0] == "le chat est sur le tapis"
    assert texts[1] == tiny_tok.decode(ids[:2], skip_special_tokens=True).strip()


# ---- evaluation: the encoder once, ids only ------------------------------------------------------------
def _trained(tiny_models, task_name):
    from nlpfit.run import load_run
    from nlpfit.tasks import make_task as task_for

    out = tiny_models(task_name)
    cfg, _ = load_run(str(out))
    task = task_for(cfg.replace(validation_split=0.0, test_split=0.0))
    raw, facts = task.load_data(trained=task.trained_facts(str(out)))
    model, tokenizer = task.load_trained(str(out))
    features, facts = task.preprocess(raw, tokenizer, model.config, facts, training=False)
    return task, model, tokenizer, features["train"], raw["train"], facts


def _plain_eval(task, model, batch, **generation):
    """The plain way: a full forward pass for the summed loss of each example, then generate() (the encoder
    runs twice)."""
    import torch

    logits = model(**batch).logits
    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch["labels"], ignore_index=-100,
                                             reduction="none").sum(dim=1)
    generated = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               max_new_tokens=task.max_new_tokens(), **generation)
    return loss, generated


@pytest.mark.parametrize("task_name", ["translation", "summarization"])
@pytest.mark.parametrize("num_beams", [1, 2])
def test_eval_step_matches_forward_then_generate(tiny_models, task_name, num_beams):
    import dataclasses

    import torch
    from torch.utils.data import DataLoader

    from nlpfit.engines.loop import make_collate

    task, model, tokenizer, features, _, _ = _trained(tiny_models, task_name)
    task.cfg = task.cfg.replace(task_options=dataclasses.replace(task.opts, num_beams=num_beams))
    model.eval()
    collate = make_collate(task.collator(tokenizer, model), model)
    batch = next(iter(DataLoader(features, batch_size=12, collate_fn=collate)))
    with torch.inference_mode():
        ours = task.eval_step(model, batch)
        loss, generated = _plain_eval(task, model, batch, num_beams=num_beams)
    assert torch.equal(ours["generated"], generated)
    assert torch.allclose(ours["loss_sum"], loss, rtol=1e-5, atol=1e-5)
    assert torch.equal(ours["n_tokens"], (batch["labels"] != -100).sum(dim=1))


def test_evaluation_keeps_ids_only_and_runs_in_bf16(tiny_models):
    import numpy as np

    from nlpfit.engines.loop import evaluate, predict_outputs

    task, model, tokenizer, features, raw, facts = _trained(tiny_models, "translation")
    outputs = predict_outputs(task, model, tokenizer, features, 8)
    assert set(outputs) == {"generated", "labels", "loss_sum", "n_tokens"}
    longest = task.max_new_tokens() + 1  # the decoder's start token, then the new tokens
    for i, row in enumerate(outputs["generated"]):  # per example: its ids, never a row of logits
        assert row.ndim == 1 and row.dtype.kind == "i" and len(row) <= longest
        assert outputs["labels"][i].ndim == 1 and np.ndim(outputs["loss_sum"][i]) == 0
    fp32 = evaluate(task, model, tokenizer, features, raw, facts, 8).metrics
    bf16 = evaluate(task, model, tokenizer, features, raw, facts, 8, precision="bf16").metrics
    assert np.isfinite(bf16["loss"]) and abs(bf16["loss"] - fp32["loss"]) < 0.1 * fp32["loss"]
    assert 0 <= bf16["bleu"] <= 100 and bf16["gen_len"] > 0


def test_predict_is_batched_generate(tiny_models):
    import torch

    from nlpfit.run import predict

    out = tiny_models("translation")
    task, model, tokenizer, _, raw, _ = _trained(tiny_models, "translation")
    texts = list(raw["source"][:10])
    rows = list(predict(str(out), texts, {"batch_size": 4}))
    model.eval()
    with torch.inference_mode():
        for text, row in zip(texts, rows):  # one text per call, no padding: the plain way
            enc = tokenizer(text, max_length=task.opts.max_source_length, truncation=True, return_tensors="pt")
            alone = tokenizer.decode(model.generate(**enc)[0], skip_special_tokens=True).strip()
            assert row["translation_text"] == alone


# ---- the lean greedy loop: generate()'s ids -------------------------------------------------------------
def _batches(tokenizer, texts, size, max_length):
    return [tokenizer(texts[i:i + size], max_length=max_length, truncation=True, padding=True, return_tensors="pt")
            for i in range(0, len(texts), size)]


@pytest.mark.parametrize("task_name", ["translation", "summarization"])
def test_greedy_gives_generate_ids(tiny_models, task_name):
    import torch

    from nlpfit.decoding import encode, generate, greedy, greedy_settings

    task, model, tokenizer, _, raw, _ = _trained(tiny_models, task_name)
    model.eval()
    assert model.generation_config.forced_eos_token_id is not None
    texts = list(raw["source"][:24])
    with torch.inference_mode():
        for max_new in (None, 3, 1):  # the saved limit, and limits that end rows by the forced end of sequence
            overrides = {} if max_new is None else {"max_new_tokens": max_new}
            settings = greedy_settings(model, overrides)
            assert settings is not None
            for enc in _batches(tokenizer, texts, 7, task.opts.max_source_length):
                expected = model.generate(**enc, **overrides)
                assert torch.equal(generate(model, enc["input_ids"], enc["attention_mask"], **overrides), expected)
                hidden = encode(model, enc["input_ids"], enc["attention_mask"])
                assert torch.equal(greedy(model, hidden, enc["attention_mask"], settings, compact=False), expected)
        # without the forced end of sequence, rows run to the limit unless they end themselves
        model.generation_config.forced_eos_token_id = None
        for enc in _batches(tokenizer, texts, 12, task.opts.max_source_length):
            assert torch.equal(generate(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=5),
                               model.generate(**enc, max_new_tokens=5))


@pytest.mark.parametrize("overrides", [{"num_beams": 2}, {"do_sample": True}, {"no_repeat_ngram_size": 2},
                                       {"repetition_penalty": 1.2}, {"min_length": 3}, {"bad_words_ids": [[5]]},
                                       {"suppress_tokens": [5]}, {"forced_bos_token_id": 3},
                                       {"num_return_sequences": 1, "output_scores": True}])
def test_greedy_falls_back_to_generate(tiny_models, overrides):
    from nlpfit import decoding

    task, model, tokenizer, _, raw, _ = _trained(tiny_models, "translation")
    assert decoding.greedy_settings(model, {}) is not None
    assert decoding.greedy_settings(model, overrides) is None
    calls = []
    real = model.generate

    def counted(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    model.generate = counted
    enc = tokenizer(list(raw["source"][:2]), padding=True, return_tensors="pt")
    if "do_sample" not in overrides and "output_scores" not in overrides:
        decoding.generate(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=3, **overrides)
        assert len(calls) == 1
    model.generation_config.update(**overrides)  # a saved generation_config that asks for it too
    assert decoding.greedy_settings(model, {}) is None


def test_greedy_after_seq2seq_trainer_spelled_out_the_defaults(tiny_models, tmp_path):
    """Seq2SeqTrainer's prediction step writes generate()'s defaults into the model's generation_config
    (repetition_penalty 1.0, no_repeat_ngram_size 0, ...), and so into the generation_config.json of a model
    it evaluated and saved: that is still plain greedy search."""
    import torch
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    from nlpfit import decoding

    task, model, tokenizer, features, raw, _ = _trained(tiny_models, "translation")
    before = set(model.generation_config.to_diff_dict())
    args = Seq2SeqTrainingArguments(str(tmp_path), per_device_eval_batch_size=8, predict_with_generate=True,
                                    report_to="none", disable_tqdm=True, use_cpu=True)
    trainer = Seq2SeqTrainer(model, args, eval_dataset=features.select(range(8)), processing_class=tokenizer,
                             data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
                             compute_metrics=lambda preds: {})  # with a compute_metrics, evaluation generates
    trainer.evaluate(max_length=task.max_new_tokens() + 1)
    spelled = set(model.generation_config.to_diff_dict()) - before
    assert {"repetition_penalty", "no_repeat_ngram_size", "num_assistant_tokens"} <= spelled
    assert decoding.greedy_settings(model, {}) is not None
    model.eval()
    enc = tokenizer(list(raw["source"][:10]), padding=True, return_tensors="pt")
    with torch.inference_mode():
        assert torch.equal(decoding.generate(model, enc["input_ids"], enc["attention_mask"]), model.generate(**enc))
    model.generation_config.repetition_penalty = 1.3  # a value that adds a logits processor
    assert decoding.greedy_settings(model, {}) is None


def test_greedy_on_a_warm_started_encoder_decoder():
    import torch
    from transformers import AutoTokenizer, EncoderDecoderModel
    from transformers.utils import logging as hf_logging

    from nlpfit.decoding import MarianStep, ModelStep, decoder_step, encode, generate, greedy_settings
    from nlpfit.models import packaged_minilm

    path = packaged_minilm()
    tokenizer = AutoTokenizer.from_pretrained(path)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(path, path).eval()
    finally:
        hf_logging.set_verbosity(verbosity)
    torch.manual_seed(0)
    with torch.no_grad():  # new cross-attention: make the ends vary between rows
        model.decoder.cls.predictions.bias.add_(torch.randn_like(model.decoder.cls.predictions.bias))
    gc = model.generation_config
    gc.decoder_start_token_id, gc.eos_token_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    gc.pad_token_id = tokenizer.pad_token_id
    model.config.decoder_start_token_id, model.config.pad_token_id = gc.decoder_start_token_id, gc.pad_token_id
    assert greedy_settings(model, {"max_new_tokens": 6}) is not None
    enc = tokenizer(["a cat sat on the mat", "hello", "the quick brown fox jumps over the lazy dog"], padding=True,
                    return_tensors="pt")
    with torch.inference_mode():
        assert torch.equal(generate(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=6),
                           model.generate(**enc, max_new_tokens=6))
        assert not MarianStep.applies(model)  # not a Marian model: the model's own forward
        hidden = encode(model, enc["input_ids"], enc["attention_mask"])
        assert type(decoder_step(model, hidden, enc["attention_mask"], 6)) is ModelStep


# ---- decoder steps: the model's forward, token by token ----------------------------------------------------
def test_growing_layer_holds_what_a_dynamic_layer_holds():
    import torch
    from transformers.cache_utils import DynamicLayer

    from nlpfit.decoding import GrowingLayer

    torch.manual_seed(0)
    grown, plain = GrowingLayer(), DynamicLayer()
    batch = 5
    for i, new in enumerate([4, 1, 1, 9, 1, 1, 1, 20, 1, 1]):  # past its first capacity (16) and its doubling
        k, v = torch.randn(batch, 2, new, 8), torch.randn(batch, 2, new, 8)
        got, want = grown.update(k, v), plain.update(k.clone(), v.clone())
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert grown.get_seq_length() == plain.get_seq_length()
        if i in (3, 7):  # rows leave the batch (reorder_cache replaces the keys from outside)
            rows = torch.tensor([0, 2, 3]) if i == 3 else torch.tensor([2, 0])
            grown.reorder_cache(rows)
            plain.reorder_cache(rows)
            batch = len(rows)
    assert grown.keys.shape == (2, 2, 40, 8)


def _marian(out, attn: str):
    """The trained Marian model of `out` with the given attention, its final_logits_bias (zeros from
    training) made random so that the steps have to add it."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(str(out), attn_implementation=attn).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        model.final_logits_bias.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("task_name", ["translation", "summarization"])
def test_decoder_steps_give_the_model_forward_logits(tiny_models, task_name, attn, precision):
    """MarianStep and ModelStep, step by step on padded batches, give the logits of the model's own forward
    with its default cache, bit for bit, also after rows leave the batch, in fp32 and under bf16 autocast
    with bf16 weight copies (what evaluation and prediction run), for both attention implementations."""
    import torch

    from nlpfit.decoding import MarianStep, ModelStep, decoder_step, encode
    from nlpfit.inference import autocast

    task, _, tokenizer, _, raw, _ = _trained(tiny_models, task_name)
    model = _marian(tiny_models(task_name), attn)
    assert MarianStep.applies(model) and model.config._attn_implementation == attn
    texts = list(raw["source"][:9])
    enc = tokenizer(texts, max_length=task.opts.max_source_length, truncation=True, padding=True, return_tensors="pt")
    mask = enc["attention_mask"]
    assert not bool(mask.all())  # the encoder mask matters
    limit = 12
    with torch.inference_mode(), autocast(precision, "cpu", model):
        hidden = encode(model, enc["input_ids"], mask)
        marian, generic = MarianStep(model, hidden, mask, limit), ModelStep(model, hidden, mask)
        assert type(decoder_step(model, hidden, mask, limit)) is MarianStep
        ref_hidden, ref_mask, cache = hidden, mask, None
        last = torch.full((len(texts), 1), model.generation_config.decoder_start_token_id)
        for position in range(limit):
            out = model(encoder_outputs=ref_hidden, attention_mask=ref_mask, decoder_input_ids=last, use_cache=True,
                        cache=cache)
            cache, want = out.cache, out.logits[:, -1, :]
            assert torch.equal(marian(last, position), want), position
            assert torch.equal(generic(last, position), want), position
            last = want.argmax(dim=-1, keepdim=True)
            if position in (2, 6):  # rows leave the batch
                keep = torch.arange(0, len(last), 2) if position == 2 else torch.tensor([1, 2])
                for step in (marian, generic):
                    step.keep(keep)
                cache.reorder_cache(keep)
                ref_hidden = type(hidden)(last_hidden_state=ref_hidden.last_hidden_state.index_select(0, keep))
                ref_mask, last = ref_mask.index_select(0, keep), last[keep]
    model.train()
    assert not MarianStep.applies(model)  # dropout in training: the model's forward


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_greedy_with_either_step_is_generate(tiny_models, attn):
    import torch

    from nlpfit.decoding import ModelStep, encode, greedy, greedy_settings

    task, _, tokenizer, _, raw, _ = _trained(tiny_models, "translation")
    model = _marian(tiny_models("translation"), attn)
    texts = list(raw["source"][:20])
    with torch.inference_mode():
        for overrides in ({}, {"max_new_tokens": 2}, {"max_new_tokens": 9}):
            settings = greedy_settings(model, overrides)
            enc = tokenizer(texts, padding=True, return_tensors="pt")
            expected = model.generate(**enc, **overrides)
            hidden = encode(model, enc["input_ids"], enc["attention_mask"])
            assert torch.equal(greedy(model, hidden, enc["attention_mask"], settings), expected)
            step = ModelStep(model, hidden, enc["attention_mask"])
            assert torch.equal(greedy(model, hidden, enc["attention_mask"], settings, step=step), expected)


@pytest.mark.parametrize("task_name", ["translation", "summarization"])
def test_losses_at_labelled_positions_are_the_full_ones(tiny_models, task_name, monkeypatch):
    import torch
    from torch.utils.data import DataLoader

    from nlpfit.engines.loop import make_collate
    from nlpfit.inference import labelled_logits, summed_labelled_losses, summed_token_losses

    task, model, tokenizer, features, _, _ = _trained(tiny_models, task_name)
    model.eval()
    collate = make_collate(task.collator(tokenizer, model), model)
    batch = next(iter(DataLoader(features, batch_size=16, collate_fn=collate)))
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    assert bool((labels == -100).any())  # targets of mixed lengths: padded
    projected = []
    head = model.get_output_embeddings()
    hook = head.register_forward_hook(lambda module, args, out: projected.append(args[0].shape[0]))
    with torch.inference_mode():
        full = model(**inputs).logits
        logits, kept, rows = labelled_logits(model, inputs, labels)
        ours = summed_labelled_losses(model, inputs, labels)
    hook.remove()
    n = int((labels != -100).sum())
    assert projected[1] == n  # the head saw the labelled positions only
    assert logits.shape == (n, full.shape[-1]) and torch.allclose(logits, full[labels != -100], atol=1e-5)
    assert torch.equal(kept, labels[labels != -100])
    assert torch.equal(rows, torch.nonzero(labels != -100)[:, 0])
    assert torch.allclose(ours, summed_token_losses(full, labels), rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(type(model), "get_output_embeddings", lambda self: None)  # a head it cannot hook
    with torch.inference_mode():
        assert torch.allclose(summed_labelled_losses(model, inputs, labels), ours, rtol=1e-6, atol=1e-6)


def _random_marian(attn: str, d_model: int = 512, heads: int = 8, vocab: int = 2000):
    """A Marian model of a realistic width drawn at random (wide enough that eager attention's rounding
    depends on the layout of the keys and values)."""
    import torch
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(0)
    config = MarianConfig(vocab_size=vocab, d_model=d_model, encoder_layers=2, decoder_layers=2,
                          encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=2 * d_model,
                          decoder_ffn_dim=2 * d_model, max_position_embeddings=128, pad_token_id=0, eos_token_id=1,
                          decoder_start_token_id=0)
    return MarianMTModel._from_config(config, attn_implementation=attn).eval()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_marian_step_at_a_realistic_width(attn):
    import torch

    from nlpfit.decoding import MarianStep, encode

    model = _random_marian(attn)
    ids = torch.randint(5, 2000, (6, 40), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[3:, 30:] = 0
    with torch.inference_mode():
        hidden = encode(model, ids, mask)
        step, cache = MarianStep(model, hidden, mask, 24), None
        last = torch.zeros(6, 1, dtype=torch.long)
        for position in range(24):
            out = model(encoder_outputs=hidden, attention_mask=mask, decoder_input_ids=last, use_cache=True,
                        cache=cache)
            cache = out.cache
            assert torch.equal(step(last, position), out.logits[:, -1]), position
            last = out.logits[:, -1].argmax(dim=-1, keepdim=True)


def test_marian_step_only_where_it_reproduces_the_forward():
    import torch
    from accelerate import cpu_offload

    from nlpfit.decoding import MarianStep, ModelStep, decoder_step, encode, generate

    ids = torch.randint(5, 500, (3, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    flex = _random_marian("flex_attention", d_model=64, heads=2, vocab=500)
    assert not MarianStep.applies(flex)  # its BlockMask is not a tensor of rows
    with torch.inference_mode():
        assert type(decoder_step(flex, encode(flex, ids, mask), mask, 4)) is ModelStep
    offloaded = _random_marian("sdpa", d_model=64, heads=2, vocab=500)
    with torch.inference_mode():
        expected = offloaded.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5)
    cpu_offload(offloaded, execution_device="cpu")  # weights loaded by hooks in each module's forward
    assert not MarianStep.applies(offloaded)
    with torch.inference_mode():
        assert torch.equal(generate(offloaded, ids, mask, max_new_tokens=5), expected)


def test_a_generate_replaced_on_the_model_is_called(tiny_models):
    """The server streams by replacing generate() on the loaded model: greedy search then goes through it."""
    import torch

    from nlpfit.decoding import generate

    task, model, tokenizer, _, raw, _ = _trained(tiny_models, "translation")
    enc = tokenizer(list(raw["source"][:3]), padding=True, return_tensors="pt")
    calls = []
    real = model.generate

    def wrapped(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    with torch.inference_mode():
        plain = generate(model, enc["input_ids"], enc["attention_mask"])
        model.generate = wrapped
        assert torch.equal(generate(model, enc["input_ids"], enc["attention_mask"]), plain)
    assert len(calls) == 1


def test_losses_at_labelled_positions_with_a_head_over_ngram_streams():
    """ProphetNet's head sees [batch, ngram, length, hidden]: the hook leaves it whole (also when the length
    equals the n-gram count, where a mask over [batch, length] would index the wrong axis)."""
    import torch
    from transformers import ProphetNetConfig, ProphetNetForConditionalGeneration

    from nlpfit.inference import summed_labelled_losses, summed_token_losses

    torch.manual_seed(0)
    model = ProphetNetForConditionalGeneration(ProphetNetConfig(
        vocab_size=48, hidden_size=32, encoder_ffn_dim=64, decoder_ffn_dim=64, num_encoder_layers=1,
        num_decoder_layers=1, num_encoder_attention_heads=2, num_decoder_attention_heads=2, max_position_embeddings=64,
        ngram=2, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)).eval()
    for length in (5, 2):
        labels = torch.randint(5, 48, (3, length))
        labels[1, length - 1:] = -100
        inputs = {"input_ids": torch.randint(5, 48, (3, 7)), "attention_mask": torch.ones(3, 7, dtype=torch.long),
                  "decoder_input_ids": model.prepare_decoder_input_ids_from_labels(labels=labels)}
        with torch.inference_mode():
            full = summed_token_losses(model(**inputs).logits, labels)
            assert torch.allclose(summed_labelled_losses(model, inputs, labels), full, rtol=1e-6, atol=1e-6)


# ---- sources of very different lengths: encoded and scored in groups -------------------------------------
def test_length_groups_follow_the_batching_rule():
    import torch

    from nlpfit.decoding import length_groups

    def mask(lengths, width=None, left=False):
        width = width or max(lengths)
        m = torch.zeros(len(lengths), width, dtype=torch.long)
        for i, n in enumerate(lengths):
            m[i, width - n:] = 1 if left else 0
            m[i, :n] = 0 if left else 1
        return m

    groups = length_groups(mask([40, 9, 38, 30, 8, 12, 29]))
    assert [(rows.tolist(), longest) for rows, longest in groups] == [([0, 2, 3], 40), ([6], 29), ([5, 1], 12), ([4], 8)]
    assert length_groups(mask([40, 39, 35, 31])) is None  # under a quarter of padding: one pass
    assert length_groups(mask([40, 9, 8], left=True)) is None  # left padding is not cut
    assert length_groups(mask([40])) is None and length_groups(mask([40, 9]), max_padding=None) is None


def _mixed_lengths(tiny_models):
    """The trained summarization model and a batch of its sources cut to very different lengths."""
    from torch.utils.data import DataLoader

    from nlpfit.engines.loop import make_collate

    task, model, tokenizer, features, raw, _ = _trained(tiny_models, "summarization")
    model.eval()
    rows = [dict(features[i]) for i in range(12)]
    for i, row in enumerate(rows):  # keep 3 to all of the tokens, the end of sequence last
        keep = max(3, len(row["input_ids"]) * (i % 4 + 1) // 8)
        row["input_ids"] = row["input_ids"][:keep - 1] + row["input_ids"][-1:]
        row["attention_mask"] = row["attention_mask"][:keep]
    collate = make_collate(task.collator(tokenizer, model), model)
    return task, model, next(iter(DataLoader(rows, batch_size=12, collate_fn=collate)))


def test_grouped_encoding_puts_each_row_back(tiny_models):
    import torch

    from nlpfit.decoding import encode, length_groups

    task, model, batch = _mixed_lengths(tiny_models)
    mask = batch["attention_mask"]
    groups = length_groups(mask)
    assert groups is not None and len(groups) > 1
    with torch.inference_mode():
        whole = encode(model, batch["input_ids"], mask).last_hidden_state
        grouped = encode(model, batch["input_ids"], mask, groups).last_hidden_state
    real = mask.bool()
    assert torch.allclose(grouped[real], whole[real], atol=1e-5)
    for rows, longest in groups:  # past a group's longest source: zeros, hidden by the encoder mask
        assert bool((grouped[rows, longest:] == 0).all()) and bool((grouped[rows, :longest] != 0).any(dim=-1).all())


def test_eval_step_on_sources_of_very_different_lengths(tiny_models):
    """Grouped encoding and scoring: the loss of the plain full forward pass; the ids of generate() on the
    batch (rows whose states differ only by rounding: near-ties aside, the same tokens)."""
    import torch

    task, model, batch = _mixed_lengths(tiny_models)
    with torch.inference_mode():
        ours = task.eval_step(model, batch)
        loss, generated = _plain_eval(task, model, batch)
    assert torch.allclose(ours["loss_sum"], loss, rtol=1e-5, atol=1e-4)
    assert ours["generated"].shape[0] == generated.shape[0]
    same = sum(torch.equal(a[a != 0], b[b != 0]) for a, b in zip(ours["generated"], generated))
    assert same >= len(generated) - 1, (same, len(generated))


def test_predict_beyond_the_decoders_positions_is_an_option_error(tiny_models, run_cli):
    """A generation longer than the decoder embeds positions for would fail in the middle of decoding:
    it is refused up front, naming the option and the limit."""
    from transformers import AutoConfig

    out = tiny_models("translation")
    positions = AutoConfig.from_pretrained(str(out)).max_position_embeddings
    result = run_cli("predict", out, "the red cat is here .", "--max-new-tokens", positions + 1)
    assert result.code == 2 and "Traceback" not in result.err
    assert f"--max-new-tokens {positions + 1}: the model's decoder has {positions} positions" in result.err
    assert run_cli("predict", out, "the red cat is here .", "--max-new-tokens", positions).code == 0
