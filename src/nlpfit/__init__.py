"""nlpfit: fine-tune, evaluate and serve transformer models for the main NLP tasks."""

__version__ = "0.1.0"


class NlpfitError(Exception):
    """Bad input from the user: printed as one line, exit status 2, no traceback."""


def __getattr__(name: str):
    """`nlpfit.pipeline(OUT)` and the Python API (`nlpfit.train`, `nlpfit.evaluate`,
    `nlpfit.predict`), imported when first used (`import nlpfit` stays light)."""
    if name == "pipeline":
        from nlpfit.pipelines.load import pipeline

        return pipeline
    if name in ("train", "evaluate", "predict"):
        from nlpfit import api

        return getattr(api, name)
    raise AttributeError(f"module 'nlpfit' has no attribute {name!r}")
