"""nlpfit: fine-tune, evaluate and serve transformer models for the main NLP tasks."""

__version__ = "0.1.0"


class NlpfitError(Exception):
    """Bad input from the user: printed as one line, exit status 2, no traceback."""
