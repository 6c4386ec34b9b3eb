"""End to end on a tiny BERT: train a few steps -> save -> evaluate -> predict -> transformers.pipeline."""

import json

import pytest


@pytest.mark.parametrize("engine", ["accelerate", "trainer"])
def test_train_evaluate_predict(engine, tiny_bert, ner_data, tmp_path, run_cli):
    out = tmp_path / f"out-{engine}"
    res = run_cli("train", "ner", "--data", ner_data, "--model", tiny_bert, "--output", out, "--engine", engine,
                  "--epochs", 2, "--batch-size", 8, "--lr", 3e-3)
    assert res.code == 0, res.err
    for name in ("config.json", "model.safetensors", "tokenizer.json", "metrics.json", "run.json", "README.md"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"train", "eval", "history", "test"}
    assert [h["epoch"] for h in metrics["history"] if "train_loss" in h][-1] == pytest.approx(2)
    assert metrics["eval"]["f1"] > 0.5  # templated entities are easy
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"]["0"] == "O" and "B-PER" in config["label2id"]

    res = run_cli("evaluate", out, "--split", "validation", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["f1"] == pytest.approx(metrics["eval"]["f1"])

    res = run_cli("predict", out, "Alice moved to Paris last year .")
    row = json.loads(res.out.splitlines()[0])
    assert row["text"].startswith("Alice")
    for ent in row["entities"]:
        assert row["text"][ent["start"]:ent["end"]].lower() == ent["word"].replace(" ##", "").replace("##", "").lower() or ent["word"]

    from transformers import pipeline

    pipe = pipeline("token-classification", model=str(out), aggregation_strategy="simple")
    assert isinstance(pipe("Bob works for Google in Berlin ."), list)


def test_predict_input_file_aggregations_and_offsets(tiny_bert, ner_data, tmp_path, run_cli):
    out = tmp_path / "out"
    assert run_cli("train", "ner", "--data", ner_data, "--model", tiny_bert, "--output", out, "--epochs", 3,
                   "--batch-size", 8, "--lr", 3e-3).code == 0
    texts = ["  Carol   moved to   Lima last year .", "Grace works for Mozilla in Oslo ."]
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(json.dumps({"text": t}) for t in texts))
    res = run_cli("predict", out, "--input", inp, "--aggregation", "first")  # word-level entities
    rows = [json.loads(l) for l in res.out.splitlines()]
    assert [r["text"] for r in rows] == texts
    found = {(r["text"][e["start"]:e["end"]], e["entity_group"]) for r in rows for e in r["entities"]}
    assert ("Lima", "LOC") in found and ("Oslo", "LOC") in found  # offsets point into the original text
    for r in rows:
        for e in r["entities"]:
            assert set(e) == {"entity_group", "score", "word", "start", "end"} and 0 < e["score"] <= 1
    res = run_cli("predict", out, "--aggregation", "none", texts[1])
    tags = {e["entity_group"] for e in json.loads(res.out)["entities"]}
    assert tags and tags <= {"B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"}

    # batched prediction gives exactly the pipeline's entities, for every aggregation strategy, both
    # for texts with entities and for texts where "O" wins every token (those skip post-processing)
    from transformers import pipeline

    from conftest import make_ner_sentences
    from nlpfit.run import load_run
    from nlpfit.tasks import make_task
    from nlpfit.run import predict_options
    from nlpfit.tasks.token_classification import _entity, batched_logits, load_pipeline

    many = [" ".join(w for w, _ in s) for s in make_ner_sentences(30, seed=11)]
    many += ["moved to last year .", "today", "on Monday .", "is in", "flew from", "  to   last year  ."]
    task = make_task(load_run(str(out))[0])
    ours_pipe = load_pipeline(str(out))
    for agg in ("simple", "first", "average", "max", "none"):
        pipe = pipeline("token-classification", model=str(out), aggregation_strategy=agg)
        ours = [r["entities"] for r in task.predict_with(ours_pipe, many, predict_options(task, {"aggregation": agg, "batch_size": 4}))]  # several batches
        plain = [[_entity(e) for e in pipe(t)] for t in many]
        assert ours == plain, agg
        assert any(ours) and not all(ours)  # both kinds of text were seen
    quiet = [o["quiet"] for o in batched_logits(ours_pipe.model, ours_pipe.tokenizer, many, 4, quiet_label=0)]
    assert any(quiet)  # some texts did skip post-processing


