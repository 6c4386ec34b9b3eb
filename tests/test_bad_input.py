"""Bad input: one clear line naming the file and line or the option, exit status 2, no traceback,
nothing half-written."""

import json

import pytest

from conftest import make_ner_sentences, write_conll


def _fails(res, *fragments):
    assert res.code == 2, (res.code, res.err)
    assert "Traceback" not in res.err
    line = [l for l in res.err.strip().splitlines() if l.startswith("error:")]
    assert len(line) == 1, res.err
    for frag in fragments:
        assert frag in line[0], line[0]
    return line[0]


@pytest.fixture
def train(tiny_bert, tmp_path, run_cli):
    def go(data, *extra):
        out = tmp_path / "out"
        res = run_cli("train", "ner", "--data", data, "--model", tiny_bert, "--output", out, "--max-steps", 1, *extra)
        if res.code:
            assert not out.exists()  # nothing half-written
        return res
    return go


def test_empty_file(train, tmp_path):
    f = tmp_path / "empty.conll"
    f.write_text("")
    _fails(train(f), str(f), "empty")


def test_inconsistent_columns(train, tmp_path):
    f = tmp_path / "bad.conll"
    f.write_text("EU B-ORG\nrejects O\n\nGerman JJ B-MISC\n")
    _fails(train(f), f"{f}:4", "3 columns")


def test_non_utf8(train, tmp_path):
    f = tmp_path / "latin1.conll"
    f.write_bytes("Paris B-LOC\n\nZ\xfcrich B-LOC\n".encode("latin-1"))
    _fails(train(f), f"{f}:3", "not UTF-8")


def test_missing_tag_column_and_unknown_label_column(train, tmp_path):
    f = tmp_path / "train.jsonl"
    f.write_text("\n".join(json.dumps({"tokens": ["a", "b"], "pos_tags": ["DT", "NN"]}) for _ in range(5)))
    _fails(train(f), "--label-column ner_tags", "pos_tags")
    _fails(train(f, "--label-column", "chunk_tags"), "--label-column chunk_tags")


def test_missing_tokens_column(train, tmp_path):
    f = tmp_path / "train.jsonl"
    f.write_text("\n".join(json.dumps({"words": ["a"], "ner_tags": ["O"]}) for _ in range(5)))
    _fails(train(f), "missing column tokens", "--tokens-column")


def test_invalid_json_line(train, tmp_path):
    f = tmp_path / "train.jsonl"
    f.write_text(json.dumps({"tokens": ["a"], "ner_tags": ["O"]}) + "\n{oops\n")
    _fails(train(f), f"{f}:2", "invalid JSON")


def test_tags_unseen_in_train(train, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    write_conll(d / "train.conll", make_ner_sentences(20))
    (d / "dev.conll").write_text("Tesla\tB-CAR\nis\tO\nnew\tB-THING\n")
    _fails(train(d), "validation split", "B-CAR", "B-THING")


def test_model_without_tokenizer_or_of_the_wrong_kind(tiny_bert, ner_data, tmp_path, run_cli):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_bert, bare)
    for f in bare.glob("tokenizer*"):
        f.unlink()
    res = run_cli("train", "ner", "--data", ner_data, "--model", bare, "--output", tmp_path / "o")
    _fails(res, f"--model {bare}", "no tokenizer")
    vit = tmp_path / "vit"
    shutil.copytree(tiny_bert, vit)
    cfg = json.loads((vit / "config.json").read_text())
    cfg.update(model_type="vit", architectures=["ViTModel"])
    (vit / "config.json").write_text(json.dumps(cfg))
    res = run_cli("train", "ner", "--data", ner_data, "--model", vit, "--output", tmp_path / "o")
    _fails(res, f"--model {vit}", "token-classification")
    _fails(run_cli("train", "ner", "--data", ner_data, "--model", tmp_path / "nope", "--output", tmp_path / "o"),
           "--model", "no such folder")


def test_non_bio_tags_warn(train, tmp_path):
    f = tmp_path / "train.conll"
    f.write_text("\n\n".join("Paris\tLOC\nis\tO\nnice\tO" for _ in range(12)))
    res = train(f)
    assert res.code == 0, res.err
    assert "warning: tags are not in BIO form" in res.err


def test_existing_output_is_kept(tiny_bert, ner_data, tmp_path, run_cli):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    res = run_cli("train", "ner", "--data", ner_data, "--model", tiny_bert, "--output", out, "--max-steps", 1)
    _fails(res, "--output", "--overwrite")
    assert (out / "precious.txt").read_text() == "keep me"


def test_unknown_split_and_not_a_model(tiny_bert, ner_data, tmp_path, run_cli):
    out = tmp_path / "out"
    assert run_cli("train", "ner", "--data", ner_data, "--model", tiny_bert, "--output", out, "--max-steps", 1).code == 0
    _fails(run_cli("evaluate", out, "--split", "dev2"), "--split dev2", "validation")
    _fails(run_cli("evaluate", tmp_path), "not an nlpfit model folder")
    _fails(run_cli("predict", out, "--input", tmp_path / "missing.txt"), "--input")
    _fails(run_cli("train", "ner", "--data", tmp_path / "nowhere.conll", "--model", tiny_bert, "--output", out,
                   "--overwrite"), "no such file")


def test_crash_leaves_no_half_model(tiny_bert, ner_data, tmp_path, run_cli, monkeypatch):
    import nlpfit.engines.accelerate as eng

    def boom(*a, **k):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(eng, "save_checkpoint", boom)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        run_cli("train", "ner", "--data", ner_data, "--model", tiny_bert, "--output", out, "--epochs", 2)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ner"]  # no checkpoint was saved: no hidden folder


def test_crash_after_a_checkpoint_keeps_only_the_checkpoints(tiny_bert, tmp_path, run_cli, monkeypatch):
    import nlpfit.engines.accelerate as eng

    data = tmp_path / "train.conll"
    write_conll(data, make_ner_sentences(24, seed=4))
    original = eng.save_checkpoint

    def save_then_crash(*a, **k):
        original(*a, **k)
        raise RuntimeError("simulated crash after the first epoch's checkpoint")

    monkeypatch.setattr(eng, "save_checkpoint", save_then_crash)
    out = tmp_path / "out"
    args = ["train", "ner", "--data", data, "--model", tiny_bert, "--output", out, "--epochs", 2, "--batch-size", 8]
    with pytest.raises(RuntimeError):
        run_cli(*args)
    work = tmp_path / ".out.nlpfit-tmp"
    assert not out.exists() and [p.name for p in work.iterdir()] == ["checkpoints"]  # no half-written final/
    assert [p.name for p in (work / "checkpoints").iterdir()] == ["checkpoint-3"]
    monkeypatch.undo()
    res = run_cli(*args, "--resume")
    assert res.code == 0, res.err
    assert "resuming from checkpoint-3" in res.err and (out / "model.safetensors").is_file() and not work.exists()
