"""`GET /examples`: a few inputs to try, from the model's own validation data when OUT has them.

OUT/examples.json, when present, is a JSON list of inputs exactly as `POST /predict` takes them in
`"inputs"`: texts, or {"question": ..., "context": ...} objects for question answering:

    ["EU rejects German call to boycott British lamb .", "Peter Blackburn"]

Entries that are not inputs of the task are skipped (question answering keeps an object's
question, context and id, so rows of SQuAD-like data do); without the file (or with no valid
entry) the examples below, per task kind, are used.
"""

from __future__ import annotations

import json
from pathlib import Path

MAX_EXAMPLES = 20

BUILT_IN = {
    "token-classification": [
        "My name is Sylvain and I work at Hugging Face in Brooklyn.",
        "Alice moved to Paris last year .",
        "Grace works for Mozilla in Oslo .",
        "The office of the United Nations is in New York .",
    ],
    "fill-mask": [
        "This is a great [MASK].",
        "The capital of France is [MASK].",
        "The statement is executed when the [MASK] ends .",
    ],
    "translation": [
        "Default to expanded threads",
        "Unable to import %(filename)s",
        "the green tree is here .",
        "Show the list of users",
    ],
    "summarization": [
        "I bought this book for my daughter. She read it in two days and asked for the next one in the "
        "series. The story is exciting, the characters are well drawn and the ending left her wanting more.",
        "The kettle boils water quickly and quietly. The handle stays cool, the lid opens wide and the "
        "filter keeps out the scale. After a month of daily use it still works as on the first day.",
    ],
    "text-generation": [
        "def fibonacci(n):\n",
        "import json\n\n\ndef load(path):\n",
        "class Stack:\n    def push(self, item):\n",
    ],
    "question-answering": [
        {"question": "Where do I work?",
         "context": "My name is Sylvain and I work at Hugging Face in Brooklyn."},
        {"question": "What is the code?",
         "context": "The statement is executed when the loop ends. The code is red fox. A class body defines "
                    "new attributes."},
        {"question": "Which deep learning libraries back Transformers?",
         "context": "Transformers is backed by the three most popular deep learning libraries, Jax, PyTorch "
                    "and TensorFlow, with a seamless integration between them."},
    ],
}


def examples(out_dir: str, kind: str, check) -> dict:
    """{"source": "examples.json" | "built-in", "examples": [input, ...]}; `check(item)` gives an
    entry of OUT/examples.json as an input of the task, or None when it is not one."""
    path = Path(out_dir) / "examples.json"
    if path.is_file():
        try:
            items = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            items = None
        if isinstance(items, list):
            good = [x for x in map(check, items) if x is not None][:MAX_EXAMPLES]
            if good:
                return {"source": "examples.json", "examples": good}
    return {"source": "built-in", "examples": BUILT_IN.get(kind, [])}
