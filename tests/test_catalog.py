"""The catalogue of the course's datasets: what `--data conll2003` and the other chapter-7 names
resolve to, label names restored, script-only hub datasets and the withdrawn amazon_reviews_multi
refused in one line.  `datasets.load_dataset` is replaced by a recording fake that returns small
in-memory DatasetDicts with the real schemas (no network here)."""

import json

import pytest

from conftest import make_ner_sentences

PARQUET = "hf://datasets/{}@refs%2Fconvert%2Fparquet/{}/{}/*.parquet"


def _one_error_line(res, *fragments):
    assert res.code == 2, (res.code, res.err)
    assert "Traceback" not in res.err
    lines = [l for l in res.err.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1, res.err
    for frag in fragments:
        assert frag in lines[0], lines[0]
    return lines[0]


def conll_split(n, seed, class_labels: bool):
    """conll2003's columns; tags as ClassLabel ids (the script's schema) or as plain ints (what a
    Parquet file without the features metadata holds)."""
    import datasets

    from nlpfit.data.catalog import CONLL2003_CHUNK, CONLL2003_NER, CONLL2003_POS

    rows = {"id": [], "tokens": [], "pos_tags": [], "chunk_tags": [], "ner_tags": []}
    for i, sent in enumerate(make_ner_sentences(n, seed=seed)):
        rows["id"].append(str(i))
        rows["tokens"].append([w for w, _ in sent])
        rows["ner_tags"].append([CONLL2003_NER.index(t) for _, t in sent])
        rows["pos_tags"].append([CONLL2003_POS.index("." if w == "." else "NNP" if t != "O" else "NN")
                                 for w, t in sent])
        rows["chunk_tags"].append([CONLL2003_CHUNK.index("B-NP" if t.startswith("B") else "I-NP" if t != "O"
                                                         else "O") for _, t in sent])
    if class_labels:
        tag = {"ner_tags": CONLL2003_NER, "pos_tags": CONLL2003_POS, "chunk_tags": CONLL2003_CHUNK}
        features = datasets.Features({
            "id": datasets.Value("string"), "tokens": datasets.Sequence(datasets.Value("string")),
            **{col: datasets.Sequence(datasets.ClassLabel(names=names)) for col, names in tag.items()}})
    else:
        features = datasets.Features({
            "id": datasets.Value("string"), "tokens": datasets.Sequence(datasets.Value("string")),
            **{col: datasets.Sequence(datasets.Value("int64")) for col in ("pos_tags", "chunk_tags", "ner_tags")}})
    return datasets.Dataset.from_dict(rows, features=features)


@pytest.fixture
def fake_hub(monkeypatch):
    """Replace `datasets.load_dataset`; `fake_hub.returns` is a callable (path, name, kwargs) ->
    DatasetDict or an exception to raise; every call is recorded in `fake_hub.calls`."""
    import datasets

    class Fake:
        calls: list = []
        returns = None

    fake = Fake()
    fake.calls = []

    def load_dataset(path, name=None, **kwargs):
        fake.calls.append((path, name, kwargs))
        got = fake.returns(path, name, kwargs)
        if isinstance(got, Exception):
            raise got
        return got

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return fake


def conll_dsd(class_labels=False):
    import datasets

    return datasets.DatasetDict({"train": conll_split(40, 1, class_labels), "validation": conll_split(8, 2, class_labels),
                                 "test": conll_split(8, 3, class_labels)})


# ---- resolution (pure) --------------------------------------------------------------------------------
def test_resolved_sources_without_network():
    from nlpfit.data.catalog import CATALOG, resolved_source

    conll = resolved_source("conll2003")
    assert conll["source"] == "eriktks/conll2003" and conll["kind"] == "parquet-conversion"
    assert conll["revision"] == "refs/convert/parquet" and conll["config"] == "conll2003"
    assert conll["data_files"] == {s: PARQUET.format("eriktks/conll2003", "conll2003", s)
                                   for s in ("train", "validation", "test")}
    assert conll["label_columns"] == ["ner_tags", "pos_tags", "chunk_tags"]
    assert resolved_source("eriktks/conll2003") == {**conll, "spec": "eriktks/conll2003"}  # an alias
    assert resolved_source("CoNLL2003")["name"] == "conll2003"
    kde4 = resolved_source("kde4")
    assert kde4["source"] == "Helsinki-NLP/kde4" and kde4["config"] == "en-fr"
    assert kde4["data_files"] == {"train": PARQUET.format("Helsinki-NLP/kde4", "en-fr", "train")}
    assert resolved_source("wnut_17")["data_files"]["validation"] == PARQUET.format("leondz/wnut_17", "wnut_17",
                                                                                    "validation")
    imdb = resolved_source("imdb")
    assert imdb["source"] == "stanfordnlp/imdb" and imdb["kind"] == "hub" and "data_files" not in imdb
    assert imdb["splits"] == ["train", "test", "unsupervised"]
    assert resolved_source("squad_v2")["source"] == "rajpurkar/squad_v2"
    assert resolved_source("codeparrot-ds-valid")["splits"] == ["validation"]
    amazon = resolved_source("amazon_reviews_multi", "es")
    assert amazon["source"] is None and "mteb/AmazonReviewsClassification" in amazon["unavailable"]
    assert resolved_source("someone/my-data") is None
    assert resolved_source("someone/old@refs/convert/parquet", "cfg") == {
        "name": None, "spec": "someone/old@refs/convert/parquet", "source": "someone/old",
        "revision": "refs/convert/parquet", "config": "cfg"}
    json.dumps([resolved_source(e.name) for e in CATALOG])  # run.json can store every one
    assert {e.name for e in CATALOG} == {"conll2003", "wnut_17", "imdb", "kde4", "amazon_reviews_multi", "squad",
                                         "squad_v2", "codeparrot-ds-train", "codeparrot-ds-valid"}


# ---- loading -----------------------------------------------------------------------------------------
def test_parquet_conversion_gets_label_names_back(fake_hub, capsys):
    import datasets

    from nlpfit.data.catalog import CONLL2003_CHUNK, CONLL2003_NER, CONLL2003_POS, load_hub_dataset

    fake_hub.returns = lambda path, name, kw: conll_dsd(class_labels=False)
    dsd = load_hub_dataset("conll2003", None)
    assert fake_hub.calls == [("parquet", None, {"data_files": {
        s: PARQUET.format("eriktks/conll2003", "conll2003", s) for s in ("train", "validation", "test")}})]
    assert isinstance(dsd, datasets.DatasetDict) and set(dsd) == {"train", "validation", "test"}
    for ds in dsd.values():
        assert ds.features["ner_tags"].feature.names == CONLL2003_NER
        assert ds.features["pos_tags"].feature.names == CONLL2003_POS
        assert ds.features["chunk_tags"].feature.names == CONLL2003_CHUNK
    assert "--data conll2003: loading eriktks/conll2003 (the Hub's Parquet conversion" in capsys.readouterr().err
    row = dsd["train"][0]
    assert [CONLL2003_NER[i] for i in row["ner_tags"]][0] in CONLL2003_NER

    # ClassLabel features already there are kept (the conversion usually carries them)
    fake_hub.returns = lambda path, name, kw: conll_dsd(class_labels=True)
    dsd = load_hub_dataset("eriktks/conll2003", None)
    assert dsd["test"].features["ner_tags"].feature.names == CONLL2003_NER

    # ids the names cannot cover: one line, not a cast traceback
    from nlpfit import NlpfitError

    bad = conll_dsd()
    bad["train"] = bad["train"].map(lambda ex: {"ner_tags": [42] * len(ex["ner_tags"])})
    fake_hub.returns = lambda path, name, kw: bad
    with pytest.raises(NlpfitError, match="ner_tags does not fit the 9 label names"):
        load_hub_dataset("conll2003", None)


def test_every_source_is_requested_as_catalogued(fake_hub):
    import datasets

    from nlpfit.data.catalog import load_hub_dataset
    from nlpfit.data.code import hub_splits

    translation = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"id": ["0"], "translation": [{"en": "Open file", "fr": "Ouvrir le fichier"}]})})
    fake_hub.returns = lambda path, name, kw: translation
    assert load_hub_dataset("kde4", None)["train"][0]["translation"] == {"en": "Open file", "fr": "Ouvrir le fichier"}
    assert fake_hub.calls[-1] == ("parquet", None, {"data_files": {
        "train": PARQUET.format("Helsinki-NLP/kde4", "en-fr", "train")}})

    imdb = datasets.DatasetDict({s: datasets.Dataset.from_dict({"text": ["a"], "label": [1]}) for s in
                                 ("train", "test", "unsupervised")})
    fake_hub.returns = lambda path, name, kw: imdb
    got = load_hub_dataset("imdb", None)
    assert fake_hub.calls[-1] == ("stanfordnlp/imdb", "plain_text", {})
    assert got["train"].features["label"].names == ["neg", "pos"]  # plain ints get the card's names

    fake_hub.returns = lambda path, name, kw: datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"id": ["x"]})})
    load_hub_dataset("squad", None)
    assert fake_hub.calls[-1] == ("rajpurkar/squad", None, {})
    load_hub_dataset("rajpurkar/squad_v2", None)
    assert fake_hub.calls[-1] == ("rajpurkar/squad_v2", None, {})
    load_hub_dataset("someone/ready-made", "cfg")  # not catalogued: passed as it is
    assert fake_hub.calls[-1] == ("someone/ready-made", "cfg", {})
    load_hub_dataset("someone/old@refs/convert/parquet", "cfg")  # a conversion's configuration is its folder
    assert fake_hub.calls[-1] == ("someone/old", None, {"revision": "refs/convert/parquet", "data_dir": "cfg"})

    stream = datasets.IterableDatasetDict({"train": datasets.Dataset.from_dict(
        {"repo_name": ["r"], "path": ["a.py"], "content": ["import pandas"]}).to_iterable_dataset()})
    fake_hub.returns = lambda path, name, kw: stream
    splits = hub_splits("codeparrot-ds-train", None)  # the clm path streams through the same resolver
    assert fake_hub.calls[-1] == ("huggingface-course/codeparrot-ds-train", None, {"streaming": True})
    assert list(splits) == ["train"] and next(iter(splits["train"]))["content"] == "import pandas"


