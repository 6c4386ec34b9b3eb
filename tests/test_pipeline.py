"""`nlpfit.pipeline(OUT)`: a ready transformers Pipeline for every task, without remote code, giving
what `nlpfit predict` gives."""

import json

import pytest

from conftest import TINY_TASKS


@pytest.mark.parametrize("task", TINY_TASKS)
def test_pipeline_for_every_task_without_remote_code(task, tiny_models, monkeypatch):
    import transformers

    import nlpfit
    from nlpfit.run import predict

    out = tiny_models(task)
    # no remote code: the folder's own pipeline module (shipped for plain transformers) is never imported
    monkeypatch.setattr("transformers.dynamic_module_utils.get_class_from_dynamic_module",
                        lambda *a, **k: pytest.fail("the folder's code was imported"))
    pipe = nlpfit.pipeline(str(out))
    assert isinstance(pipe, transformers.Pipeline)
    if task == "ner":
        text = "Alice moved to Paris last year ."
        ours = next(iter(predict(str(out), [text], {})))
        plain = pipe(text, aggregation_strategy="simple")
        assert [(e["word"], e["start"], e["end"]) for e in ours["entities"]] == \
            [(e["word"], e["start"], e["end"]) for e in plain]
    elif task == "mlm":
        result = pipe(f"the value of each {pipe.tokenizer.mask_token} is bound", top_k=3)
        assert len(result) == 3 and all("token_str" in r for r in result)
    elif task in ("translation", "summarization"):
        key = "translation_text" if task == "translation" else "summary_text"
        text = "the red cat is here ." if task == "translation" else "Alice moved to Paris . It was seen on day 3 ."
        [row] = pipe(text)
        ours = next(iter(predict(str(out), [text], {})))
        assert row[key] == ours[key]  # the same generation_config as nlpfit predict
        assert len(pipe(["a", "b"])) == 2
    elif task == "clm":
        [row] = pipe("import json\n", max_new_tokens=5, do_sample=False)
        ours = next(iter(predict(str(out), ["import json\n"], {"max_new_tokens": 5})))
        assert row["generated_text"].startswith("import json\n")
        assert row["generated_text"][len("import json\n"):] == ours["completions"][0]
    else:
        context = "Nothing here. The code is red fox. More filler text."
        answer = pipe(question="What is the code?", context=context)
        ours = next(iter(predict(str(out), [{"question": "What is the code?", "context": context}], {})))
        assert answer["answer"] == ours["answer"] and answer["start"] == ours["start"]
        assert context[answer["start"]:answer["end"]] == answer["answer"]


def test_pipeline_bad_folders_are_one_line(tmp_path):
    import nlpfit
    from nlpfit import NlpfitError

    with pytest.raises(NlpfitError, match="no such model folder"):
        nlpfit.pipeline(str(tmp_path / "missing"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(NlpfitError, match="no run.json"):
        nlpfit.pipeline(str(tmp_path / "plain"))
    (tmp_path / "plain" / "run.json").write_text('{"config": {"task": "ner"}}', encoding="utf-8")
    with pytest.raises(NlpfitError, match="run.json: names no pipeline"):
        nlpfit.pipeline(str(tmp_path / "plain"))


def test_model_card_shows_nlpfit_pipeline_first(tiny_models):
    card = (tiny_models("qa") / "README.md").read_text()
    assert card.index("nlpfit.pipeline(") < card.index("trust_remote_code=True")
    run = json.loads((tiny_models("qa") / "run.json").read_text())
    assert run["pipeline"] == "question-answering"