def test_pos_on_conll2003_layout(tiny_bert, tmp_path, run_cli):
    from conftest import make_ner_sentences, write_conll

    folder = tmp_path / "c"
    folder.mkdir()
    write_conll(folder / "train.txt", make_ner_sentences(40, seed=5), columns=4)
    write_conll(folder / "validation.txt", make_ner_sentences(10, seed=6), columns=4)
    out = tmp_path / "pos"
    res = run_cli("train", "pos", "--data", folder, "--model", tiny_bert, "--output", out, "--max-steps", 2)
    assert res.code == 0, res.err
    labels = json.loads((out / "config.json").read_text())["label2id"]
    assert set(labels) == {"NN"}  # the POS column, not the NER one
    assert json.loads((out / "run.json").read_text())["config"]["task_options"]["label_column"] == "pos_tags"

    # no "O" label: every token is a prediction, exactly as the pipeline gives it
    from transformers import pipeline

    from nlpfit.run import load_run
    from nlpfit.tasks import make_task
    from nlpfit.run import predict_options
    from nlpfit.tasks.token_classification import _entity, load_pipeline

    texts = ["the cat sat .", "Alice moved to Paris"]
    task = make_task(load_run(str(out))[0])
    ours = [r["entities"] for r in task.predict_with(load_pipeline(str(out)), texts,
                                                     predict_options(task, {"aggregation": "none"}))]
    pipe = pipeline("token-classification", model=str(out))
    assert ours == [[_entity(e) for e in pipe(t)] for t in texts] and all(ours)


def test_offline_hub_data_and_push_fail_clearly(tiny_bert, ner_data, tmp_path, run_cli):
    res = run_cli("train", "ner", "--data", "conll2003", "--model", tiny_bert, "--output", tmp_path / "x")
    assert res.code == 2 and "--data conll2003: cannot load this hub dataset" in res.err
    out = tmp_path / "pushed"
    res = run_cli("train", "ner", "--data", ner_data, "--model", tiny_bert, "--output", out, "--max-steps", 1,
                  "--push-to-hub", "--hub-model-id", "someone/model")
    assert res.code == 2 and "--push-to-hub" in res.err and "is saved" in res.err
    assert (out / "model.safetensors").is_file()


def test_hub_dataset_with_class_label_features(tiny_bert, tmp_path, run_cli, monkeypatch):
    """The hub path (`--data conll2003`) with conll2003's schema: tag columns are sequences of
    ClassLabel ids; label names and their order come from the features. `datasets.load_dataset` is
    replaced by a local DatasetDict of that schema (no network here)."""
    import datasets

    from conftest import make_ner_sentences

    ner_names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]  # conll2003's order
    pos_names = ['"', "''", "#", "NN", "NNP", "VB", "IN", "."]
    features = datasets.Features({
        "id": datasets.Value("string"), "tokens": datasets.Sequence(datasets.Value("string")),
        "pos_tags": datasets.Sequence(datasets.ClassLabel(names=pos_names)),
        "ner_tags": datasets.Sequence(datasets.ClassLabel(names=ner_names))})

    def split(n, seed):
        rows = {"id": [], "tokens": [], "pos_tags": [], "ner_tags": []}
        for i, sent in enumerate(make_ner_sentences(n, seed=seed)):
            rows["id"].append(str(i))
            rows["tokens"].append([w for w, _ in sent])
            rows["ner_tags"].append([ner_names.index(t) for _, t in sent])
            rows["pos_tags"].append([pos_names.index("." if w == "." else "NNP" if t != "O" else "NN")
                                     for w, t in sent])
        return datasets.Dataset.from_dict(rows, features=features)

    calls = []

    def fake_load_dataset(path, name=None, *args, **kwargs):
        calls.append((path, name))
        return datasets.DatasetDict({"train": split(60, 1), "validation": split(12, 2), "test": split(12, 3)})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    out = tmp_path / "hub-ner"
    res = run_cli("train", "ner", "--data", "conll2003", "--model", tiny_bert, "--output", out, "--max-steps", 3)
    assert res.code == 0, res.err
    assert calls[0] == ("parquet", None)  # conll2003 is read from its Parquet conversion (data/catalog.py)
    config = json.loads((out / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(ner_names))] == ner_names  # MISC kept, unseen or not
    res = run_cli("evaluate", out, "--split", "test", "--json")  # reloads the hub data named in run.json
    assert res.code == 0, res.err
    assert 0 <= json.loads(res.out)["f1"] <= 1

    out = tmp_path / "hub-pos"
    res = run_cli("train", "pos", "--data", "conll2003", "--model", tiny_bert, "--output", out, "--max-steps", 2)
    assert res.code == 0, res.err
    config = json.loads((out / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(pos_names))] == pos_names
    assert "not in BIO form" not in res.err  # POS tags are scored per tag without a warning
