"""Config files: `nlpfit train --config run.yaml`, flags over the file, OUT/config.yaml reproducing
its run, and problems named by file, line and key."""

import json

import pytest

from nlpfit.config_file import read, run_config, train_fields


def _metrics(out):
    m = json.loads((out / "metrics.json").read_text())
    for key in ("runtime_s", "samples_per_second", "tokens_per_second"):
        m["train"].pop(key)
    return m


def test_out_config_yaml_trains_the_same_run_again(tiny_bert, ner_data, tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run_cli("train", "ner", "--data", ner_data, "--model", tiny_bert, "--output", "OUT", "--max-steps", 3,
                  "--eval-steps", 2, "--eval-batch-size", 16, "--no-label-all-subtokens")
    assert res.code == 0, res.err
    saved = (tmp_path / "OUT" / "config.yaml").read_text()
    assert "max_steps: 3" in saved and "label_all_subtokens: false" in saved and "overwrite" not in saved
    # the file names the task: no TASK needed; the run is the same, metric for metric
    res = run_cli("train", "--config", "OUT/config.yaml", "--output", "OUT2")
    assert res.code == 0, res.err
    assert _metrics(tmp_path / "OUT2") == _metrics(tmp_path / "OUT")
    assert (tmp_path / "OUT2" / "config.yaml").read_text() == saved.replace("output: OUT\n", "output: OUT2\n")
    # a flag given on the command line overrides the file; the rest comes from it
    res = run_cli("train", "ner", "--config", "OUT/config.yaml", "--output", "OUT3", "--lr", "1e-3", "--max-steps", 1)
    assert res.code == 0, res.err
    third = (tmp_path / "OUT3" / "config.yaml").read_text()
    assert "lr: 0.001\n" in third and "max_steps: 1\n" in third and "label_all_subtokens: false" in third
    assert json.loads((tmp_path / "OUT3" / "run.json").read_text())["config"]["eval_steps"] == 2


BAD = [  # (file text, fragments of the one error line; {f} is the file)
    ("task: ner\nbatchsize: 3\n", "{f}:2: unknown key 'batchsize' (did you mean batch_size?)"),
    ("task: ner\n\nlr: fast\n", "{f}:3: lr fast: expected a number"),
    ("task: ner\nbatch-size: 0\n", "{f}:2: batch_size 0: must be at least 1"),
    ("task: ner\nwarmup_ratio: 2\n", "{f}:2: warmup_ratio 2.0: must be at least 0 and at most 1"),
    ("task: ner\nengine: bogus\n", "{f}:2: engine bogus: must be one of accelerate, trainer"),
    ("task: ner\ngroup_by_length: maybe\n", "{f}:2: group_by_length maybe: expected true or false"),
    ("task: ner\nmax_length: -1\n", "{f}:2: max_length -1: must be at least 0"),
    ("task: ner\nlabel_column: [a, b]\n", "{f}:2: label_column"),
    ("task: nerx\n", "{f}:1: task: unknown task 'nerx'"),
    ("lr: 0.1\n", "{f}: no `task:` key"),
    ("task: ner\nlr: [1\n", "not valid YAML"),
    ("- task: ner\n", "{f}:1: expected a mapping of option names to values"),
    ("task: ner\nlr: 1e-4\nlr: 2e-4\n", "{f}:3: lr is given twice (also on line 2)"),
    ("", "{f}: empty file"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m.split(": ", 1)[-1][:40] for _, m in BAD])
def test_a_bad_file_is_one_line_with_file_line_and_key(text, message, tmp_path, run_cli, monkeypatch):
    monkeypatch.setattr("nlpfit.run.resolve", lambda cfg: (_ for _ in ()).throw(AssertionError("loaded")))
    f = tmp_path / "run.yaml"
    f.write_text(text)
    res = run_cli("train", "--config", f, "--output", tmp_path / "OUT")
    assert res.code == 2 and "Traceback" not in res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.err
    assert message.format(f=f) in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]


def test_file_and_command_disagree_or_the_file_is_missing(tmp_path, run_cli):
    f = tmp_path / "run.yaml"
    f.write_text("task: ner\n")
    res = run_cli("train", "pos", "--config", f, "--output", tmp_path / "OUT")
    assert res.code == 2 and f"{f}:1: task: ner, but the command is `nlpfit train pos`" in res.err
    res = run_cli("train", "--config", tmp_path / "nope.yaml")
    assert res.code == 2 and res.err.strip() == f"error: --config {tmp_path / 'nope.yaml'}: no such file"
    # flags are checked as flags even when a file is given
    res = run_cli("train", "--config", f, "--output", tmp_path / "OUT", "--lr", -1)
    assert res.code == 2 and res.err.strip() == "error: --lr -1.0: must be above 0"


def test_values_are_typed_as_their_options_declare(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("task: translation\nlr: 1e-5\nepochs: 2\nsource_lang: no\ndata: one/file.po\n"
                 "filter: {language: [en, fr]}\nmin_words: {source: 3}\nsweep: {trials: 3}\ndata_config: ~\n")
    cf = read(str(f))
    values, lines = cf.values(train_fields(cf.task))
    assert values["lr"] == 1e-5 and isinstance(values["epochs"], float)  # YAML 1.1 reads 1e-5 as text
    assert values["source_lang"] == "no"  # not YAML's false
    assert values["data"] == ["one/file.po"] and values["data_config"] is None
    assert values["filter"] == ["language=en,fr"] and values["min_words"] == ["source=3"]
    assert "sweep" not in values and lines["source_lang"] == 4
    cfg = run_config("translation", values)
    assert cfg.data == ["one/file.po"] and cfg.task_options["source_lang"] == "no"
    assert cfg.batch_size == 32  # the task's default where the file says nothing
