"""The Python API: nlpfit.train / evaluate / predict, the same names and checks as the flags, errors
raised as NlpfitError (never an exit)."""

import json

import pytest

import nlpfit


def test_the_readme_notebook_example(tiny_bert, ner_data, tmp_path):
    # the calls of the README's Python section, on a tiny model
    run = nlpfit.train("ner", data=str(ner_data), model=str(tiny_bert), output=str(tmp_path / "runs" / "ner"),
                       max_steps=3, eval_batch_size=16)
    assert run.output == tmp_path / "runs" / "ner" and (run.output / "config.yaml").is_file()
    assert run.metrics == json.loads((run.output / "metrics.json").read_text())
    metrics, output = run  # a named tuple
    assert 0.0 <= metrics["eval"]["f1"] <= 1.0 and metrics["train"]["steps"] == 3

    test = nlpfit.evaluate(run.output, split="test")
    assert test["f1"] == pytest.approx(metrics["test"]["f1"])  # the run scored the same test split

    rows = nlpfit.predict(run.output, ["Alice moved to Paris last year .", "Bob works for Google ."],
                          aggregation="first")
    rows = list(rows)
    assert [r["text"] for r in rows] == ["Alice moved to Paris last year .", "Bob works for Google ."]
    assert all(isinstance(r["entities"], list) for r in rows)
    assert list(nlpfit.predict(run.output, "Alice moved to Paris last year .", aggregation="first")) == rows[:1]


def test_names_and_values_are_checked_like_the_flags(tmp_path):
    with pytest.raises(nlpfit.NlpfitError) as err:
        nlpfit.train("ner", output=str(tmp_path / "o"), batchsize=8)
    message = str(err.value)
    assert "unknown option 'batchsize'" in message and "did you mean batch_size?" in message
    assert "label_all_subtokens" in message and "\n" not in message  # the valid names, on one line
    with pytest.raises(nlpfit.NlpfitError, match="unknown option 'split_name'"):
        nlpfit.evaluate(tmp_path, split_name="test")
    with pytest.raises(nlpfit.NlpfitError, match=r"^warmup_ratio=1.5: must be at least 0 and at most 1$"):
        nlpfit.train("ner", output=str(tmp_path / "o"), warmup_ratio=1.5)
    with pytest.raises(nlpfit.NlpfitError, match=r"^engine='bogus': must be one of accelerate, trainer$"):
        nlpfit.train("ner", output=str(tmp_path / "o"), engine="bogus")
    with pytest.raises(nlpfit.NlpfitError, match=r"^epochs='3': expected a number$"):
        nlpfit.train("ner", output=str(tmp_path / "o"), epochs="3")
    with pytest.raises(nlpfit.NlpfitError, match="unknown task 'nerd'"):
        nlpfit.train("nerd")
    with pytest.raises(nlpfit.NlpfitError, match="name the task"):
        nlpfit.train()
    assert list(tmp_path.iterdir()) == []


def test_config_file_with_keyword_overrides(tiny_bert, ner_data, tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text(f"task: ner\ndata: {ner_data}\nmodel: {tiny_bert}\nmax-steps: 2\neval_batch_size: 16\nlr: -1\n")
    with pytest.raises(nlpfit.NlpfitError, match=rf"^{f}:6: lr -1.0: must be above 0$"):
        nlpfit.train(config=f, output=str(tmp_path / "o"))
    run = nlpfit.train(config=str(f), output=str(tmp_path / "o"), lr=1e-3)  # the keyword wins over the file
    saved = json.loads((run.output / "run.json").read_text())["config"]
    assert saved["lr"] == 1e-3 and saved["max_steps"] == 2 and saved["data"] == [str(ner_data)]
    with pytest.raises(nlpfit.NlpfitError, match=r"^config='missing.yaml': no such file$"):
        nlpfit.train(config="missing.yaml")