def test_train_ner_on_conll2003_end_to_end(fake_hub, tiny_bert, tmp_path, run_cli):
    from nlpfit.data.catalog import CONLL2003_NER

    fake_hub.returns = lambda path, name, kw: conll_dsd(class_labels=False)
    out = tmp_path / "conll"
    res = run_cli("train", "ner", "--data", "conll2003", "--model", tiny_bert, "--output", out,
                  "--max-steps", 2, "--epochs", 1)
    assert res.code == 0, res.err
    assert fake_hub.calls[0][0] == "parquet"
    assert "loading eriktks/conll2003" in res.err
    config = json.loads((out / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(CONLL2003_NER))] == CONLL2003_NER  # MISC kept
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["data"] == ["conll2003"]
    assert run["data_sources"][0]["source"] == "eriktks/conll2003"  # the run names what it loaded


def test_script_only_dataset_is_one_line(fake_hub, tiny_bert, tmp_path, run_cli):
    fake_hub.returns = lambda path, name, kw: RuntimeError(
        "Dataset scripts are no longer supported, but found old_ner.py")
    out = tmp_path / "out"
    res = run_cli("train", "ner", "--data", "someone/old_ner", "--model", tiny_bert, "--output", out,
                  "--max-steps", 2, "--epochs", 1)
    line = _one_error_line(res, "--data someone/old_ner", "loading script (old_ner.py)", "no longer runs",
                           "--data someone/old_ner@refs/convert/parquet", "--data-config", "convert it")
    assert "cannot load" not in line
    assert not out.exists()  # nothing written

    # other failures keep the offline message
    fake_hub.returns = lambda path, name, kw: ConnectionError("Couldn't reach 'someone/x' on the Hub")
    res = run_cli("train", "ner", "--data", "someone/x", "--model", tiny_bert, "--output", out, "--max-steps", 1)
    _one_error_line(res, "--data someone/x: cannot load this hub dataset (no network? HF_HUB_OFFLINE is set)",
                    "Couldn't reach")
    res = run_cli("train", "ner", "--data", "conll2003", "--model", tiny_bert, "--output", out, "--max-steps", 1)
    _one_error_line(res, "--data conll2003: cannot load this hub dataset", "[resolved to eriktks/conll2003]")
    assert not out.exists()


def test_amazon_reviews_multi_names_the_alternative(fake_hub, tmp_path, run_cli):
    fake_hub.returns = lambda path, name, kw: pytest.fail("nothing should be downloaded")
    out = tmp_path / "sum"
    res = run_cli("train", "summarization", "--data", "amazon_reviews_multi", "--data-config", "es",
                  "--output", out, "--max-steps", 1)
    _one_error_line(res, "--data amazon_reviews_multi: no loadable source", "withdrawn",
                    "mteb/AmazonReviewsClassification", "no review titles")
    assert fake_hub.calls == [] and not out.exists()


def test_datasets_command_lists_every_entry(run_cli):
    from nlpfit.data.catalog import CATALOG

    res = run_cli("datasets")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0].split() == ["name", "task", "source", "splits"]
    for entry in CATALOG:
        row = next(l for l in lines if l.split()[:1] == [entry.name])
        if entry.source:
            assert entry.source in row and ", ".join(entry.splits) in row
        else:
            assert "withdrawn" in row
    assert "eriktks/conll2003 @ refs/convert/parquet (conll2003)" in res.out
    assert "amazon_reviews_multi: no loadable source" in res.out
