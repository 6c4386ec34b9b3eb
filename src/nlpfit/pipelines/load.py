"""`nlpfit.pipeline(OUT)`: a ready transformers Pipeline for any nlpfit model folder, every task,
without remote code.

transformers 5 has no question-answering, translation or summarization pipeline; a folder of those
tasks names its pipeline class in config.json (`custom_pipelines`), which plain `transformers.pipeline`
would import from the folder itself (`trust_remote_code=True`: running the folder's code).  Here the
same classes are imported from nlpfit and built directly, and every load passes
`trust_remote_code=False`, so a folder from someone else runs no code of its own.

    import nlpfit
    ner = nlpfit.pipeline("runs/wnut")
    ner("Apple is opening an office in Paris")
    qa = nlpfit.pipeline("runs/qa")
    qa(question="What does abs() return?", context="abs(x): Return the absolute value of a number.")
"""

from __future__ import annotations

from pathlib import Path

from nlpfit import NlpfitError

#: transformers pipeline name -> (nlpfit module, class) of the tasks transformers 5 dropped
OWN_PIPELINES = {
    "question-answering": ("nlpfit.pipelines.question_answering", "ExtractiveQuestionAnsweringPipeline",
                           "AutoModelForQuestionAnswering"),
    "translation": ("nlpfit.pipelines.seq2seq", "Seq2SeqGenerationPipeline", "AutoModelForSeq2SeqLM"),
    "summarization": ("nlpfit.pipelines.seq2seq", "Seq2SeqGenerationPipeline", "AutoModelForSeq2SeqLM"),
}


def pipeline_name(out_dir: str) -> str:
    """The transformers pipeline name of a model folder, from its run.json."""
    from nlpfit.run import load_run

    name = load_run(out_dir)[1].get("pipeline")
    if not isinstance(name, str) or not name:
        raise NlpfitError(f"{Path(out_dir) / 'run.json'}: names no pipeline")
    return name


def pipeline(out_dir: str, device=None, **kwargs):
    """A transformers Pipeline for the model in `out_dir`, called as transformers' own pipelines are
    (`p("text")`, `p(["a", "b"])`, `p(question=..., context=...)`); `kwargs` go to the pipeline
    (e.g. `aggregation_strategy="simple"`, `num_beams=4`)."""
    import importlib

    import transformers

    from nlpfit.inference import inference_device
    from nlpfit.models import load_model, load_tokenizer

    name = pipeline_name(out_dir)
    device = inference_device() if device is None else device
    if name not in OWN_PIPELINES:
        tokenizer = load_tokenizer(out_dir)
        if name == "text-generation" and tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return transformers.pipeline(name, model=out_dir, tokenizer=tokenizer, device=device,
                                     trust_remote_code=False, **kwargs)
    module, cls_name, auto_name = OWN_PIPELINES[name]
    cls = getattr(importlib.import_module(module), cls_name)
    model = load_model(getattr(transformers, auto_name), out_dir, name)
    return cls(model=model, tokenizer=load_tokenizer(out_dir), task=name, device=device, **kwargs)
